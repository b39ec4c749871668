"""Benchmark cases, one module per op family or model (fastgen/bench/cases/<name>.py);
importing this package imports them all, which registers them."""
import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")
