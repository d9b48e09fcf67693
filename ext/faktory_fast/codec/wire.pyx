# cython: language_level=3, boundscheck=False, wraparound=False
"""Faktory client-command framer and reply serializers, compiled (pure state machine, no I/O).

Built as the module ``faktory_fast.codec.wire``, in place of ``wire.py``: same API and behaviour
(documented there), same tests. Types of its class: ``wire.pxd``.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from libc.string cimport memchr, memcpy

__all__ = ["IMPLEMENTATION", "NIL", "OK", "CommandFramer", "bulk", "error"]

IMPLEMENTATION = "cython"

OK = b"+OK\r\n"
NIL = b"$-1\r\n"


cdef class CommandFramer:
    """Incremental framer: bytes in, (verb, payload) tuples out; no I/O (attributes: wire.pxd)."""

    def __cinit__(self, Py_ssize_t max_line=16 * 1024 * 1024):
        self.max_line = max_line
        self.overflow = False
        self._buf = bytearray()

    def buffered(self):
        """Bytes of an incomplete line currently held."""
        return PyByteArray_GET_SIZE(self._buf)

    def feed(self, data):
        """Return every line completed by data; on an over-long line, set overflow."""
        cdef list out = []
        cdef bytes b
        cdef const char *p
        cdef const char *nl
        cdef Py_ssize_t n, pos, i, blen
        if self.overflow:
            return out
        b = data if type(data) is bytes else bytes(data)
        p = PyBytes_AS_STRING(b)
        n = PyBytes_GET_SIZE(b)
        pos = 0
        blen = PyByteArray_GET_SIZE(self._buf)
        if blen:
            # Only the new data is searched, so a line arriving in many chunks costs O(n).
            nl = <const char *>memchr(p, c'\n', n)
            if nl == NULL:
                self._buf += b
                self._check_tail()
                return out
            i = nl - p
            self._buf += b[:i]
            blen = PyByteArray_GET_SIZE(self._buf)
            if not self._line(PyByteArray_AS_STRING(self._buf), blen, out):
                return out
            del self._buf[:]
            pos = i + 1
        while pos < n:
            nl = <const char *>memchr(p + pos, c'\n', n - pos)
            if nl == NULL:
                break
            i = nl - p
            if not self._line(p + pos, i - pos, out):
                return out
            pos = i + 1
        if pos < n:
            self._buf += b[pos:]
            self._check_tail()
        return out

    cdef bint _line(self, const char *p, Py_ssize_t n, list out) except -1:
        cdef const char *sp
        cdef Py_ssize_t v
        if n and p[n - 1] == c'\r':
            n -= 1
        if n > self.max_line:
            self._overflowed()
            return False
        sp = <const char *>memchr(p, c' ', n)
        if sp == NULL:
            out.append((PyBytes_FromStringAndSize(p, n), b""))
        else:
            v = sp - p
            out.append((PyBytes_FromStringAndSize(p, v),
                        PyBytes_FromStringAndSize(sp + 1, n - v - 1)))
        return True

    cdef int _check_tail(self) except -1:
        cdef Py_ssize_t n = PyByteArray_GET_SIZE(self._buf)
        # A trailing \r may be half of the terminator, so it does not count yet.
        if n > self.max_line:
            if PyByteArray_AS_STRING(self._buf)[n - 1] == c'\r':
                n -= 1
            if n > self.max_line:
                self._overflowed()
        return 0

    cdef void _overflowed(self):
        self.overflow = True
        self._buf = bytearray()  # free the memory; the parser is done


cdef bytes _one_line(s):
    cdef bytes b
    if isinstance(s, str):
        b = (<str>s).encode("utf-8", "replace")
    else:
        b = bytes(s)
    if b"\r" in b or b"\n" in b:
        b = b.replace(b"\r", b" ").replace(b"\n", b" ")
    return b


def error(msg, code="ERR"):
    """A RESP error line -CODE msg\\r\\n; CR/LF inside become spaces."""
    return b"-" + _one_line(code) + b" " + _one_line(msg) + b"\r\n"


def bulk(data):
    """A RESP bulk string $len\\r\\ndata\\r\\n; None gives the nil bulk $-1\\r\\n."""
    cdef bytes b, head, out
    cdef Py_ssize_t n, h
    cdef char *w
    if data is None:
        return NIL
    if isinstance(data, str):
        b = (<str>data).encode("utf-8")
    elif type(data) is bytes:
        b = <bytes>data
    else:
        b = bytes(data)
    n = PyBytes_GET_SIZE(b)
    head = b"$%d\r\n" % n
    h = PyBytes_GET_SIZE(head)
    # One allocation and copy, which matters for big FETCH/INFO payloads.
    out = PyBytes_FromStringAndSize(NULL, h + n + 2)
    w = PyBytes_AS_STRING(out)
    memcpy(w, PyBytes_AS_STRING(head), h)
    memcpy(w + h, PyBytes_AS_STRING(b), n)
    w[h + n] = c'\r'
    w[h + n + 1] = c'\n'
    return out
