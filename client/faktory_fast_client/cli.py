"""``python -m faktory_fast_client worker module:attr [-q queues] [-c N]``.

``module:attr`` names a :class:`~faktory_fast_client.Worker` (or a function returning one)
whose handlers are registered; the command line's options override its queues, concurrency
and shutdown timeout. ``-q`` is repeatable: ``-q critical -q default`` (strict order) or
``-q critical,3 -q default,1`` (weighted, as faktory_worker_ruby's ``-q name,weight``).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
from collections.abc import Sequence

from .worker import Worker


def load_worker(spec: str) -> Worker:
    """The Worker ``module:attr`` names (calling ``attr`` if it is not a Worker)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"expected module:attr, got {spec!r}")
    sys.path.insert(0, os.getcwd())  # as python -m: the current directory's modules import
    target = getattr(importlib.import_module(module_name), attr)
    worker = target if isinstance(target, Worker) else target()
    if not isinstance(worker, Worker):
        raise SystemExit(f"{spec} is not a faktory_fast_client.Worker")
    return worker


def parse_queues(items: Sequence[str]) -> list[str] | dict[str, int]:
    """``-q`` values: names (strict order) or ``name,weight`` pairs (weighted)."""
    names = [part for item in items for part in item.split() if part]
    if any("," in n for n in names):
        weights: dict[str, int] = {}
        for n in names:
            name, _, weight = n.partition(",")
            weights[name] = int(weight or 1)
        return weights
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faktory_fast_client",
                                     description="Run a Faktory worker.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("worker", help="run the worker that module:attr names")
    run.add_argument("spec", help="module:attr of a faktory_fast_client.Worker")
    run.add_argument("-q", "--queue", action="append", default=[],
                     help="a queue (repeatable; name,weight for weighted fetching)")
    run.add_argument("-c", "--concurrency", type=int, help="jobs at once")
    run.add_argument("-t", "--shutdown-timeout", type=float, help="seconds to finish at terminate")
    run.add_argument("-l", "--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = load_worker(args.spec)
    if args.queue:
        queues = parse_queues(args.queue)
        fresh = Worker(queues=queues)  # queue parsing and weights exactly as the constructor
        worker.queues, worker._weighted = fresh.queues, fresh._weighted
    if args.concurrency:
        worker.concurrency = args.concurrency
    if args.shutdown_timeout is not None:
        worker.shutdown_timeout = args.shutdown_timeout
    worker.run()
    for thread in threading.enumerate():  # idle job threads leave at once
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(0.5)
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.current_thread()):
        # A plain-function job abandoned at shutdown still runs in its thread: exit anyway.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
