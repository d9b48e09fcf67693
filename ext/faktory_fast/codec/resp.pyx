# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Redis reply reader and command packer, compiled (pure state machine, no I/O).

Built as the module ``faktory_fast.codec.resp``, in place of ``resp.py``: same API and behaviour
(documented there), same tests. Types of its classes: ``resp.pxd``. RESP2 only, as resp.py.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.list cimport PyList_GET_SIZE
from libc.string cimport memchr, memcpy

__all__ = ["IMPLEMENTATION", "ProtocolError", "ReplyError", "RespReader", "pack_command"]

IMPLEMENTATION = "cython"


class ReplyError(Exception):
    """An error reply; str(e) is the text after "-". Returned by RespReader.feed, not raised."""


class ProtocolError(Exception):
    """The input is not valid RESP; the reader is unusable afterwards."""


cdef class _Frame:
    # An array whose elements are still arriving (attributes: resp.pxd).
    pass


cdef inline int _append(bytearray buf, const char *p, Py_ssize_t n) except -1:
    # Grow in place (amortized) and copy once, without a temporary bytes slice.
    cdef Py_ssize_t old = PyByteArray_GET_SIZE(buf)
    PyByteArray_Resize(buf, old + n)
    memcpy(PyByteArray_AS_STRING(buf) + old, p, n)
    return 0


cdef inline bint _fast_int(const char *p, Py_ssize_t n, long long *res):
    # Plain decimal numbers of up to 18 digits (no overflow possible); False for anything else.
    cdef Py_ssize_t i = 0
    cdef long long v = 0
    cdef bint neg = False
    if n > 0 and p[0] == c'-':
        neg = True
        i = 1
    if i == n or n - i > 18:
        return False
    while i < n:
        if p[i] < c'0' or p[i] > c'9':
            return False
        v = v * 10 + (p[i] - c'0')
        i += 1
    res[0] = -v if neg else v
    return True


cdef object _int(const char *p, Py_ssize_t n):
    # Anything the fast path rejects goes through int(), exactly like the Python fallback.
    cdef long long v
    if _fast_int(p, n, &v):
        return v
    try:
        return int(PyBytes_FromStringAndSize(p, n))
    except ValueError:
        raise ProtocolError(f"invalid integer {PyBytes_FromStringAndSize(p, n)!r}") from None


cdef object _MAX_LEN = 1 << 61


cdef Py_ssize_t _length(const char *p, Py_ssize_t n) except? -1:
    # Bulk/array sizes must fit a C ssize_t.
    cdef long long v
    if _fast_int(p, n, &v):
        return <Py_ssize_t>v
    m = _int(p, n)
    if not -_MAX_LEN < m < _MAX_LEN:
        raise ProtocolError(f"length out of range {PyBytes_FromStringAndSize(p, n)!r}")
    return m


