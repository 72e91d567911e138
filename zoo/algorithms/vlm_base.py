"""What the VLM algorithms (GRPO, SFT, DPO) share: the policy, the batch layout, the optimizer, greedy evaluation.

A batch is a mapping with one entry per question (the layout of ``zoo.tasks.spatial_vqa.SpatialVQADataModule``;
other keys are ignored)::

    frames          list of uint8 frame tensors [T, H, W, 3] (or one [B, T, H, W, 3] tensor)
    prompt          list[str]: the question text with its instruction (the chat template is added here)
    ground_truth    list[str]
    question_type   list[str]
    seconds_per_frame  optional list[float | None]: seconds between sampled frames (used by Qwen2.5-VL)

Validation/test decode greedily and feed the raw answers to the evaluation metric (``eval_metric``: a class path
of a torchmetrics ``Metric`` whose ``update(predictions, ground_truths, question_types)`` scores them, e.g. the
VSI-Bench metric; given by name so that the zoo core imports no task).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from zoo.algorithms.base import AlignmentModule
from zoo.configurable import import_class
from zoo.vlm.policy import TINY_RANDOM, QwenVLPolicy, shipped_model_dir

BATCH_KEYS = ("frames", "prompt", "ground_truth", "question_type")
VSIBENCH_METRIC = "zoo.tasks.spatial_vqa.metric.VSIBenchMetric"


class VLMAlignmentModule(AlignmentModule):
    """Base of the video-VLM algorithms: holds a :class:`~zoo.vlm.QwenVLPolicy` and evaluates it greedily."""

    tags = ("video-question-answering", "qwen2-vl", "spatial-reasoning")

    def __init__(
        self,
        policy: QwenVLPolicy,
        *,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        max_new_tokens: int = 16,
        eval_metric: str | None = VSIBENCH_METRIC,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_new_tokens = max_new_tokens
        self.eval_metric_path = eval_metric
        self.eval_metric = import_class(eval_metric)() if eval_metric else None
        #: Held-out scores measured by the sanity-check validation before training (``num_sanity_val_steps=-1``).
        self.initial_eval_scores: dict[str, float] = {}
        #: Extra model-card sections (heading → markdown) for whoever trains and releases the module.
        self.card_sections: dict[str, str] = {}

    # ------------------------------------------------------------------ batches
    @staticmethod
    def check_batch(batch: Mapping[str, Any]) -> None:
        """Fail early, naming the missing keys, when a datamodule hands over another layout."""
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise KeyError(f"VLM batches need keys {BATCH_KEYS}; this one lacks {missing} (has {sorted(batch)})")

    def prompt_inputs(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Model inputs of the batch's prompts (one row per question)."""
        self.check_batch(batch)
        return self.policy.prepare(batch["frames"], list(batch["prompt"]), batch.get("seconds_per_frame"))

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    # ------------------------------------------------------------------ evaluation
    def configure_metrics(self) -> Mapping[str, Any]:
        return {"vsibench": self.eval_metric} if self.eval_metric is not None else {}

    @torch.no_grad()
    def answer(self, batch: Mapping[str, Any]) -> list[str]:
        """Greedy answers to the batch's questions (VSI-Bench decoding: greedy, ``max_new_tokens``)."""
        return self.policy.generate(self.prompt_inputs(batch), max_new_tokens=self.max_new_tokens, greedy=True).texts

    def _eval_step(self, batch: Mapping[str, Any]) -> None:
        if self.eval_metric is None:
            return
        self.eval_metric.update(self.answer(batch), list(batch["ground_truth"]), list(batch["question_type"]))

    def _eval_epoch_end(self, prefix: str) -> None:
        if self.eval_metric is None:
            return
        scores = {k: v.float() for k, v in self.eval_metric.compute().items()}
        self.eval_metric.reset()
        if self._trainer is not None and self.trainer.sanity_checking:
            # Lightning discards what is logged in the sanity check; with num_sanity_val_steps=-1 it is the full
            # held-out score before training, so keep it and print it.
            self.initial_eval_scores = {k: v.item() for k, v in scores.items()}
            self.print(f"{prefix}/vsibench before training: {_format_scores(self.initial_eval_scores)}")
            return
        self.log_metrics(scores, prefix=f"{prefix}/vsibench/")
        self.print(f"{prefix}/vsibench at step {self.global_step}: {_format_scores({k: v.item() for k, v in scores.items()})}")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ------------------------------------------------------------------ release
    def state_dict_to_save(self) -> dict[str, torch.Tensor]:
        """Everything for built-in/shipped models; only the trainable (LoRA) tensors on top of a Hub base model."""
        source = self.policy.source
        if source == TINY_RANDOM or shipped_model_dir(source) is not None or not self.policy.uses_lora:
            return self.state_dict()
        return {f"policy.{k}": v for k, v in self.policy.trainable_state_dict().items()}

    def card_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"task": "spatial_vqa", "eval_task": "visual-question-answering", **self.card_sections}
        if "/" in self.policy.source and shipped_model_dir(self.policy.source) is None:
            meta["base_model"] = self.policy.source
        return meta


def _format_scores(scores: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.2f}" for k, v in scores.items())
