"""NaN in, NaN out on the GPU too: torch's clamp / relu / min propagate NaN, while Triton's
tl.maximum / tl.minimum drop it by default (PTX max.f32 returns the other operand). The
interpreter uses NumPy, which propagates NaN either way, so the property is checked in the PTX
compiled for sm_90: every hinge and clamp that torch computes with NaN propagation must compile
to max.NaN / min.NaN."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

# spec names (fastgen.triton_kernels.aot) -> the NaN-propagating instruction their PTX must hold
EXPECTED = {
    "penalty_finalize[fp32,one_sided=True,r1=False]": "max.NaN.f32",
    "penalty_bwd[fp32,one_sided=True]": "max.NaN.f32",
    "triplet_fwd[fp32,norm=0,swap=True]": "min.NaN.f32",
    "triplet_fwd[fp32,norm=0,swap=False]": "max.NaN.f32",
    "contrastive_fwd[fp32": "max.NaN.f32",
    "contrastive_bwd[fp32": "max.NaN.f32",
}


def test_clamps_propagate_nan_in_compiled_ptx():
    code = textwrap.dedent(f"""
        import json
        from fastgen.triton_kernels import aot
        expected = {EXPECTED!r}
        found = {{}}
        for spec in aot.specs():
            for prefix, instruction in expected.items():
                if spec[1].startswith(prefix) and prefix not in found:
                    found[prefix] = instruction in aot.compile_spec(spec, 90).asm["ptx"]
        print(json.dumps(found))
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(found) == set(EXPECTED), f"specs not found: {set(EXPECTED) - set(found)}"
    assert all(found.values()), f"clamps that drop NaN: {[k for k, v in found.items() if not v]}"
