# Types for the compiled redis_client.py (setup.py); the .py is the source of truth.

cdef class RedisConnection:
    cdef object _reader
    cdef object _pending
    cdef list _out
    cdef object _transport
    cdef object _loop
    cdef object _flush_handle
    cdef object _on_push
    cdef object _on_pressure
    cdef public object closed
    cdef public str address
    cdef public str lost
    cdef public bint connected
    cdef readonly int wait_replicas
    cdef readonly int wait_timeout
    cdef object _held
    cdef list _gatherers
    cdef public double hold
    cdef object _sent
    cdef list _waiting
    cdef object _wait_timer
    cdef double _hold_deadline
    cdef bint _draining
    cdef double _lost_at
    cdef double _pause
    cdef _send(self, object waiter, bytes command, object replicated_for=*)
    cdef object _error(self, object err)

cdef _deliver(object waiter, object reply)
