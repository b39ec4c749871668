"""Model-parallel margin softmax cross-entropy on torch.distributed (as Partial FC does): the
class centers are sharded across the ranks of a process group, and no rank holds more than
its classes' weights and gradients.

The loss and every gradient equal fastgen.functional.margin_cross_entropy on the concatenated
batch and the full weight. Works with any backend that has all_gather and all_reduce(MAX/SUM):
gloo on CPU, NCCL on GPUs.

    dist.init_process_group("nccl")
    head = ShardedMarginCrossEntropy(512, 1_000_000)       # this rank's rows of the weight
    loss = head(embeddings, labels)                         # local batch, global class labels
    loss.backward()                                         # grads of embeddings and the shard
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from fastgen import _checks
from fastgen import functional as F

__all__ = ["ShardedMarginCrossEntropy", "sharded_margin_cross_entropy", "shard_range"]

_ops = torch.ops.fastgen


def shard_range(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, end) of the classes rank `rank` holds: contiguous, sizes differing by at most one."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _all_gather_rows(t: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    """Concatenation over the ranks of each rank's `t` (rows may differ in number)."""
    longest = max(sizes)
    padded = t.new_zeros((longest, *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous(), group=group)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def _batch_sizes(batch: int, device: torch.device, group) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, torch.tensor([batch], dtype=torch.int64, device=device), group=group)
    return [int(s.item()) for s in sizes]


class _ShardedMarginCE(torch.autograd.Function):
    # The embeddings and labels are all-gathered; each rank runs the fused op
    # (fastgen::margin_softmax) on its shard of the classes only, and the log-sum-exp over all
    # classes combines an all-reduce of the per-rank maxima with one of the rescaled sums.
    @staticmethod
    def forward(
        ctx,
        embeddings,
        weight,
        labels,
        class_start,
        num_classes,
        s,
        m1,
        m2,
        m3,
        easy_margin,
        reduction,
        ignore_index,
        group,
        straight_through=False,
    ):
        sizes = _batch_sizes(embeddings.shape[0], embeddings.device, group)
        rank = dist.get_rank(group)
        x_all = _all_gather_rows(embeddings.detach(), sizes, group)
        labels_all = _all_gather_rows(labels, sizes, group)
        params = (class_start, num_classes, s, m1, m2, m3, easy_margin, ignore_index)
        lse_local, target_local, cos_local = _ops.margin_softmax(
            x_all, weight.detach(), labels_all, *params, straight_through
        )
        # log-sum-exp over every rank's classes: max, then the sum of exp(lse_r - max).
        top = lse_local.clone()
        dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
        total = torch.exp(lse_local - top)
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        ignored = labels_all == ignore_index
        lse = torch.where(ignored, 0.0, top + torch.log(total))
        target = target_local.clone()  # only the rank holding the label has it (others 0)
        dist.all_reduce(target, op=dist.ReduceOp.SUM, group=group)
        per_row = lse - target
        first = sum(sizes[:rank])
        ctx.save_for_backward(x_all, weight, labels_all, lse, cos_local)
        ctx.params, ctx.reduction, ctx.group, ctx.straight_through = params, reduction, group, straight_through
        ctx.sizes, ctx.first, ctx.count = sizes, first, int((~ignored).sum())
        if reduction == "none":
            return per_row[first : first + embeddings.shape[0]].to(embeddings.dtype)
        total_loss = per_row.sum()
        if reduction == "mean":
            total_loss = total_loss / ctx.count if ctx.count else total_loss * math.nan
        return total_loss.to(embeddings.dtype)

    @staticmethod
    def backward(ctx, grad):
        x_all, weight, labels_all, lse, cos_local = ctx.saved_tensors
        group = ctx.group
        compute = lse.dtype
        if ctx.reduction == "none":
            rows = _all_gather_rows(grad.to(compute).contiguous(), ctx.sizes, group)
        else:
            scale = 1.0 / ctx.count if (ctx.reduction == "mean" and ctx.count) else 1.0
            rows = (grad.to(compute) * scale).expand(lse.shape[0]).contiguous()
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
        grad_x_all, grad_w = _ops.margin_softmax_backward(
            rows, -rows, x_all, weight, labels_all, lse, cos_local, *ctx.params, mask, ctx.straight_through
        )
        grad_x = None
        if mask[0]:
            # every rank's classes contribute to every row's gradient
            dist.all_reduce(grad_x_all, op=dist.ReduceOp.SUM, group=group)
            grad_x = grad_x_all[ctx.first : ctx.first + ctx.sizes[dist.get_rank(group)]]
        return (grad_x, grad_w if mask[1] else None) + (None,) * 12


