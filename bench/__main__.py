"""``python -m bench <scenario> ...`` / ``faktory-bench``: run a scenario, print a table, write JSON."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from . import baseline, batch, bigjob, bulk, chart, idle, latency, load, pylibs, versus
from .client import BenchError, parse_faktory_url, parse_redis_url
from .common import Target, run_rounds
from .procstat import parse_pids

SCENARIOS: list[ModuleType] = [load, latency, idle, bulk, batch, bigjob, baseline]


def _common_args(p: argparse.ArgumentParser, redis: bool) -> None:
    if redis:
        p.add_argument("--redis", default=os.environ.get("REDIS_URL"),
                       help="redis://host:port or unix:///path/redis.sock (default $REDIS_URL)")
    else:
        p.add_argument("--url", default=os.environ.get("FAKTORY_URL", "tcp://localhost:7419"),
                       help="tcp://[:password@]host:port (default $FAKTORY_URL or tcp://localhost:7419)")
    p.add_argument("--server-pid", action="append", metavar="PID[,PID...]",
                   help="server pid(s) to meter, with all their descendants (repeatable)")
    p.add_argument("--compare", metavar="URL2", help="also run against this second server and print ratios")
    p.add_argument("--pid2", action="append", metavar="PID[,PID...]", help="pids of the --compare server")
    p.add_argument("--rounds", type=int, default=1,
                   help="runs per server, alternating, the order swapped each round (default 1)")
    p.add_argument("--label", action="append", metavar="KEY=VALUE",
                   help="tag the result, e.g. --label processes=2 (repeatable; used by chart)")
    p.add_argument("--out", help="result JSON path (default bench/results/<scenario>-<timestamp>.json)")
    p.add_argument("--timeout", type=float, default=900.0, help="abort a run after this many seconds")
    p.add_argument("--stall", type=float, default=20.0,
                   help="abort when no job completes for this many seconds (default 20)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per scenario plus ``chart``."""
    parser = argparse.ArgumentParser(prog="faktory-bench", description=__doc__)
    sub = parser.add_subparsers(dest="scenario", required=True)
    for mod in SCENARIOS:
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        _common_args(p, redis=mod is baseline)
        mod.add_args(p)
    chart.add_args(sub.add_parser(chart.NAME, help=chart.HELP, description=chart.HELP))
    pylibs.add_args(sub.add_parser(pylibs.NAME, help=pylibs.HELP, description=pylibs.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    versus.add_args(sub.add_parser(versus.NAME, help=versus.HELP, description=versus.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def run_scenario(mod: ModuleType, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``rounds`` alternating runs on the first (and --compare) server; print and save results."""
    if mod is baseline:
        if not args.redis:
            raise SystemExit("baseline needs --redis URL (or $REDIS_URL)")
        targets = [Target("first", parse_redis_url(args.redis), parse_pids(args.server_pid))]
        if args.compare:
            targets.append(Target("second", parse_redis_url(args.compare), parse_pids(args.pid2)))
    else:
        targets = [Target("first", parse_faktory_url(args.url), parse_pids(args.server_pid))]
        if getattr(args, "ent", None):
            if args.compare:
                raise SystemExit("--ent compares job kinds on one server: no --compare")
            targets = load.variant_targets(args, targets[0])
        elif args.compare:
            targets.append(Target("second", parse_faktory_url(args.compare), parse_pids(args.pid2)))
    return run_rounds(mod, args, targets)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``faktory-bench``)."""
    args = build_parser().parse_args(argv)
    try:
        if args.scenario == chart.NAME:
            return chart.run(args)
        if args.scenario == pylibs.NAME:
            pylibs.run(args)
            return 0
        if args.scenario == versus.NAME:
            versus.run(args)
            return 0
        mod = next(m for m in SCENARIOS if m.NAME == args.scenario)
        run_scenario(mod, args)
    except BenchError as e:
        print(f"faktory-bench: {e}", file=sys.stderr)
        return 1
    except (ConnectionError, OSError) as e:
        print(f"faktory-bench: connection problem: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
