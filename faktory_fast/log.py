"""Faktory's log format: ``<L> <UTC YYYY-MM-DDTHH:MM:SS.mmmZ> <message>`` on stdout."""
from __future__ import annotations

import logging
import sys
import time

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
