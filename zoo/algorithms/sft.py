"""Supervised fine-tuning on question/answer pairs: the SFT baseline of vsGRPO (arXiv 2504.00883 §4, Table 2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from zoo.algorithms.vlm_base import VLMAlignmentModule
from zoo.vlm.policy import QwenVLPolicy


def answer_targets(policy: QwenVLPolicy, answers: Sequence[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids of ``answer<|im_end|>`` per row and their mask (the assistant turn the model must produce)."""
    rows = [policy.tokenizer(a, add_special_tokens=False)["input_ids"] + [policy.eos_token_id] for a in answers]
    length = max(map(len, rows))
    ids = torch.full((len(rows), length), policy.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


class SFT(VLMAlignmentModule):
    """Teacher-forced cross-entropy on the answer tokens (and the closing ``<|im_end|>``), token mean per batch."""

    algorithm_name = "vlm-sft"

    def sft_loss(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Mean negative log-likelihood per answer token."""
        inputs = self.prompt_inputs(batch)
        ids, mask = answer_targets(self.policy, batch["ground_truth"], inputs["input_ids"].device)
        logps, _ = self.policy.completion_logps(inputs, ids, mask)
        return -(logps * mask).sum() / mask.sum()

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.sft_loss(batch)
        self.log_metrics({"loss": loss.detach()}, batch_size=len(batch["prompt"]))
        return loss
