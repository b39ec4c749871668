"""Benchmark cases, one module per op family (fastgen/bench/cases/<family>.py) and the whole-model
training steps (models.py);
importing this package imports them all, which registers them."""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")
