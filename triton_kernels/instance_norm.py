"""Triton kernels for fused instance norm (+activation, +residual): the CUDA side of
csrc/instance_norm.cpp.

Same math and the same layout rules (fastgen/_layout.py: contiguous or channels-innermost,
kept in the output; fastgen/ops/instance_norm.py lays the operands out). One program
normalizes a block of channels of one sample: element (n, c, m) sits at
n * stride_n + c * stride_c + m * stride_m, so the contiguous (NC*) and channels-last (N*C)
layouts share the kernels (Triton specializes the stride equal to 1).
Statistics are two-pass (mean, then sum of squared deviations) in float32 (float64 for
float64); the sample's planes are re-read from L2 for the second pass and the normalization.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import AOT_DTYPES, aot_signature, autotune_configs, config_options, launch, tl_dtype

ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2}

# The tile along the plane (BLOCK_M) and the warps are autotuned per (C, M, layout): the best
# depends on the plane size (a 4x4 ProGAN plane or a 256x256 CycleGAN one) and on the layout.
# Planar programs (BLOCK_C == 1) stream one plane; channels-last programs hold a
# (BLOCK_C, BLOCK_M) tile of 32 channels, whose accumulators must stay in registers (the AOT
# report: 32 x 128 spilled). Every config compiles for sm_80 and sm_90 (aot_specs).
PLANAR_CONFIGS = [triton.Config({"BLOCK_M": m}, num_warps=w) for m, w in ((256, 2), (1024, 4), (2048, 8))]
CHANNELS_LAST_CONFIGS = [
    triton.Config({"BLOCK_M": m}, num_warps=w, num_stages=s) for m, w, s in ((16, 4, 3), (32, 4, 2), (64, 8, 2))
]
_INTERPRETER_CONFIG = triton.Config({"BLOCK_M": 64}, num_warps=4)
_TUNE_KEY = ["C", "M", "stride_c"]


def _configs_for(configs, named_args, **kwargs):
    """The configs for this launch's layout, without tiles far longer than the plane."""
    planar = kwargs["BLOCK_C"] == 1
    mine = [c for c in configs if (c.kwargs["BLOCK_M"] >= 256) == planar]  # the two lists' tiles
    fitting = [c for c in mine if c.kwargs["BLOCK_M"] <= max(16, 2 * named_args["M"])]
    return fitting or [min(mine, key=lambda c: c.kwargs["BLOCK_M"])]


@triton.jit
def _activate(y, slope, ACT: tl.constexpr):
    # NaN in, NaN out (y <= 0 and y > 0 are both false for NaN), as torch's relu / leaky_relu.
    if ACT == 1:
        y = tl.where(y <= 0.0, 0.0, y)
    elif ACT == 2:
        y = tl.where(y > 0.0, y, y * slope)
    return y


@triton.jit
def _activation_grad(y, g, slope, ACT: tl.constexpr):
    # torch's conventions: relu passes the gradient unless y <= 0, leaky_relu scales it unless y > 0.
    if ACT == 1:
        g = tl.where(y <= 0.0, 0.0, g)
    elif ACT == 2:
        g = tl.where(y > 0.0, g, g * slope)
    return g


