"""The ``faktory-fast`` command."""
from __future__ import annotations

import sys

from faktory_fast import config
from faktory_fast import log as logsetup


def main(argv: list[str] | None = None) -> None:
    """Parse flags and run the server (or ``backup`` / ``restore``); exit 2 on bad flags or
    configuration."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("backup", "restore"):
        sys.exit(backup_command(argv[0], argv[1:]))
    try:
        cfg = config.load(argv)
    except config.ConfigError as exc:
        print(f"faktory-fast: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(config.banner())
    if cfg is None:  # -v
        sys.exit(0)
    logger = logsetup.setup(cfg.log_level)
    from faktory_fast.codec import resp, wire
    from faktory_fast.master.supervisor import Supervisor

    logger.debug("Codecs: wire %s, RESP %s", wire.IMPLEMENTATION, resp.IMPLEMENTATION)
    logger.info("Environment %s, storage %s, config %s", cfg.environment, cfg.data_dir, cfg.config_dir)
    if cfg.tls_cert:
        logger.info("TLS activated with %s", cfg.tls_cert)  # Faktory's line
    if cfg.proxy_protocol:
        logger.info("PROXY protocol on: a PROXY header is required from %s",
                    ",".join(cfg.proxy_from))
    sys.exit(Supervisor(cfg, argv).run())


def backup_command(verb: str, argv: list[str]) -> int:
    """``faktory-fast backup [--list]`` and ``faktory-fast restore PATH``: exit 0, 1 when the
    backup or restore failed, 2 on bad flags."""
    import argparse
    import os
    import time

    import redis

    from faktory_fast.master import backup
    from faktory_fast.master.redis_child import RDB_FILE, running_redis, saved_at_clean_stop

    p = config.FlagParser(prog=f"faktory-fast {verb}")
    p.add_argument("-d", dest="data_dir", default=None, help="storage directory")
    p.add_argument("-c", dest="config_dir", default=None, help="configuration directory")
    p.add_argument("-e", dest="environment", default=None, help="environment (for the defaults)")
    if verb == "backup":
        p.add_argument("--list", action="store_true", help="list the backups, newest first")
    else:
        p.add_argument("path", help="the backup file to restore")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        args = p.parse_args(argv)
        environment = config.environment_of(args.environment, os.environ)
        data_dir, config_dir = config.directories(environment, args.data_dir, args.config_dir,
                                                  os.environ)
        keep = config.backup_keep(config_dir)  # checked as the server checks it
        if os.environ.get("REDIS_URL") or os.environ.get("REDIS_PROVIDER"):
            raise config.ConfigError("backups are of the child Redis; with REDIS_URL, back up "
                                     "that Redis the way you run it")
    except (config.ConfigError, argparse.ArgumentError) as exc:
        print(f"faktory-fast {verb}: error: {exc}", file=sys.stderr)
        return 2
    try:
        if verb == "restore":
            aside = backup.restore(data_dir, args.path, say)
            print(f"restored {args.path} into {data_dir}" +
                  (f"; the data it replaced is in {aside}" if aside else ""))
        elif args.list:
            for b in backup.list_backups(data_dir):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(b.created))
                print(f"{b.path}\t{b.size}\t{when}")
        elif running_redis(data_dir):
            client = redis.Redis(unix_socket_path=os.path.join(data_dir, "redis.sock"))
            try:
                print(backup.take(client, data_dir, keep, say).path)
            finally:
                client.close()
        elif saved_at_clean_stop(data_dir):  # stopped cleanly: its RDB holds everything
            print(backup.copy(os.path.join(data_dir, RDB_FILE), data_dir, keep, say).path)
        else:
            raise backup.BackupError(f"no server is running on {data_dir}, and its "
                                     f"{RDB_FILE} may be older than its append-only file: start "
                                     "the server, then take the backup")
    except (backup.BackupError, redis.RedisError, OSError) as exc:
        print(f"faktory-fast {verb}: {exc}", file=sys.stderr)
        return 1
    return 0
