"""Builds fastgen._C (the C++ CPU kernels) and installs fastgen and fastgen.triton_kernels.

Install with torch already present and without build isolation:
    pip install --no-build-isolation -e .
(with isolation pip would fetch a multi-GB CUDA torch to build against).
"""
import importlib.util
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("fastgen_build", os.path.join(_here, "fastgen", "_build.py"))
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)

setup(
    name="fastgen",
    version="0.1.0",
    description="Fused CPU (C++) and CUDA (Triton) kernels for generative models in PyTorch",
    python_requires=">=3.10",
    packages=find_packages(include=["fastgen", "fastgen.*"]) + ["fastgen.triton_kernels"],
    package_dir={"fastgen.triton_kernels": "triton_kernels"},
    ext_modules=[
        CppExtension(
            _build.EXTENSION_NAME,
            [os.path.relpath(s, _here) for s in _build.sources()],
            include_dirs=_build.header_dirs(),
            extra_compile_args={"cxx": _build.cxx_flags()},
            extra_link_args=_build.link_flags(),
        )
    ],
    cmdclass={"build_ext": BuildExtension},
    entry_points={"console_scripts": ["fastgen-bench = fastgen.bench.__main__:main"]},
)