@triton.autotune(
    autotune_configs(PLANAR_CONFIGS + CHANNELS_LAST_CONFIGS, _INTERPRETER_CONFIG),
    key=_TUNE_KEY,
    prune_configs_by={"early_config_prune": _configs_for},
)
@triton.jit
def _instance_norm_fwd_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    b_ptr,
    out_ptr,
    mean_ptr,
    var_ptr,
    C,
    M,
    stride_n,
    stride_c,
    stride_m,
    eps,
    slope,
    COMPUTE_STATS: tl.constexpr,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    HAS_RES: tl.constexpr,
    ACT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_M: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_in = cs < C
    base = n * stride_n + cs[:, None].to(tl.int64) * stride_c
    if COMPUTE_STATS:
        acc = tl.zeros([BLOCK_C, BLOCK_M], COMPUTE)
        for m0 in range(0, M, BLOCK_M):
            ms = m0 + tl.arange(0, BLOCK_M)
            inside = c_in[:, None] & (ms < M)[None, :]
            x = tl.load(x_ptr + base + ms[None, :].to(tl.int64) * stride_m, mask=inside, other=0.0).to(COMPUTE)
            acc += x
        mean = tl.sum(acc, axis=1) / M
        acc = tl.zeros([BLOCK_C, BLOCK_M], COMPUTE)
        for m0 in range(0, M, BLOCK_M):
            ms = m0 + tl.arange(0, BLOCK_M)
            inside = c_in[:, None] & (ms < M)[None, :]
            x = tl.load(x_ptr + base + ms[None, :].to(tl.int64) * stride_m, mask=inside, other=0.0).to(COMPUTE)
            d = tl.where(inside, x - mean[:, None], 0.0)
            acc += d * d
        var = tl.sum(acc, axis=1) / M
        tl.store(mean_ptr + n * C + cs, mean, mask=c_in)
        tl.store(var_ptr + n * C + cs, var, mask=c_in)
    else:
        mean = tl.load(mean_ptr + n * C + cs, mask=c_in, other=0.0).to(COMPUTE)
        var = tl.load(var_ptr + n * C + cs, mask=c_in, other=1.0).to(COMPUTE)
    scale = 1.0 / tl.sqrt(var + eps)
    if HAS_W:
        scale = scale * tl.load(w_ptr + cs, mask=c_in, other=1.0).to(COMPUTE)
    if HAS_B:
        shift = tl.load(b_ptr + cs, mask=c_in, other=0.0).to(COMPUTE)
    else:
        shift = tl.zeros([BLOCK_C], COMPUTE)
    for m0 in range(0, M, BLOCK_M):
        ms = m0 + tl.arange(0, BLOCK_M)
        inside = c_in[:, None] & (ms < M)[None, :]
        offs = base + ms[None, :].to(tl.int64) * stride_m
        x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(COMPUTE)
        y = _activate((x - mean[:, None]) * scale[:, None] + shift[:, None], slope, ACT)
        if HAS_RES:
            y += tl.load(res_ptr + offs, mask=inside, other=0.0).to(COMPUTE)
        tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=inside)


@triton.autotune(
    autotune_configs(PLANAR_CONFIGS + CHANNELS_LAST_CONFIGS, _INTERPRETER_CONFIG),
    key=_TUNE_KEY,
    prune_configs_by={"early_config_prune": _configs_for},
)
@triton.jit
def _instance_norm_bwd_kernel(
    g_ptr,
    x_ptr,
    w_ptr,
    b_ptr,
    mean_ptr,
    var_ptr,
    dx_ptr,
    sums_ptr,
    N,
    C,
    M,
    stride_n,
    stride_c,
    stride_m,
    eps,
    slope,
    USE_INPUT_STATS: tl.constexpr,
    NEED_SUMS: tl.constexpr,
    NEED_DX: tl.constexpr,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    ACT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_M: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_in = cs < C
    base = n * stride_n + cs[:, None].to(tl.int64) * stride_c
    mean = tl.load(mean_ptr + n * C + cs, mask=c_in, other=0.0).to(COMPUTE)
    rstd = 1.0 / tl.sqrt(tl.load(var_ptr + n * C + cs, mask=c_in, other=1.0).to(COMPUTE) + eps)
    if HAS_W:
        scale = rstd * tl.load(w_ptr + cs, mask=c_in, other=1.0).to(COMPUTE)
    else:
        scale = rstd
    if HAS_B:
        shift = tl.load(b_ptr + cs, mask=c_in, other=0.0).to(COMPUTE)
    else:
        shift = tl.zeros([BLOCK_C], COMPUTE)
    sum_gy = tl.zeros([BLOCK_C], COMPUTE)
    sum_gy_xc = tl.zeros([BLOCK_C], COMPUTE)
    if NEED_SUMS:
        acc1 = tl.zeros([BLOCK_C, BLOCK_M], COMPUTE)
        acc2 = tl.zeros([BLOCK_C, BLOCK_M], COMPUTE)
        for m0 in range(0, M, BLOCK_M):
            ms = m0 + tl.arange(0, BLOCK_M)
            inside = c_in[:, None] & (ms < M)[None, :]
            offs = base + ms[None, :].to(tl.int64) * stride_m
            xc = tl.load(x_ptr + offs, mask=inside, other=0.0).to(COMPUTE) - mean[:, None]
            g = tl.load(g_ptr + offs, mask=inside, other=0.0).to(COMPUTE)
            gy = _activation_grad(xc * scale[:, None] + shift[:, None], g, slope, ACT)
            acc1 += gy
            acc2 += tl.where(inside, gy * xc, 0.0)
        sum_gy = tl.sum(acc1, axis=1)
        sum_gy_xc = tl.sum(acc2, axis=1)
        tl.store(sums_ptr + n * C + cs, sum_gy, mask=c_in)
        tl.store(sums_ptr + N * C + n * C + cs, sum_gy_xc, mask=c_in)
    if NEED_DX:
        if USE_INPUT_STATS:
            cx = -scale * rstd * rstd * sum_gy_xc / M
            ca = -scale * sum_gy / M
        else:
            cx = tl.zeros([BLOCK_C], COMPUTE)
            ca = tl.zeros([BLOCK_C], COMPUTE)
        for m0 in range(0, M, BLOCK_M):
            ms = m0 + tl.arange(0, BLOCK_M)
            inside = c_in[:, None] & (ms < M)[None, :]
            offs = base + ms[None, :].to(tl.int64) * stride_m
            xc = tl.load(x_ptr + offs, mask=inside, other=0.0).to(COMPUTE) - mean[:, None]
            g = tl.load(g_ptr + offs, mask=inside, other=0.0).to(COMPUTE)
            gy = _activation_grad(xc * scale[:, None] + shift[:, None], g, slope, ACT)
            dx = gy * scale[:, None] + xc * cx[:, None] + ca[:, None]
            tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=inside)


