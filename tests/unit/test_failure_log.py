"""log.FailureLog: a background task failing over and over logs one line a minute per distinct
failure, the traceback only at debug level."""
from __future__ import annotations

import logging

from faktory_fast.log import FailureLog


class Records(logging.Handler):
    """Keeps what is logged to it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def raised(exc: Exception) -> Exception:
    """``exc`` with a traceback, as a background task's failure has."""
    try:
        raise exc
    except Exception as caught:
        return caught


def test_failure_log_reports_each_distinct_failure_once_a_minute() -> None:
    """A task failing every second logs one line a minute per distinct failure (type and
    message), not a traceback each time; the traceback only at debug level."""
    now = [1000.0]
    logger = logging.getLogger("tests.failure_log")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    kept = Records()
    logger.addHandler(kept)
    try:
        failures = FailureLog("Background task run_cron", logger, clock=lambda: now[0])
        for t in range(60):  # every second for a minute
            now[0] = 1000.0 + t
            failures.failed(raised(RuntimeError("boom")))
            if t == 30:  # another failure is another line, at once
                failures.failed(raised(ValueError("two\nlines")))
        now[0] = 1060.0
        failures.failed(raised(RuntimeError("boom")))
        failures.failed(raised(RuntimeError("boom")))
        assert [(r.levelno, r.getMessage()) for r in kept.records] == [
            (logging.ERROR, "Background task run_cron failed: RuntimeError: boom"),
            (logging.ERROR, "Background task run_cron failed: ValueError: two\\nlines"),
            (logging.ERROR, "Background task run_cron failed: RuntimeError: boom "
                            "(59 more times in the last 60 s)"),
        ]
        assert all(r.exc_info is None for r in kept.records)
        # At debug level the traceback comes with each line, and only then.
        logger.setLevel(logging.DEBUG)
        kept.records.clear()
        failures.failed(raised(KeyError("k")))
        failures.failed(raised(KeyError("k")))
        line, trace = kept.records
        assert line.getMessage() == "Background task run_cron failed: KeyError: 'k'"
        assert trace.levelno == logging.DEBUG and trace.exc_info is not None
        assert trace.exc_info[0] is KeyError
    finally:
        logger.removeHandler(kept)
