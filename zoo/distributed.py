"""Cross-rank statistics for algorithms whose loss depends on the whole batch (DDPO's advantage normalisation,
GRPO's group advantages). Every rank holds an equal-sized slice of the global batch, in rank order; outside
``torch.distributed`` (one process) every function is the identity.

These use the process group the Lightning strategy (DDP, FSDP, DeepSpeed) has set up.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 outside ``torch.distributed``)."""
    return dist.get_world_size() if _active() else 1


def rank() -> int:
    """This process's rank (0 outside ``torch.distributed``)."""
    return dist.get_rank() if _active() else 0


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The per-rank ``tensor`` ``[n, ...]`` of every rank, concatenated along dim 0 in rank order ``[W·n, ...]``
    (no gradient)."""
    if not _active():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    return torch.cat(parts)


def gather_objects(items: list[Any]) -> list[Any]:
    """The per-rank list ``items`` of every rank, concatenated in rank order (picklable objects, e.g. prompts)."""
    if not _active():
        return list(items)
    parts: list[list[Any] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]  # type: ignore[union-attr]


def local_rows(n_local: int) -> slice:
    """This rank's rows of a batch gathered by :func:`gather_rows` from ``n_local`` rows per rank."""
    start = rank() * n_local
    return slice(start, start + n_local)