def _geometry(x: torch.Tensor, interleaved: bool):
    """(N, C, M, stride_n, stride_c, stride_m, BLOCK_C) of a kernel-layout tensor (BLOCK_M is
    autotuned)."""
    N, C = x.shape[0], x.shape[1]
    M = x.numel() // (N * C) if N * C else 0
    if interleaved:
        # (N, M, C) memory: channels along the vector; a program covers 32 channels.
        return N, C, M, M * C, 1, C, min(32, triton.next_power_of_2(max(C, 1)))
    return N, C, M, C * M, M, 1, 1


# The launchers take checked tensors: x_ contiguous or channels-innermost (interleaved: channels
# innermost in memory), the operands of its shape in its layout (fastgen/ops/instance_norm.py);
# acc is the accumulation dtype, that of the statistics.


def instance_norm(
    x_,
    weight,
    bias,
    running_mean,
    running_var,
    res_,
    use_input_stats,
    eps,
    activation,
    negative_slope,
    interleaved,
    acc,
):
    x = x_
    N, C, M, sn, sc, sm, block_c = _geometry(x_, interleaved)
    stats = acc
    out = torch.empty_like(x_)
    if use_input_stats:
        mean = torch.empty((N, C), dtype=stats, device=x.device)
        var = torch.empty((N, C), dtype=stats, device=x.device)
        if M == 0:
            mean.fill_(float("nan"))
            var.fill_(float("nan"))
    else:
        mean = running_mean.to(stats).reshape(1, C).expand(N, C).contiguous()
        var = running_var.to(stats).reshape(1, C).expand(N, C).contiguous()
    if x_.numel() == 0:
        return out, mean, var
    w_ = weight.to(stats).contiguous() if weight is not None else mean
    b_ = bias.to(stats).contiguous() if bias is not None else mean
    launch(_instance_norm_fwd_kernel)[(N, triton.cdiv(C, block_c))](
        x_,
        res_ if res_ is not None else x_,
        w_,
        b_,
        out,
        mean,
        var,
        C,
        M,
        sn,
        sc,
        sm,
        float(eps),
        float(negative_slope),
        COMPUTE_STATS=bool(use_input_stats),
        HAS_W=weight is not None,
        HAS_B=bias is not None,
        HAS_RES=res_ is not None,
        ACT=ACT_CODES[activation],
        BLOCK_C=block_c,
        COMPUTE=tl_dtype(acc),
    )
    return out, mean, var


