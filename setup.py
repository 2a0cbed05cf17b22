"""The compiled parts: hlrsmpp/smpp/_speedups.c (the per-lookup PDUs),
hlrsmpp/accounts/_sqlite_batch.c (the group commit on a thread without the GIL; links
libsqlite3) and hlrsmpp/hlr/_resolve.c (a number's seeded draws, the destination's parse
and the common case of its HLR answer).

``optional=True``: where no C compiler, Python headers or SQLite headers are found,
the install still succeeds and the server runs the Python code instead (slower, same
answers). Everything else is declared in pyproject.toml.
"""
from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(ext_modules=[
    Extension("hlrsmpp.smpp._speedups", ["hlrsmpp/smpp/_speedups.c"], optional=True, extra_compile_args=FLAGS),
    Extension("hlrsmpp.accounts._sqlite_batch", ["hlrsmpp/accounts/_sqlite_batch.c"], optional=True,
              libraries=["sqlite3"], extra_compile_args=FLAGS),
    Extension("hlrsmpp.hlr._resolve", ["hlrsmpp/hlr/_resolve.c"], optional=True, extra_compile_args=FLAGS),
])
