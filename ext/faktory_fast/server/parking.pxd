# Types for the compiled parking.py (setup.py); the .py is the source of truth.

cdef class _Fetch:
    cdef readonly object park
    cdef readonly list queues
    cdef readonly str wid
    cdef readonly double deadline
    cdef readonly object then
    cdef public object wakes
    cdef public bint woken
    cdef public bint parked
    cdef public bint listening
    cdef readonly object runs  # list of (store, queues), or None with one partition
    cdef public Py_ssize_t run
    cdef public Py_ssize_t empties
    cdef public Py_ssize_t pauses
