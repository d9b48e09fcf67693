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