cdef class RespReader:
    """Incremental RESP2 reply parser: bytes in, Python values out; no I/O."""

    def __cinit__(self):
        self._buf = bytearray()
        self._stack = []
        self._blen = -1
        self._scan = 0

    def buffered(self):
        """Bytes received but not yet consumed by a complete value."""
        return PyByteArray_GET_SIZE(self._buf)

    def feed(self, data):
        """Return all top-level replies completed by data (error replies as ReplyError)."""
        cdef list out = []
        cdef bytes b = data if type(data) is bytes else bytes(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
        cdef Py_ssize_t used
        if PyByteArray_GET_SIZE(self._buf) == 0:
            # Nothing held over: parse the chunk in place, keep only its incomplete tail.
            used = 0
            try:
                used = self._parse(PyBytes_AS_STRING(b), n, out)
            finally:
                if used < n:
                    _append(self._buf, PyBytes_AS_STRING(b) + used, n - used)
            return out
        _append(self._buf, PyBytes_AS_STRING(b), n)
        n = PyByteArray_GET_SIZE(self._buf)
        used = 0
        try:
            used = self._parse(PyByteArray_AS_STRING(self._buf), n, out)
        finally:
            if used:
                del self._buf[:used]  # bytearray drops a prefix cheaply (moves its start)
        return out

    cdef Py_ssize_t _parse(self, const char *p, Py_ssize_t n, list out) except -1:
        # Parse values from p[0:n] until the data runs out; return the bytes consumed.
        # The caller must not resize the buffer behind p while this runs (nothing here does).
        cdef Py_ssize_t pos = 0, end, start, nl, m
        cdef const char *hit
        cdef char t
        cdef object val
        cdef _Frame fr
        while pos < n:
            if self._blen >= 0:
                end = pos + self._blen
                if end + 2 > n:
                    break
                if p[end] != c'\r' or p[end + 1] != c'\n':
                    raise ProtocolError("bulk string not terminated by CRLF")
                val = PyBytes_FromStringAndSize(p + pos, self._blen)
                pos = end + 2
                self._blen = -1
            else:
                # Find CRLF: search for \n from where the last search stopped.
                start = pos + self._scan
                nl = -1
                while start < n:
                    hit = <const char *>memchr(p + start, c'\n', n - start)
                    if hit == NULL:
                        break
                    m = hit - p
                    if m - 1 >= pos and p[m - 1] == c'\r':
                        nl = m - 1
                        break
                    start = m + 1
                if nl < 0:
                    self._scan = n - pos - 1 if n - pos > 1 else 0
                    break
                self._scan = 0
                t = p[pos]
                start = pos + 1
                pos = nl + 2
                if t == c'$':
                    m = _length(p + start, nl - start)
                    if m >= 0:
                        self._blen = m
                        continue
                    val = None
                elif t == c'+':
                    val = PyBytes_FromStringAndSize(p + start, nl - start)
                elif t == c':':
                    val = _int(p + start, nl - start)
                elif t == c'-':
                    val = ReplyError(PyBytes_FromStringAndSize(p + start, nl - start)
                                     .decode("utf-8", "replace"))
                elif t == c'*':
                    m = _length(p + start, nl - start)
                    if m > 0:
                        fr = _Frame.__new__(_Frame)
                        fr.remaining = m
                        fr.items = []
                        self._stack.append(fr)
                        continue
                    val = None if m < 0 else []
                else:
                    raise ProtocolError(
                        f"unknown reply type byte {PyBytes_FromStringAndSize(&t, 1)!r}")
            if PyList_GET_SIZE(self._stack) == 0:
                out.append(val)  # the common case: a top-level reply
            else:
                self._deliver(val, out)
        return pos

    cdef int _deliver(self, object val, list out) except -1:
        # Hand the value to the innermost open array, closing finished ones.
        cdef _Frame top
        cdef list stack = self._stack
        cdef Py_ssize_t k = PyList_GET_SIZE(stack)
        while k:
            top = <_Frame>stack[k - 1]
            top.items.append(val)
            top.remaining -= 1
            if top.remaining:
                return 0
            stack.pop()
            k -= 1
            val = top.items
        out.append(val)
        return 0


cdef bytes _arg(object a):
    cdef type t = type(a)
    if t is bytes:
        return <bytes>a
    if t is str:
        return (<str>a).encode("utf-8")
    if t is int or (isinstance(a, int) and t is not bool):
        return b"%d" % a
    if isinstance(a, float):
        return float.__repr__(a).encode()
    if isinstance(a, (bytearray, memoryview)):
        return bytes(a)
    if isinstance(a, str):
        return str.encode(a, "utf-8")
    if isinstance(a, bytes):
        return bytes(a)
    raise TypeError(f"cannot send {t.__name__} to Redis: use bytes, str, int or float")


cdef inline Py_ssize_t _put_len(char *w, char tag, Py_ssize_t n):
    # Write "<tag><n>\r\n" at w; return the bytes written.
    cdef char tmp[24]
    cdef Py_ssize_t k = 0, i = 0
    w[0] = tag
    if n == 0:
        tmp[0] = c'0'
        k = 1
    while n:
        tmp[k] = <char>(c'0' + n % 10)
        n //= 10
        k += 1
    while i < k:
        w[1 + i] = tmp[k - 1 - i]
        i += 1
    w[1 + k] = c'\r'
    w[2 + k] = c'\n'
    return k + 3


cdef inline Py_ssize_t _digits(Py_ssize_t n):
    cdef Py_ssize_t d = 1
    while n >= 10:
        n //= 10
        d += 1
    return d


def pack_command(*args):
    """One command as a RESP array of bulk strings (bytes, str as UTF-8, int, float via repr)."""
    cdef Py_ssize_t nargs = len(args), total, i, size
    cdef list parts = [None] * nargs
    cdef bytes b, out
    cdef char *w
    total = _digits(nargs) + 3
    for i in range(nargs):
        b = _arg(args[i])
        parts[i] = b
        size = PyBytes_GET_SIZE(b)
        total += _digits(size) + 3 + size + 2
    # Size first, then one allocation and straight copies.
    out = PyBytes_FromStringAndSize(NULL, total)
    w = PyBytes_AS_STRING(out)
    w += _put_len(w, c'*', nargs)
    for i in range(nargs):
        b = <bytes>parts[i]
        size = PyBytes_GET_SIZE(b)
        w += _put_len(w, c'$', size)
        memcpy(w, PyBytes_AS_STRING(b), size)
        w[size] = c'\r'
        w[size + 1] = c'\n'
        w += size + 2
    return out
