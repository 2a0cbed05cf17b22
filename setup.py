"""The one compiled part: hlrsmpp/smpp/_speedups.c, the per-lookup PDUs in C.

``optional=True``: where no C compiler or Python headers are found, the install
still succeeds and the server runs on the Python codec (slower, same answers).
Everything else is declared in pyproject.toml.
"""
from setuptools import Extension, setup

setup(ext_modules=[
    Extension("hlrsmpp.smpp._speedups", ["hlrsmpp/smpp/_speedups.c"], optional=True,
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
])
