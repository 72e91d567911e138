"""Prompt data for diffusion alignment: prompts drawn uniformly with replacement (as the official
Nabla-GFlowNet / Nabla-R2D3 code does), reproducibly per epoch, plus a fixed validation prompt list."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler


class _Prompts(Dataset):
    def __init__(self, prompts: Sequence[str]) -> None:
        self.prompts = list(prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> str:
        return self.prompts[index]


class _EpochDraws(Sampler[int]):
    """``count`` indices drawn with replacement from ``Generator(seed + epoch)``; Lightning calls ``set_epoch``,
    so an epoch's prompts do not depend on global random state (resumed runs see the same prompts)."""

    def __init__(self, size: int, count: int, seed: int) -> None:
        self.size, self.count, self.seed, self.epoch = size, count, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randint(0, self.size, (self.count,), generator=gen).tolist())

    def __len__(self) -> int:
        return self.count


def _collate(prompts: list[str]) -> list[str]:
    return prompts


class PromptDataModule(LightningDataModule):
    """Batches of prompts (lists of strings). Each training batch is one collection round of the algorithm.

    Args:
        prompts: the training prompts (or give ``prompt_file``, one prompt per line).
        prompt_file: a text file of prompts, one per line.
        batch_size: prompts per round.
        rounds_per_epoch: training batches per epoch.
        val_prompts: fixed prompts evaluated on validation (none: no validation).
        val_batch_size: prompts per validation batch (default ``batch_size``).
        seed: seed of the prompt draws.
    """

    def __init__(
        self,
        prompts: Sequence[str] | None = None,
        prompt_file: str | None = None,
        batch_size: int = 4,
        rounds_per_epoch: int = 1,
        val_prompts: Sequence[str] | None = None,
        val_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if (prompts is None) == (prompt_file is None):
            raise ValueError("give exactly one of prompts (a list) or prompt_file (one prompt per line)")
        if prompt_file is not None:
            prompts = [line.strip() for line in Path(prompt_file).read_text().splitlines() if line.strip()]
        if not prompts:
            raise ValueError("the prompt list is empty")
        self.prompts, self.val_prompts = list(prompts), list(val_prompts or [])
        self.batch_size, self.rounds_per_epoch, self.seed = batch_size, rounds_per_epoch, seed
        self.val_batch_size = batch_size if val_batch_size is None else val_batch_size

    def train_dataloader(self) -> DataLoader:
        sampler = _EpochDraws(len(self.prompts), self.batch_size * self.rounds_per_epoch, self.seed)
        return DataLoader(_Prompts(self.prompts), batch_size=self.batch_size, sampler=sampler, collate_fn=_collate)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Prompts(self.val_prompts), batch_size=self.val_batch_size, collate_fn=_collate)
