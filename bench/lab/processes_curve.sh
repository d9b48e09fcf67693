#!/usr/bin/env bash
# Throughput against --processes (args, default 1 2 3 4) and threads (10, 100): one fresh
# faktory_fast per process count; results in bench/figures/load-p<P>-t<T>.json, then the chart.
# Run from the repository root after `make build`.
set -u
PORT=${PORT:-7601}
DIR=$(mktemp -d)
for P in "${@:-1 2 3 4}"; do
  for p in $P; do
    rm -rf "$DIR/db"
    .venv/bin/faktory-fast -b 127.0.0.1:$PORT -w :0 -d "$DIR/db" -c "$DIR" --processes "$p" \
      --max-connections 10000 > "$DIR/server.log" 2>&1 &
    FF=$!
    until grep -q "Listening on" "$DIR/server.log"; do sleep 0.1; done
    for T in 10 100; do
      .venv/bin/python -m bench load --url tcp://127.0.0.1:$PORT -j 30000 -t "$T" --server-pid $FF \
        --rounds 3 --label processes="$p" --label threads="$T" --out "bench/figures/load-p$p-t$T.json"
    done
    kill $FF; wait $FF
  done
done
.venv/bin/python -m bench chart bench/figures/load-p*.json -o bench/figures/load-processes.svg \
  --title "faktory_fast bench load J=30000: jobs/s by --processes (lines: threads)"
rm -rf "$DIR"
