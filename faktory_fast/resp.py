"""Redis RESP reply reader and command packer: the compiled codec if built, else Python.

Names as in ``resp_py``; see ``codec.select`` for ``IMPLEMENTATION``, ``cython_impl`` and
``python_impl``. Types: ``resp.pyi``.
"""
from faktory_fast import resp_py
from faktory_fast.codec import select

select("faktory_fast._resp", resp_py, globals())
