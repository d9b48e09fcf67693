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
    cdef public bint paused
    cdef public bint backlogged
    cdef public bint redis_held
    cdef public Py_ssize_t partial
    cdef public double line_started
    cdef public str peer
    cdef object inbox
    cdef Py_ssize_t inbox_pos
    cpdef answer(self, reply)
    cdef _send(self, bytes reply)
    cdef _next(self)
    cdef bint _feed(self, bytes data) except -1
    cdef bint _feed_inbox(self) except -1
    cdef bint _count_line(self, Py_ssize_t n, bint new_line) except -1
    cdef _forget_line(self)