def instance_norm_backward(
    g_,
    x_,
    weight,
    bias,
    mean,
    var,
    use_input_stats,
    eps,
    activation,
    negative_slope,
    output_mask,
    outputs,
    interleaved,
    acc,
):
    """outputs: the empty (grad_input, grad_weight, grad_bias) to fill (x_'s layout)."""
    x = x_
    grad_input, grad_weight, grad_bias = outputs
    N, C, M, sn, sc, sm, block_c = _geometry(x_, interleaved)
    stats = acc
    need_params = bool(output_mask[1] or output_mask[2])
    need_sums = need_params or (bool(output_mask[0]) and bool(use_input_stats))
    sums = torch.zeros((2, N, C), dtype=stats, device=x.device)
    mean_, var_ = mean.contiguous(), var.contiguous()
    if x_.numel() and (need_sums or output_mask[0]):
        w_ = weight.to(stats).contiguous() if weight is not None else mean_
        b_ = bias.to(stats).contiguous() if bias is not None else mean_
        launch(_instance_norm_bwd_kernel)[(N, triton.cdiv(C, block_c))](
            g_,
            x_,
            w_,
            b_,
            mean_,
            var_,
            grad_input if output_mask[0] else x_,
            sums,
            N,
            C,
            M,
            sn,
            sc,
            sm,
            float(eps),
            float(negative_slope),
            USE_INPUT_STATS=bool(use_input_stats),
            NEED_SUMS=need_sums,
            NEED_DX=bool(output_mask[0]),
            HAS_W=weight is not None,
            HAS_B=bias is not None,
            ACT=ACT_CODES[activation],
            BLOCK_C=block_c,
            COMPUTE=tl_dtype(acc),
        )
    if need_params:
        rstd = torch.rsqrt(var_ + eps)
        if output_mask[1]:
            grad_weight.copy_((rstd * sums[1]).sum(0))
        if output_mask[2]:
            grad_bias.copy_(sums[0].sum(0))
    return grad_input, grad_weight, grad_bias


def aot_specs():
    """(name, kernel, signature, constexprs, compile options) for the specializations the
    launchers and the autotuner use, for the ahead-of-time compile (fastgen.triton_kernels.aot)."""
    specs = []
    for dtype, ptr, acc, compute in AOT_DTYPES:
        stats = {name: "*acc" for name in ("w_ptr", "b_ptr", "mean_ptr", "var_ptr", "sums_ptr")}
        scalars = {"eps": "acc", "slope": "acc"}
        fwd_sig = aot_signature(
            _instance_norm_fwd_kernel, ptr, acc, {k: v for k, v in stats.items() if k != "sums_ptr"} | scalars
        )
        bwd_sig = aot_signature(_instance_norm_bwd_kernel, ptr, acc, stats | scalars)
        # Every variant in float32 with every config the autotuner can pick; in the other dtypes
        # (the same code) the heaviest variant (leaky ReLU, residual, statistics) with every config.
        fwd_variants = ((1, False, True, False), (2, True, True, True), (0, False, False, True))
        bwd_variants = ((1, True, False), (2, True, True), (0, False, True))
        if dtype != "fp32":
            fwd_variants, bwd_variants = fwd_variants[1:2], bwd_variants[1:2]
        for layout, block_c, configs in (("planar", 1, PLANAR_CONFIGS), ("channels_last", 32, CHANNELS_LAST_CONFIGS)):
            for config in configs:
                block_m, options = config.kwargs["BLOCK_M"], config_options(config)
                tag = f"{dtype},{layout},{block_m}w{config.num_warps}s{config.num_stages}"
                for act, res, stats, affine in fwd_variants:
                    consts = {
                        "COMPUTE_STATS": stats,
                        "HAS_W": affine,
                        "HAS_B": affine,
                        "HAS_RES": res,
                        "ACT": act,
                        "BLOCK_C": block_c,
                        "BLOCK_M": block_m,
                        "COMPUTE": compute,
                    }
                    specs.append(
                        (
                            f"instance_norm_fwd[{tag},act={act},res={res},stats={stats}]",
                            _instance_norm_fwd_kernel,
                            fwd_sig,
                            consts,
                            options,
                        )
                    )
                for act, stats, affine in bwd_variants:
                    consts = {
                        "USE_INPUT_STATS": stats,
                        "NEED_SUMS": True,
                        "NEED_DX": True,
                        "HAS_W": affine,
                        "HAS_B": affine,
                        "ACT": act,
                        "BLOCK_C": block_c,
                        "BLOCK_M": block_m,
                        "COMPUTE": compute,
                    }
                    specs.append(
                        (
                            f"instance_norm_bwd[{tag},act={act},stats={stats}]",
                            _instance_norm_bwd_kernel,
                            bwd_sig,
                            consts,
                            options,
                        )
                    )
    return specs