def sharded_margin_cross_entropy(
    embeddings: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    class_start: int,
    num_classes: int,
    *,
    s: float = 64.0,
    m1: float = 1.0,
    m2: float = 0.5,
    m3: float = 0.0,
    easy_margin: bool = False,
    reduction: str = "mean",
    ignore_index: int = -100,
    group: dist.ProcessGroup | None = None,
    straight_through: bool = False,
) -> torch.Tensor:
    """fastgen.functional.margin_cross_entropy with the weight sharded over `group`.

    embeddings (B_r, E) and labels (B_r,) are this rank's batch (labels are global class
    indices); weight (C_r, E) holds classes [class_start, class_start + C_r) of num_classes.
    "mean" and "sum" return the loss of the whole (gathered) batch on every rank, "none" this
    rank's rows. Every rank must call it (collectives) and then backward."""
    fn = "sharded_margin_cross_entropy"
    F._check_margin_args(fn, embeddings, weight, labels, s, reduction)
    if not (0 <= class_start and class_start + weight.shape[0] <= num_classes):
        _checks.fail(
            fn,
            f"the weight's classes [class_start, class_start + {weight.shape[0]}) must lie in "
            f"[0, num_classes), got class_start={class_start}, num_classes={num_classes}",
        )
    return _ShardedMarginCE.apply(
        embeddings,
        weight,
        labels,
        int(class_start),
        int(num_classes),
        float(s),
        float(m1),
        float(m2),
        float(m3),
        bool(easy_margin),
        reduction,
        int(ignore_index),
        group,
        bool(straight_through),
    )


class ShardedMarginCrossEntropy(nn.Module):
    """The margin loss head (fastgen.nn.CombinedMarginLoss) with its class centers sharded over
    the ranks of `process_group` (default: the world): this rank's `weight` is rows
    [class_start, class_end) of the (num_classes, embedding_size) matrix.

    forward(embeddings, labels): this rank's batch, global labels -> the loss of the whole batch
    (mean / sum) or this rank's per-row losses (none)."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.5,
        m3: float = 0.0,
        *,
        easy_margin: bool = False,
        reduction: str = "mean",
        ignore_index: int = -100,
        straight_through: bool = False,
        process_group: dist.ProcessGroup | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        name = "distributed.ShardedMarginCrossEntropy"
        if not dist.is_available() or not dist.is_initialized():
            _checks.fail(
                name, "needs an initialized torch.distributed process group (dist.init_process_group)", RuntimeError
            )
        _checks.check_reduction(name, reduction)
        world, rank = dist.get_world_size(process_group), dist.get_rank(process_group)
        if num_classes < world:
            _checks.fail(
                name,
                f"num_classes must be at least the world size ({world}) so that every rank holds a "
                f"class, got {num_classes}",
            )
        self.group = process_group
        self.embedding_size, self.num_classes = embedding_size, num_classes
        self.class_start, self.class_end = shard_range(num_classes, world, rank)
        self.s, self.m1, self.m2, self.m3 = float(s), float(m1), float(m2), float(m3)
        self.easy_margin, self.reduction, self.ignore_index = easy_margin, reduction, ignore_index
        self.straight_through = bool(straight_through)
        self.weight = nn.Parameter(
            torch.empty(self.class_end - self.class_start, embedding_size, device=device, dtype=dtype)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # N(0, 0.01), as the unsharded head and arcface_torch's PartialFC_V2 draw it.
        nn.init.normal_(self.weight, 0.0, 0.01)

    @torch.no_grad()
    def load_full_weight(self, weight: torch.Tensor) -> None:
        """Takes this rank's rows of a full (num_classes, embedding_size) weight."""
        if weight.shape != (self.num_classes, self.embedding_size):
            _checks.fail(
                "distributed.ShardedMarginCrossEntropy",
                f"weight must have shape {(self.num_classes, self.embedding_size)}, got {tuple(weight.shape)}",
            )
        self.weight.copy_(weight[self.class_start : self.class_end])

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return sharded_margin_cross_entropy(
            embeddings,
            self.weight,
            labels,
            self.class_start,
            self.num_classes,
            s=self.s,
            m1=self.m1,
            m2=self.m2,
            m3=self.m3,
            easy_margin=self.easy_margin,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            group=self.group,
            straight_through=self.straight_through,
        )

    def extra_repr(self) -> str:
        return (
            f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, "
            f"classes=[{self.class_start}, {self.class_end}), s={self.s}, m1={self.m1}, m2={self.m2}, m3={self.m3}"
        )
