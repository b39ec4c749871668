import os

# Triton kernels run under the interpreter on CPU tensors here. The choice is made when
# @triton.jit decorates, so this must be set before any fastgen.triton_kernels import.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import fastgen  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
