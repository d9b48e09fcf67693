# Types of the compiled faktory_fast.codec.wire (wire.pyx); Cython reads them beside the .pyx.

cdef class CommandFramer:
    cdef readonly Py_ssize_t max_line
    cdef readonly bint overflow
    # The incomplete last line; a bytearray so appending chunks is amortized O(1).
    cdef bytearray _buf

    cdef bint _line(self, const char *p, Py_ssize_t n, list out) except -1
    cdef int _check_tail(self) except -1
    cdef void _overflowed(self)
