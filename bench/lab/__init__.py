"""bench's laboratory: research tools that import faktory_fast's internals (its store, Lua
library and codecs), where the rest of bench is a black-box client of any Faktory-protocol
server. ``python -m bench.lab.floor`` (the floor server), ``python -m bench.lab.lua_cost``
(Redis time per call of the hot functions), ``python -m bench.lab.lua_worst`` (one call's worst
case per function), ``bench/lab/processes_curve.sh`` (throughput against ``--processes``)."""
