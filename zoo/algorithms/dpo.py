"""Direct Preference Optimization with vsGRPO's pair construction (arXiv 2504.00883 §4: the rejected answer is the
ground truth changed to a wrong value; DPO loss of Rafailov et al. 2023, arXiv 2305.18290 eq. 7)."""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from zoo.algorithms.base import Paper
from zoo.algorithms.sft import answer_targets
from zoo.algorithms.vlm_base import VSIBENCH_METRIC, VLMAlignmentModule
from zoo.vlm.policy import QwenVLPolicy

DPO_PAPER = Paper(
    title="Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
    arxiv_id="2305.18290",
    bibtex=(
        "@inproceedings{rafailov2023dpo,\n  title={Direct Preference Optimization: Your Language Model is Secretly "
        "a Reward Model},\n  author={Rafailov, Rafael and Sharma, Archit and Mitchell, Eric and Ermon, Stefano and "
        "Manning, Christopher D and Finn, Chelsea},\n  booktitle={NeurIPS},\n  year={2023}\n}"
    ),
)


def dpo_loss(
    policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float
) -> torch.Tensor:
    """``−log σ(β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])`` averaged over pairs (eq. 7)."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def wrong_answer(ground_truth: str, alternatives: Sequence[str], rng: random.Random) -> str:
    """The ground truth changed to a wrong value.

    Numbers are multiplied or divided by a factor in [2, 3] (relative error ≥ 0.5: scored ≤ 0.1 by MRA); whole
    numbers stay whole and positive. Words are replaced by another answer of the same question type
    (``alternatives``); with none available the error says so.
    """
    value = _number(ground_truth)
    if value is not None:
        factor = rng.uniform(2.0, 3.0)
        candidate = value * factor if rng.random() < 0.5 else value / factor
        if float(value).is_integer():
            candidate = round(candidate)
            if candidate < 1 or candidate == value:
                candidate = round(value * factor)
            return str(int(candidate))
        return f"{candidate:.2f}"
    choices = sorted({a for a in alternatives if a.strip().casefold() != ground_truth.strip().casefold()})
    if not choices:
        raise ValueError(
            f"no wrong answer for {ground_truth!r}: no other answer of its question type has been seen; put several "
            "answers of each word-answer question type in the data"
        )
    return rng.choice(choices)


class DPO(VLMAlignmentModule):
    """DPO on (ground truth, corrupted ground truth) pairs; reference = adapters off under LoRA, else a frozen copy.

    Word answers are corrupted with another answer of the same question type seen so far in training (the pool is
    kept per question type and grows with the data).
    """

    paper = DPO_PAPER
    algorithm_name = "vlm-dpo"

    def __init__(
        self,
        policy: QwenVLPolicy,
        *,
        beta: float = 0.1,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        max_new_tokens: int = 16,
        eval_metric: str | None = VSIBENCH_METRIC,
        seed: int = 0,
    ) -> None:
        super().__init__(policy, lr=lr, weight_decay=weight_decay, max_new_tokens=max_new_tokens, eval_metric=eval_metric)
        self.beta = beta
        self.rng = random.Random(seed)
        self.answer_pool: dict[str, set[str]] = {}
        self.reference = None if policy.uses_lora else copy.deepcopy(policy.model).requires_grad_(False).eval()

    def rejected_answers(self, batch: Mapping[str, Any]) -> list[str]:
        """One wrong answer per question (see :func:`wrong_answer`)."""
        for truth, qtype in zip(batch["ground_truth"], batch["question_type"]):
            self.answer_pool.setdefault(qtype, set()).add(truth)
        return [wrong_answer(t, sorted(self.answer_pool[q]), self.rng) for t, q in zip(batch["ground_truth"], batch["question_type"])]

    def _sequence_logps(self, inputs, answers, model=None) -> torch.Tensor:
        ids, mask = answer_targets(self.policy, answers, inputs["input_ids"].device)
        logps, _ = self.policy.completion_logps(inputs, ids, mask, model=model)
        return (logps * mask).sum(-1)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        inputs = self.prompt_inputs(batch)
        chosen, rejected = list(batch["ground_truth"]), self.rejected_answers(batch)
        with torch.no_grad():
            if self.policy.uses_lora:
                with self.policy.adapters_disabled():
                    ref_c, ref_r = self._sequence_logps(inputs, chosen), self._sequence_logps(inputs, rejected)
            else:
                ref_c = self._sequence_logps(inputs, chosen, self.reference)
                ref_r = self._sequence_logps(inputs, rejected, self.reference)
        pol_c, pol_r = self._sequence_logps(inputs, chosen), self._sequence_logps(inputs, rejected)
        loss = dpo_loss(pol_c, pol_r, ref_c, ref_r, self.beta)
        margin = (pol_c - ref_c) - (pol_r - ref_r)
        self.log_metrics(
            {"loss": loss.detach(), "reward_margin": self.beta * margin.detach().mean(),
             "reward_accuracy": (margin > 0).float().mean()},
            batch_size=len(chosen),
        )
        return loss
