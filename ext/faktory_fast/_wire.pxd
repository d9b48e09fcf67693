# Declarations of faktory_fast._wire (ext/_wire.pyx): Cython finds it by the module's
# full name under the include path ext/.

cdef class CommandParser:
    cdef readonly Py_ssize_t max_line
    cdef readonly bint overflow
    # The incomplete last line; a bytearray so appending chunks is amortized O(1).
    cdef bytearray _buf

    cdef bint _line(self, const char *p, Py_ssize_t n, list out) except -1
    cdef int _check_tail(self) except -1
    cdef void _overflowed(self)
