"""faktory-bench: a load-test harness for any Faktory-protocol server (and a raw-Redis baseline).

Run ``python -m bench --help`` from the repository root; see ``bench/README.md``.

Modules: ``client`` (handshake, blocking Conn, epoll Reactor), ``resp`` (RESP parse/encode),
``procs`` (load processes with a start barrier and CPU accounting), ``procstat`` (server CPU/RSS over
a pid tree), ``report`` (JSON, summaries, tables), one module per scenario (``load``, ``latency``,
``idle``, ``bulk``, ``baseline``, ``chart``) and ``common`` (their shared helpers). ``versus`` is
``bench faktory <scenario>``: it starts Faktory 1.9.4 and faktory_fast (``servers``) and runs
``fload`` (Faktory's load test binary), ``drain`` (faktory_worker_go), ``pushrtt`` or one of the
scenarios above against both; ``goclient`` runs the Go client binaries.
"""
