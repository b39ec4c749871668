"""Benchmark cases, one module per op family; importing this package registers them."""
from fastgen.bench.cases import reparam_kl  # noqa: F401
