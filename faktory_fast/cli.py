"""The ``faktory-fast`` command."""
from __future__ import annotations

import sys

from faktory_fast import config, log as logsetup


def main(argv: list[str] | None = None) -> None:
    """Parse flags and run the server; exit 2 on bad flags or configuration."""
    try:
        cfg = config.load(argv)
    except config.ConfigError as exc:
        print(f"faktory-fast: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(config.banner())
    if cfg is None:  # -v
        sys.exit(0)
    logger = logsetup.setup(cfg.log_level)
    from faktory_fast import resp, wire
    from faktory_fast.supervisor import Supervisor

    logger.debug("Codecs: wire %s, RESP %s", wire.IMPLEMENTATION, resp.IMPLEMENTATION)
    logger.info("Environment %s, storage %s, config %s", cfg.environment, cfg.data_dir, cfg.config_dir)
    sys.exit(Supervisor(cfg).run())
