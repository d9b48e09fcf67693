"""faktory_fast: a fast, wire-compatible Faktory server."""

__version__ = "0.1.0"
# The version we report to clients and in INFO: the Faktory release whose protocol we speak.
FAKTORY_VERSION = "1.10.0"
