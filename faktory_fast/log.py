"""Faktory's log format: ``<L> <UTC YYYY-MM-DDTHH:MM:SS.mmmZ> <message>`` on stdout; and
``FailureLog``, how a background task that keeps failing says so."""
from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
_COLOURS = {"D": "\033[36m", "I": "", "W": "\033[33m", "E": "\033[31m", "F": "\033[31m"}


class FaktoryFormatter(logging.Formatter):
    """One line per message, first letter of the level, UTC time with milliseconds."""

    def __init__(self, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        letter = "F" if record.levelno >= logging.CRITICAL else record.levelname[0]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{letter} {stamp}.{int(record.msecs):03d}Z {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if self.colour and _COLOURS[letter]:
            line = f"{_COLOURS[letter]}{line}\033[0m"
        return line


def setup(level: str) -> logging.Logger:
    """Configure the ``faktory_fast`` logger for this process."""
    logger = logging.getLogger("faktory_fast")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(FaktoryFormatter(colour=sys.stdout.isatty()))
    logger.addHandler(handler)
    logger.setLevel(LEVELS.get(level, logging.INFO))
    logger.propagate = False
    return logger


def one_line(text: str) -> str:
    """``text`` with every character that is not printable escaped (``\\n``, ``\\x00``,
    ``\\u2028``...): what is logged or printed from it stays one line, and no terminal
    escape gets through."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def show(value: Any) -> str:
    """A configuration value as messages show it: its repr (a TOML date or time as written),
    cut short."""
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python converts to text
        return "a number too long to show"
    return text if len(text) <= 60 else text[:57] + "..."


class FailureLog:
    """The failures of one task that runs again and again (``tasks._every``, the cron runner's
    entries, the master's event loop callbacks): one ERROR line per distinct failure (its
    exception type and message) per ``period`` seconds, saying how often it happened since the
    last such line. A task failing every second thus writes one line a minute, not a traceback
    a second.

    The traceback goes with each of those lines at DEBUG level only: the line (task, type,
    message) is what an operator acts on and what log tools count, one line per event; the
    traceback is for whoever debugs, who can have it without a restart (``[faktory_fast]
    log_level = "debug"`` and SIGHUP).
    """

    #: Distinct failures remembered: past that the oldest is forgotten (a message that differs
    #: every time, such as one naming a jid, must not grow the table without end).
    KEEP = 64

    def __init__(self, task: str, logger: logging.Logger | None = None, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``task``: how lines name it ("Background task run_cron"); ``clock``: seconds."""
        self.task = task
        self.log = logger or logging.getLogger("faktory_fast")
        self.period = period
        self.clock = clock
        self._seen: dict[tuple[str, str], list[float]] = {}  # failure -> [last line at, since]

    def failed(self, exc: BaseException) -> bool:
        """Report ``exc`` (raised by the task) unless the same failure was reported within the
        period; True if a line was written."""
        name = type(exc).__name__
        message = one_line(str(exc))
        key = (name, message)
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.period:
            seen[1] += 1
            return False
        text = f"{self.task} failed: {name}: {message}" if message else f"{self.task} failed: {name}"
        if seen is not None and seen[1]:
            text += f" ({seen[1]:.0f} more times in the last {now - seen[0]:.0f} s)"
        self._seen.pop(key, None)
        self._seen[key] = [now, 0]  # re-inserted: the dict's order is that of the last lines
        while len(self._seen) > self.KEEP:
            del self._seen[next(iter(self._seen))]
        self.log.error("%s", text)
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%s: traceback", self.task, exc_info=(type(exc), exc, exc.__traceback__))
        return True
