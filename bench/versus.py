"""``bench faktory <scenario>``: start Faktory 1.9.4 and this checkout's faktory_fast, run the
scenario against both alternately (A B, B A, ...), print per-server figures and the same-run
ratio faktory_fast / faktory, then stop both.

Faktory and the Go clients are the anchor binaries (bench/README.md, "Against Faktory 1.9.4");
when one that a scenario needs is absent the scenario is skipped: it says so and exits 0.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from types import ModuleType
from typing import Any

from . import bulk, drain, fload, idle, latency, pushrtt
from .common import Target, raise_nofile, run_rounds
from .servers import (
    Faktory,
    FaktoryFast,
    Floor,
    Skip,
    Spawned,
    default_anchor_bin,
    default_fast_python,
    require,
)

NAME = "faktory"
HELP = "start Faktory 1.9.4 and faktory_fast, run a scenario on both alternately, print ratios"
#: Scenarios that need anchor binaries for their client first, then bench's own scenarios.
SCENARIOS: list[ModuleType] = [fload, drain, pushrtt, bulk, latency, idle]
SERVERS = ("faktory_fast", "faktory")  # in this order: ratio = faktory_fast / faktory


def add_args(p: argparse.ArgumentParser) -> None:
    """The ``faktory`` subcommand: one sub-subcommand per scenario."""
    sub = p.add_subparsers(dest="versus", required=True, metavar="SCENARIO")
    for mod in SCENARIOS:
        sp = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        g = sp.add_argument_group("servers (both started and stopped by bench)")
        g.add_argument("--anchor-bin", default=default_anchor_bin(), metavar="DIR",
                       help="where faktory, faktory-load, fwgo-drain are (default $ANCHOR/bin or /tmp/anchor/bin)")
        g.add_argument("--fast-python", default=default_fast_python(), metavar="PYTHON",
                       help="python that runs faktory_fast (default this checkout's .venv/bin/python)")
        g.add_argument("--fast-args", default="", metavar="ARGS",
                       help="extra faktory_fast options, e.g. '--processes 1' (default: none)")
        g.add_argument("--faktory-args", default="", metavar="ARGS", help="extra Faktory options")
        g.add_argument("--only", choices=[*SERVERS, "floor"], help="run against this server only (no ratio)")
        g.add_argument("--floor", action="store_true",
                       help="also run bench's floor server (bench/lab/floor.py): the least a server in this "
                            "stack does per command; its ratio to faktory is a column of its own")
        g.add_argument("--floor-args", default="", metavar="ARGS",
                       help="extra floor server options, e.g. '--prefetch 20'")
        sp.add_argument("--rounds", type=int, default=1,
                        help="runs per server, alternating, the order swapped each round (default 1)")
        sp.add_argument("--label", action="append", metavar="KEY=VALUE", help="tag the result (repeatable)")
        sp.add_argument("--out", help="result JSON (default bench/results/faktory-<scenario>-<timestamp>.json)")
        sp.add_argument("--timeout", type=float, default=900.0, help="abort a run after this many seconds")
        sp.add_argument("--stall", type=float, default=20.0,
                        help="abort when no job completes for this many seconds (bench's own clients)")
        mod.add_args(sp)


def _start(name: str, args: argparse.Namespace, bins: dict[str, str]) -> Spawned:
    if name == "faktory":
        return Faktory(bins["faktory"], shlex.split(args.faktory_args))
    if name == "floor":
        return Floor(args.fast_python, shlex.split(args.floor_args))
    return FaktoryFast(args.fast_python, shlex.split(args.fast_args))


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    """Run the chosen scenario; None when it was skipped (a line on stdout says why)."""
    mod = next(m for m in SCENARIOS if m.NAME == args.versus)
    names = [args.only] if args.only else list(SERVERS)
    if args.floor and "floor" not in names:
        names.append("floor")
    needed = (["faktory"] if "faktory" in names else []) + list(getattr(mod, "BINARIES", []))
    servers: list[Spawned] = []
    try:  # whatever happens, every server started is stopped
        try:
            args.bins = require(args.anchor_bin, needed, f"bench faktory {mod.NAME}") if needed else {}
            raise_nofile()  # the servers inherit it (idle opens thousands of connections)
            for name in names:
                servers.append(_start(name, args, args.bins))
                print(f"[faktory-{mod.NAME}] starting {name}", file=sys.stderr, flush=True)
                servers[-1].start()
        except Skip as e:
            print(f"SKIPPED: {e}", flush=True)
            return None
        targets = [Target(s.name, s.endpoint, s.pids(), s.redis_socket) for s in servers]
        note = ("ratio = faktory_fast / faktory, same run" + (", ratio floor = floor / faktory"
                if len(servers) == 3 else "")) if len(servers) >= 2 else ""
        return run_rounds(mod, args, targets, scenario=f"faktory-{mod.NAME}",
                          servers={s.name: s.info for s in servers}, note=note)
    finally:
        for s in servers:
            s.stop()
