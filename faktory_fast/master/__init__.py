"""The master: the server processes' supervisor, the background tasks, the child Redis, backups
and the start-up migration."""
