"""Standard benchmark shapes. The definitions live in fastgen/bench/shapes.py so that the
installed fastgen-bench runner and these pytest-benchmark files read the same lists."""
from fastgen.bench.shapes import *  # noqa: F401,F403
