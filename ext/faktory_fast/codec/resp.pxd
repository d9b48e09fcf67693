# Types of the compiled faktory_fast.codec.resp (resp.pyx); Cython reads them beside the .pyx.

cdef class _Frame:
    cdef Py_ssize_t remaining
    cdef list items


cdef class RespReader:
    cdef bytearray _buf
    cdef list _stack          # open arrays (_Frame), innermost last
    cdef Py_ssize_t _blen     # pending bulk payload length, -1 when none
    cdef Py_ssize_t _scan     # bytes of the current line already searched for CRLF

    cdef Py_ssize_t _parse(self, const char *p, Py_ssize_t n, list out) except -1
    cdef int _deliver(self, object val, list out) except -1
