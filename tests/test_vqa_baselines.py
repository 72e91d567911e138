"""Best-constant-answer baseline against a brute-force search with the official per-answer score."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.tasks.spatial_vqa.baselines import best_constant_answers, constant_baseline_scores
from zoo.tasks.spatial_vqa.metric import score_answer
from zoo.tasks.spatial_vqa.records import VQARecord


def _records(question_type: str, answers: list[str]) -> list[VQARecord]:
    return [VQARecord(i, "synthvsi", "s", question_type, "q", [], a) for i, a in enumerate(answers)]


def test_best_constant_is_the_brute_force_argmax_on_train():
    rng = np.random.default_rng(0)
    train = _records("object_abs_distance", [f"{x:.1f}" for x in rng.uniform(0.5, 6, 80)])
    train += _records("object_counting", [str(n) for n in rng.integers(2, 6, 50)])
    train += _records("object_rel_direction_easy", list(rng.choice(["left", "right"], 31, p=[0.3, 0.7])))
    best = best_constant_answers(train)
    for question_type in ("object_abs_distance", "object_counting", "object_rel_direction_easy"):
        rows = [r for r in train if r.question_type == question_type]

        def mean_score(answer: str) -> float:
            return float(np.mean([score_answer(answer, r.ground_truth, question_type) for r in rows]))

        brute = max(mean_score(r.ground_truth) for r in rows)
        assert mean_score(best[question_type]) == pytest.approx(brute)
    assert best["object_rel_direction_easy"] == "right"


def test_constant_baseline_scores_use_the_metric():
    train = _records("object_counting", ["2", "2", "3"]) + _records("object_rel_distance", ["bed", "bed", "sofa"])
    evaluation = _records("object_counting", ["2", "4"]) + _records("object_rel_distance", ["bed", "sofa"])
    scores = constant_baseline_scores(train, evaluation, rel_direction="present")
    # "2" vs 2 → 1.0; "2" vs 4 → e = 0.5 → 0.1; "bed": one of two right
    assert scores["object_counting"] == pytest.approx(55.0)
    assert scores["object_rel_distance"] == pytest.approx(50.0)
    assert scores["overall"] == pytest.approx(52.5)
