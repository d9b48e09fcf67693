"""The web UI and JSON stats (Falcon under gunicorn), installed as ``faktory_fast.web``."""
