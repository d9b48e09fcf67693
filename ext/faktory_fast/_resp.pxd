# Declarations of faktory_fast._resp (ext/_resp.pyx): Cython finds it by the module's
# full name under the include path ext/.

cdef class _Frame:
    cdef char kind
    cdef Py_ssize_t remaining
    cdef list items


cdef class RespReader:
    cdef bytearray _buf
    cdef list _stack          # open aggregates (_Frame), innermost last
    cdef Py_ssize_t _blen     # pending bulk payload length, -1 when none
    cdef char _bkind          # '$', '=' or '!' for the pending bulk
    cdef Py_ssize_t _scan     # bytes of the current line already searched for CRLF

    cdef Py_ssize_t _parse(self, const char *p, Py_ssize_t n, list out) except -1
    cdef int _deliver(self, object val, list out) except -1
