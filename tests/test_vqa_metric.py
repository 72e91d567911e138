"""VSI-Bench metric: official answer extraction, exact match, MRA at every threshold boundary, aggregation, DDP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.tasks.spatial_vqa.metric import MRA_THRESHOLDS, VSIBenchMetric, extract_answer, score_answer


def test_thresholds_are_the_ten_of_the_official_linspace():
    # int((0.95 - 0.5) / 0.05 + 2) is int(10.999…) = 10 in floating point (spec §2.4)
    assert len(MRA_THRESHOLDS) == 10
    np.testing.assert_allclose(MRA_THRESHOLDS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])


@pytest.mark.parametrize(
    "prediction, token",
    [
        ("A", "A"),
        ("A.", "A"),
        ("A. sofa", "A"),
        ("(A)", "(A)"),
        ("A)", "A)"),
        ("3.5.", "3.5"),
        ("3...", "3"),  # str.rstrip('.') strips every trailing dot
        ("12 meters", "12"),
        (" A", ""),  # the split is on ' ': a leading space gives an empty first token
        ("A\n", "A"),  # '\n' is not a separator; strip() removes it
        ("<answer>B</answer>", "<answer>B</answer>"),
    ],
)
def test_extraction_is_the_official_fuzzy_matching(prediction, token):
    assert extract_answer(prediction) == token


def test_answer_tag_is_taken_first_only_when_asked():
    text = "<think>the sofa is left</think> <answer> B. </answer>"
    assert extract_answer(text) == "<think>the"
    assert extract_answer(text, answer_tag_first=True) == "B"
    assert extract_answer("C", answer_tag_first=True) == "C"  # no tag: used as is


@pytest.mark.parametrize(
    "prediction, expected",
    [("A", 1.0), ("a", 1.0), ("A.", 1.0), ("A. sofa", 1.0), ("(A)", 0.0), ("A)", 0.0), ("B", 0.0), ("", 0.0)],
)
def test_multiple_choice_exact_match(prediction, expected):
    assert score_answer(prediction, "A", "object_rel_distance") == expected


def test_multiple_choice_word_answers_are_case_insensitive():
    assert score_answer("Left.", "left", "object_rel_direction_easy") == 1.0
    assert score_answer("right", "left", "object_rel_direction_easy") == 0.0


# Ground truth 100: e = |ŷ − 100| / 100. Hand computation of Σ_θ 1{e ≤ 1 − θ} / 10 with 1 − θ in float64:
# 1−.95 = 0.050000000000000044, 1−.9 = 0.10000000000000009, 1−.85 = 0.15000000000000002,
# 1−.8 = 0.19999999999999996, 1−.75 = 0.25, 1−.7 = 0.30000000000000004, 1−.65 = 0.35 (== float 0.35),
# 1−.6 = 0.4, 1−.55 = 0.44999999999999996, 1−.5 = 0.5. So at the boundaries e = 0.20 and e = 0.45 the float rounding of 1 − θ EXCLUDES the boundary θ
# (0.2 > 0.19999999999999996), while every other boundary is included (≤).
MRA_CASES = [
    (100, 1.0),
    (104.9, 1.0),
    (105, 1.0),  # e = 0.05 ≤ 0.050000000000000044: all ten
    (105.1, 0.9),
    (110, 0.9),  # e = 0.1 ≤ 1−.9
    (115, 0.8),  # e = 0.15 ≤ 1−.85
    (120, 0.6),  # e = 0.2 > 1−.8 = 0.19999999999999996 → θ ∈ {.5,…,.75}: 6
    (119.9, 0.7),
    (125, 0.6),  # e = 0.25 ≤ 0.25
    (130, 0.5),  # e = 0.3 ≤ 0.30000000000000004
    (135, 0.4),  # e = 0.35 ≤ 0.35
    (140, 0.3),  # e = 0.4 ≤ 0.4
    (145, 0.1),  # e = 0.45 > 0.44999999999999996 → only θ = .5
    (150, 0.1),  # e = 0.5 ≤ 0.5
    (150.01, 0.0),
    (95, 1.0),
    (90, 0.9),
    (80, 0.6),  # e = 0.2 again (same float as above)
    (50, 0.1),
    (49.9, 0.0),
    (-100, 0.0),
]


@pytest.mark.parametrize("prediction, expected", MRA_CASES)
def test_mra_at_every_threshold_boundary(prediction, expected):
    assert score_answer(f"{prediction}", "100", "object_abs_distance") == pytest.approx(expected, abs=1e-12)


def _official_mra(pred: float, target: float) -> float:
    """The official definition written out directly: np.linspace thresholds and ``<=`` (spec §2.5)."""
    thresholds = np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))
    return float((abs(pred - target) / target <= 1 - thresholds).mean())


def test_mra_matches_the_official_definition_on_random_answers():
    rng = np.random.default_rng(0)
    for _ in range(500):
        target = float(rng.choice([1, 3, 7, 12.5, 100, 243]))
        pred = float(np.round(target * rng.uniform(0.3, 1.7), int(rng.integers(0, 3))))
        assert score_answer(str(pred), str(target), "room_size_estimation") == _official_mra(pred, target)


@pytest.mark.parametrize("prediction", ["three", "", "about 3", "<answer>3</answer>", "3,5", "nan", "inf"])
def test_unparseable_or_non_finite_numbers_score_zero(prediction):
    assert score_answer(prediction, "3", "object_counting") == 0.0


def test_numbers_parse_like_python_float():
    assert score_answer("3 chairs", "3", "object_counting") == 1.0
    assert score_answer("1e2", "100", "object_size_estimation") == 1.0
    assert score_answer("<answer>3</answer>", "3", "object_counting", answer_tag_first=True) == 1.0


def _scored(metric: VSIBenchMetric, rows: list[tuple[str, str, str]]) -> VSIBenchMetric:
    metric.update([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    return metric


ROWS = [
    ("3", "3", "object_counting"),  # 1.0
    ("4", "3", "object_counting"),  # e = 1/3 ≤ 0.35 → θ ≤ .65: 4/10
    ("A", "A", "object_rel_direction_easy"),
    ("B", "A", "object_rel_direction_easy"),  # easy mean 0.5
    ("left", "left", "object_rel_direction_medium"),  # medium mean 1
    ("C", "A", "object_rel_direction_hard"),
    ("D", "A", "object_rel_direction_hard"),
    ("A.", "A", "object_rel_direction_hard"),  # hard mean 1/3
]


def test_aggregation_subtypes_averaged_first_and_overall_unweighted():
    result = _scored(VSIBenchMetric(), ROWS).compute()
    counting = (1.0 + 0.4) / 2
    rel_dir = (0.5 + 1.0 + 1 / 3) / 3  # not the pooled 3/6 = 0.5
    assert set(result) == {"object_counting", "object_rel_direction", "overall"}
    assert result["object_counting"].item() == pytest.approx(100 * counting)
    assert result["object_rel_direction"].item() == pytest.approx(100 * rel_dir)
    assert result["overall"].item() == pytest.approx(100 * (counting + rel_dir) / 2)


def test_missing_rel_direction_subtypes_official_versus_present():
    rows = [("A", "A", "object_rel_direction_easy"), ("2", "2", "object_counting")]
    official = _scored(VSIBenchMetric(), rows).compute()
    assert official["object_rel_direction"].item() == pytest.approx(100 / 3)  # missing medium/hard count as 0
    present = _scored(VSIBenchMetric(rel_direction="present"), rows).compute()
    assert present["object_rel_direction"].item() == pytest.approx(100.0)
    only_counting = [("2", "2", "object_counting")]
    assert _scored(VSIBenchMetric(), only_counting).compute()["overall"].item() == pytest.approx(50.0)
    assert _scored(VSIBenchMetric(rel_direction="present"), only_counting).compute()["overall"].item() == 100.0


def test_reset_and_batched_updates_equal_one_update():
    one = _scored(VSIBenchMetric(), ROWS).compute()
    batched = VSIBenchMetric()
    for i in range(0, len(ROWS), 3):
        _scored(batched, ROWS[i : i + 3])
    assert {k: v.item() for k, v in batched.compute().items()} == pytest.approx({k: v.item() for k, v in one.items()})
    batched.reset()
    assert batched.count.sum().item() == 0


def test_unknown_question_type_and_length_mismatch_are_errors():
    with pytest.raises(ValueError, match="unknown question_type"):
        VSIBenchMetric().update(["A"], ["A"], ["object_colour"])
    with pytest.raises(ValueError, match="same length"):
        VSIBenchMetric().update(["A", "B"], ["A"], ["object_rel_distance"])


def _ddp_worker(rank: int, world: int, init_file: str, queue) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    metric = _scored(VSIBenchMetric(), ROWS[rank::world])
    result = {k: v.item() for k, v in metric.compute().items()}
    if rank == 0:
        queue.put(result)
    torch.distributed.destroy_process_group()


def test_distributed_sync_equals_single_process(tmp_path):
    """Two gloo processes, each scoring half the rows, must report the single-process result."""
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    torch.multiprocessing.start_processes(
        _ddp_worker, args=(2, str(tmp_path / "init"), queue), nprocs=2, join=True, start_method="spawn"
    )
    distributed = queue.get()
    single = {k: v.item() for k, v in _scored(VSIBenchMetric(), ROWS).compute().items()}
    assert distributed == pytest.approx(single)
    assert not math.isnan(distributed["overall"])


@pytest.mark.gpu
def test_metric_on_cuda_equals_cpu():
    cpu = {k: v.item() for k, v in _scored(VSIBenchMetric(), ROWS).compute().items()}
    cuda_metric = _scored(VSIBenchMetric().to("cuda"), ROWS)
    assert cuda_metric.score_sum.device.type == "cuda"
    assert {k: v.item() for k, v in cuda_metric.compute().items()} == pytest.approx(cpu)
