"""Faktory client-command framing and reply serializers: the compiled codec if built, else Python.

Names as in ``wire_py``; see ``codec.select`` for ``IMPLEMENTATION``, ``cython_impl`` and
``python_impl``. Types: ``wire.pyi``.
"""
from faktory_fast import wire_py
from faktory_fast.codec import select

select("faktory_fast._wire", wire_py, globals())
