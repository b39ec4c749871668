import atexit
import os
import shutil
import tempfile

# Triton kernels run under the interpreter on CPU tensors here. The choice is made when
# @triton.jit decorates, so this must be set before any fastgen.triton_kernels import.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
# A fresh inductor cache per test session: a compiled graph cached before a fake impl changed
# (say, an op's output dtype) would otherwise be replayed and fail, or pass, for stale reasons.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastgen-inductor-")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI and `make test` replay the same hypothesis examples every run (derandomize); set
# HYPOTHESIS_PROFILE=explore to search new random examples, many more of them.
settings.register_profile("fastgen", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fastgen"))

import fastgen  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
