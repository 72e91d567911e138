"""The best-constant-answer baseline: per question type, the single answer that scores best on the training
records, evaluated on the evaluation records with the VSI-Bench scoring rule.

A model that has learnt something from the video must beat it (``toy_models.md``: GRPO can collapse onto these
constants, e.g. "1" for every count, and still look good on the raw reward).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from zoo.tasks.spatial_vqa.metric import MRA_THRESHOLDS, VSIBenchMetric
from zoo.tasks.spatial_vqa.records import NA_QUESTION_TYPES, VQARecord


def best_constant_answers(train: Sequence[VQARecord]) -> dict[str, str]:
    """Per question type, the ground-truth value of ``train`` that maximises the mean score on ``train``.

    Numerical types: the candidate ``c`` maximising mean MRA(c, y) (vectorised over candidates × questions);
    multiple-choice types: the most frequent answer (exact match is maximised by the mode).
    """
    by_type: dict[str, list[str]] = defaultdict(list)
    for record in train:
        by_type[record.question_type].append(record.ground_truth)
    best = {}
    for question_type, answers in by_type.items():
        if question_type in NA_QUESTION_TYPES:
            targets = np.array([float(a) for a in answers])
            candidates = np.unique(targets)
            error = np.abs(candidates[:, None] - targets[None]) / targets[None]  # [C, N]
            score = (error[..., None] <= 1 - MRA_THRESHOLDS).mean(axis=(1, 2))  # official rule, ≤ in float64
            best[question_type] = answers[int(np.flatnonzero(targets == candidates[score.argmax()])[0])]
        else:
            values, counts = np.unique([a.lower() for a in answers], return_counts=True)
            best[question_type] = str(values[counts.argmax()])
    return best


def constant_baseline_scores(train: Sequence[VQARecord], evaluation: Sequence[VQARecord], **metric_kwargs) -> dict:
    """VSI-Bench scores (percent, per task and overall) of answering every evaluation question with the best
    constant of its type chosen on ``train`` (types absent from ``train`` are answered with an empty string)."""
    answers = best_constant_answers(train)
    metric = VSIBenchMetric(**metric_kwargs)
    metric.update(
        [answers.get(r.question_type, "") for r in evaluation],
        [r.ground_truth for r in evaluation],
        [r.question_type for r in evaluation],
    )
    return {k: float(v) for k, v in metric.compute().items()}
