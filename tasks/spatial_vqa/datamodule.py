"""``SpatialVQADataModule``: training and evaluation batches from any :class:`~.datasets.VQADataset`.

Batch format (a dict of equal-length lists; ``B`` = batch size)::

    frames         list[Tensor]   B × uint8 [F, H, W, 3] RGB, channels last (sizes may differ between videos)
    seconds_per_frame  list[float | None]  time between sampled frames (``None``: unknown, e.g. SynthVSI)
    prompt         list[str]      the text prompt (training mode, or the official VSI-Bench prompt for eval)
    question       list[str]      the bare question
    question_type  list[str]      VSI-Bench question type of each record
    options        list[list[str]]  lettered options ("A. sofa"), empty for numerical / option-less records
    ground_truth   list[str]      option letter, word or number (compare with the rewards or the metric)
    id             list[int]
    scene_name     list[str]

``train_dataloader`` shuffles (seeded) and uses ``train_prompt_mode``; ``val_dataloader`` / ``test_dataloader``
use ``eval_prompt_mode`` and keep the file order. Score generations with
:class:`~zoo.tasks.spatial_vqa.metric.VSIBenchMetric` (``update(completions, batch["ground_truth"],
batch["question_type"])``) and train with :class:`~zoo.tasks.spatial_vqa.rewards.SpatialVQAReward`.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from zoo.configurable import Configurable
from zoo.tasks.spatial_vqa.datasets import VQADataset
from zoo.tasks.spatial_vqa.prompts import PROMPT_MODES, build_prompt


class PromptCollator:
    """Collates dataset items into the batch dict of the module docstring, building each prompt in ``mode``."""

    def __init__(self, mode: str) -> None:
        if mode not in (*PROMPT_MODES, "vsibench"):
            raise ValueError(f"unknown prompt mode {mode!r}; expected one of {(*PROMPT_MODES, 'vsibench')}")
        self.mode = mode

    def __call__(self, items: list[dict]) -> dict:
        records = [item["record"] for item in items]
        return {
            "frames": [item["frames"] for item in items],
            "seconds_per_frame": [item.get("seconds_per_frame") for item in items],
            "prompt": [build_prompt(r, self.mode) for r in records],
            "question": [r.question for r in records],
            "question_type": [r.question_type for r in records],
            "options": [list(r.options) for r in records],
            "ground_truth": [r.ground_truth for r in records],
            "id": [r.id for r in records],
            "scene_name": [r.scene_name for r in records],
        }


class SpatialVQADataModule(Configurable, LightningDataModule):
    """Spatial video QA for training (``train``) and evaluation (``val``, ``test``; ``test`` defaults to ``val``).

    Args:
        train / val / test: datasets (e.g. ``SynthVSI(split="train")``, ``SynthVSI(split="eval")``, ``VideoQA``).
        train_prompt_mode: ``think`` / ``observe`` / ``vanilla`` (vsGRPO training prompts) or ``vsibench``.
        eval_prompt_mode: the same choices; ``vsibench`` (the official prompt) needs lettered options on
            multiple-choice records, so option-less (VSI-100k-style) records use a training mode.
        batch_size / eval_batch_size: questions per batch.
        num_workers: DataLoader workers.
        seed: shuffling seed of the training loader.
    """

    def __init__(
        self,
        train: VQADataset | None = None,
        val: VQADataset | None = None,
        test: VQADataset | None = None,
        train_prompt_mode: str = "vanilla",
        eval_prompt_mode: str = "vanilla",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train_set, self.val_set, self.test_set = train, val, test if test is not None else val
        self.train_collate, self.eval_collate = PromptCollator(train_prompt_mode), PromptCollator(eval_prompt_mode)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed

    def _datasets(self) -> list[VQADataset]:
        return [d for d in (self.train_set, self.val_set, self.test_set) if d is not None]

    def prepare_data(self) -> None:
        """Create the datasets' files (SynthVSI questions, VSI-Bench download) once, on one process."""
        for dataset in self._datasets():
            dataset.prepare()

    def setup(self, stage: str | None = None) -> None:
        """Load the records of every dataset (on every process)."""
        for dataset in self._datasets():
            dataset.load()

    def _loader(self, dataset: VQADataset | None, name: str, train: bool) -> DataLoader:
        if dataset is None:
            raise ValueError(f"SpatialVQADataModule was built without a {name} dataset; pass {name}=...")
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            generator=torch.Generator().manual_seed(self.seed) if train else None,
            collate_fn=self.train_collate if train else self.eval_collate,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded) batches with training prompts."""
        return self._loader(self.train_set, "train", True)

    def val_dataloader(self) -> DataLoader:
        """Batches of ``val`` in file order with evaluation prompts."""
        return self._loader(self.val_set, "val", False)

    def test_dataloader(self) -> DataLoader:
        """Batches of ``test`` (or ``val``) in file order with evaluation prompts."""
        return self._loader(self.test_set, "test", False)
