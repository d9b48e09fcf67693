# Types for the compiled server.py (setup.py); the .py is the source of truth.

cdef class Connection:
    cdef public object state
    cdef public object lc
    cdef public object loop
    cdef public object parser
    cdef public object transport
    cdef public object pending
    cdef public bint busy
    cdef public bytes verb
    cdef public bint identified
    cdef public str wid
    cdef public str salt
    cdef public int iterations
    cdef object _timer
    cpdef answer(self, reply)
    cdef _send(self, bytes reply)
    cdef _next(self)
