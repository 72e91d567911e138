"""The VSI-Bench metric with the official semantics (``lmms_eval/tasks/vsibench/utils.py``; spec §2.4).

* Answer extraction (``fuzzy_matching``): split the prediction on the space character, keep the first token,
  strip trailing ``.`` characters (``str.rstrip(".")``), then whitespace. Optionally the ``<answer>…</answer>``
  content is taken first (for think/observe models, whose raw output starts with a tag).
* Multiple choice: 1 if the token equals the ground truth case-insensitively, else 0 (``"A."`` matches ``A``,
  ``"(A)"`` does not).
* Numerical: mean relative accuracy, ``mean_θ 1{|ŷ−y|/y ≤ 1−θ}`` over θ = ``np.linspace(0.5, 0.95, 10)``, in
  float64 exactly as numpy evaluates it; an unparseable answer scores 0.
* Aggregation: mean per question type; the three relative-direction subtypes are combined by the unweighted mean
  of their means; overall = unweighted mean of the tasks, ×100.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

from zoo.tasks.spatial_vqa.records import (
    MCA_QUESTION_TYPES,
    NA_QUESTION_TYPES,
    QUESTION_TYPES,
    REL_DIRECTION_SUBTYPES,
    TASKS,
)

#: θ of the official code: ``np.linspace(start, end, int((end - start) / interval + 2))`` with .5, .95, .05 —
#: the argument evaluates to 10.999… in floating point, so there are ten thresholds {0.50, 0.55, …, 0.95}.
MRA_THRESHOLDS = np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))
# 1 - θ computed in float64 exactly as the official code does (e.g. 1 - 0.55 = 0.44999999999999996).
_MRA_TOLERANCES = torch.from_numpy(1.0 - MRA_THRESHOLDS)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def answer_tag_content(text: str) -> str | None:
    """The stripped content of the first ``<answer>…</answer>`` in ``text``, or None if there is none."""
    match = _ANSWER_TAG.search(text)
    return match.group(1).strip() if match else None


def extract_answer(prediction: str, *, answer_tag_first: bool = False) -> str:
    """The official ``fuzzy_matching``: first space-separated token, then ``rstrip(".")`` and ``strip()``.

    With ``answer_tag_first`` the content of the first ``<answer>…</answer>`` (stripped) replaces the prediction
    when present; a prediction without the tag is used as is.
    """
    if answer_tag_first:
        tagged = answer_tag_content(prediction)
        if tagged is not None:
            prediction = tagged
    return prediction.split(" ")[0].rstrip(".").strip()


def parse_number(token: str) -> float | None:
    """Python ``float()`` of the token, or None where it fails (the official ``to_float``)."""
    try:
        return float(token)
    except (TypeError, ValueError, OverflowError):
        return None


def mean_relative_accuracy(prediction: float | None, target: float) -> float:
    """Official MRA of one numerical answer: mean over the ten θ of ``|ŷ−y|/y ≤ 1−θ``; None scores 0."""
    if target == 0:
        raise ValueError("a numerical ground truth of 0 has no relative error; check the record")
    if prediction is None:
        return 0.0
    error = abs(prediction - target) / target
    return float((error <= _MRA_TOLERANCES.numpy()).mean())


def score_answer(prediction: str, ground_truth: str, question_type: str, *, answer_tag_first: bool = False) -> float:
    """Score one answer with the official rule for its question type (exact match or MRA)."""
    token = extract_answer(prediction, answer_tag_first=answer_tag_first)
    if question_type in MCA_QUESTION_TYPES:
        return 1.0 if token.lower() == ground_truth.lower() else 0.0
    if question_type in NA_QUESTION_TYPES:
        return mean_relative_accuracy(parse_number(token), float(ground_truth))
    raise ValueError(f"unknown question_type {question_type!r}; expected one of {QUESTION_TYPES}")


class VSIBenchMetric(Metric):
    """VSI-Bench score as a torchmetrics ``Metric``: per-task scores and the overall score, in percent.

    ``update(predictions, ground_truths, question_types)`` takes the raw model outputs. The states are a score sum
    and a count per question type (float64 tensors, summed across processes), so the result under distributed
    sync equals the result on the concatenated data.

    Args:
        answer_tag_first: take the ``<answer>…</answer>`` content before the official extraction (off in the
            official evaluation; on for think/observe models).
        rel_direction: ``"official"`` reproduces ``vsibench_aggregate_results`` exactly: the relative-direction
            task is (easy + medium + hard) / 3 with a missing subtype counted as 0, and it enters the overall
            mean even when no relative-direction question was scored. ``"present"`` averages only the subtypes
            that were scored and leaves the task out when there are none (for question sets that, unlike
            VSI-Bench, do not hold all three subtypes). Both agree whenever all three subtypes are present.

    ``compute()`` returns ``{task: percent}`` for each task with at least one scored question (keys from
    :data:`~zoo.tasks.spatial_vqa.records.TASKS`) and ``"overall"``: the unweighted mean of those tasks.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, answer_tag_first: bool = False, rel_direction: str = "official", **kwargs) -> None:
        super().__init__(**kwargs)
        if rel_direction not in ("official", "present"):
            raise ValueError(f"rel_direction must be 'official' or 'present', got {rel_direction!r}")
        self.answer_tag_first = answer_tag_first
        self.rel_direction = rel_direction
        n = len(QUESTION_TYPES)
        self.add_state("score_sum", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[str], ground_truths: Sequence[str], question_types: Sequence[str]) -> None:
        """Score a batch of raw predictions against their records' ground truths."""
        if not len(predictions) == len(ground_truths) == len(question_types):
            raise ValueError(
                f"predictions ({len(predictions)}), ground_truths ({len(ground_truths)}) and question_types "
                f"({len(question_types)}) must have the same length"
            )
        scores = [
            score_answer(p, g, t, answer_tag_first=self.answer_tag_first)
            for p, g, t in zip(predictions, ground_truths, question_types)
        ]
        index = torch.tensor([QUESTION_TYPES.index(t) for t in question_types], dtype=torch.long, device=self.device)
        values = torch.tensor(scores, dtype=torch.float64, device=self.device)
        self.score_sum.index_add_(0, index, values)
        self.count.index_add_(0, index, torch.ones_like(values))

    def compute(self) -> dict[str, torch.Tensor]:
        """Per-task scores and ``overall``, in percent (see the class docstring)."""
        means = {
            t: self.score_sum[i] / self.count[i] for i, t in enumerate(QUESTION_TYPES) if self.count[i] > 0
        }
        per_task: dict[str, torch.Tensor] = {}
        for task in TASKS:
            if task == "object_rel_direction":
                present = [means[s] for s in REL_DIRECTION_SUBTYPES if s in means]
                if self.rel_direction == "official":
                    per_task[task] = sum(present, torch.zeros((), dtype=torch.float64, device=self.device)) / 3
                elif present:
                    per_task[task] = torch.stack(present).mean()
            elif task in means:
                per_task[task] = means[task]
        result = {task: 100 * value for task, value in per_task.items()}
        result["overall"] = torch.stack(list(per_task.values())).mean() * 100 if per_task else torch.tensor(math.nan)
        return result
