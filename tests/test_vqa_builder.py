"""Question builder: every answer equals a brute-force recomputation from the raw scene, over many seeds."""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.tasks.spatial_vqa.builder import QuestionBuilder
from zoo.tasks.spatial_vqa.scenes import SceneAnnotation, scenes_from_meta_info
from zoo.tasks.spatial_vqa.synth import generate_scene

SEEDS = range(150)


def _corners(obj) -> np.ndarray:
    """The 8 corners of an object's box, enumerated from its bounds."""
    return np.array(list(itertools.product(*zip(obj.box_min, obj.box_max))))


def _centre(obj) -> np.ndarray:
    return _corners(obj).mean(0)


def _longest_edge(obj) -> float:
    """Longest distance between two corners that differ in exactly one coordinate (= a box edge)."""
    c = _corners(obj)
    return max(
        float(np.linalg.norm(a - b)) for a, b in itertools.combinations(c, 2) if np.count_nonzero(a != b) == 1
    )


def _surface_samples(obj, step: float = 0.05) -> np.ndarray:
    axes = [np.arange(lo, hi + step / 2, step).clip(max=hi) for lo, hi in zip(obj.box_min, obj.box_max)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    on_face = np.isclose(grid, obj.box_min).any(1) | np.isclose(grid, obj.box_max).any(1)
    return grid[on_face]


def _closest_by_sampling(a, b) -> float:
    pa, pb = _surface_samples(a), _surface_samples(b)
    return float(np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1)).min())


def _direction(p, o, q, level: str) -> str:
    """Rotate the floor plane so that P is at the origin facing +y (the question's Cartesian convention)."""
    f = (_centre(o) - _centre(p))[:2]
    v = (_centre(q) - _centre(p))[:2]
    heading = math.atan2(f[1], f[0]) - math.pi / 2
    c, s = math.cos(-heading), math.sin(-heading)
    x, y = c * v[0] - s * v[1], s * v[0] + c * v[1]
    side = "left" if x < 0 else "right"
    if level == "easy":
        return side
    if level == "medium":
        turn = math.degrees(math.acos(y / math.hypot(x, y)))
        return "back" if turn >= 135 else side
    return ("front-" if y > 0 else "back-") + side


def _objects(scene, name):
    return [o for o in scene.objects if o.category == name]


def _only(scene, name):
    found = _objects(scene, name)
    assert len(found) == 1, f"{name} is not unique in {scene.scene_name}"
    return found[0]


def _brute_force_answer(scene: SceneAnnotation, record, distance: str) -> str | float:
    """The answer recomputed from the raw boxes: a word / integer string, or an unrounded float."""
    q, t = record.question, record.question_type
    if t == "object_counting":
        return str(sum(o.category == re.search(r"How many (.+?)\(s\)", q).group(1) for o in scene.objects))
    if t == "object_abs_distance":
        a, b = (_only(scene, n) for n in re.search(r"between the (.+?) and the (.+?) \(in meters\)", q).groups())
        return float(np.linalg.norm(_centre(a) - _centre(b))) if distance == "centre" else _closest_by_sampling(a, b)
    if t == "object_size_estimation":
        return 100 * _longest_edge(_only(scene, re.search(r"dimension .* of the (.+?),", q).group(1)))
    if t == "room_size_estimation":
        extent = scene.floor_polygon.max(0) - scene.floor_polygon.min(0)  # SynthVSI rooms are rectangles
        return float(extent[0] * extent[1])
    if t == "object_rel_distance":
        names, target = re.search(r"objects \((.+?)\) is the closest to the (.+?)\?", q).groups()
        goal = _only(scene, target)
        dists = {n: float(np.linalg.norm(_centre(_only(scene, n)) - _centre(goal))) for n in names.split(", ")}
        return min(dists, key=dists.get)
    if t.startswith("object_rel_direction"):
        p, o, qn = re.search(r"standing by the (.+?) and facing the (.+?), is the (.+?) to ", q).groups()
        return _direction(_only(scene, p), _only(scene, o), _only(scene, qn), t.rsplit("_", 1)[1])
    raise AssertionError(t)


def _check(record, expected: str | float) -> None:
    """Words and counts must match exactly; measurements up to the answer's rounding (half a unit of its last
    digit: 0.05 m / m², 0.5 cm) plus float slack."""
    if isinstance(expected, float):
        half_unit = 0.5 if record.question_type == "object_size_estimation" else 0.05
        assert abs(float(record.ground_truth) - expected) <= half_unit + 1e-6, (record, expected)
    else:
        assert _answer_word(record) == expected, record


def _answer_word(record) -> str:
    if not record.options:
        return record.ground_truth
    chosen = [o for o in record.options if o.startswith(record.ground_truth + ". ")]
    assert len(chosen) == 1
    return chosen[0].split(". ", 1)[1]


@pytest.mark.parametrize("style", ["vsi100k", "vsibench"])
def test_builder_answers_equal_brute_force_over_many_seeds(style):
    builder = QuestionBuilder(style=style, distance="centre")
    seen = set()
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        scene = generate_scene(rng, f"s{seed}")
        for record in builder.build(scene, rng):
            seen.add(record.question_type)
            _check(record, _brute_force_answer(scene, record, "centre"))
    assert len(seen) == 8  # every built question type was exercised


def test_closest_point_distances_equal_dense_sampling():
    builder = QuestionBuilder(distance="closest", max_per_type={"object_abs_distance": 3})
    checked = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        scene = generate_scene(rng, f"s{seed}")
        for record in builder.build(scene, rng):
            if record.question_type == "object_abs_distance":
                assert record.question.startswith("Measuring from the closest point of each object")
                sampled = _brute_force_answer(scene, record, "closest")
                # rounding (0.05) + the 5 cm sampling grid: the sampled minimum is ≥ the exact one and within one
                # grid diagonal of a face (≤ 0.05·√2) of it
                assert -0.05 - 1e-9 <= sampled - float(record.ground_truth) <= 0.05 + 0.05 * math.sqrt(2), record
                checked += 1
    assert checked >= 10


def test_instance_points_give_centroids_and_point_distances():
    rng = np.random.default_rng(0)
    a = rng.uniform([0, 0, 0], [1, 1, 1], size=(300, 3))
    b = rng.uniform([3, 0, 0], [4, 2, 1], size=(200, 3))
    points, ids = np.concatenate([a, b]), np.r_[np.zeros(300, int), np.ones(200, int)]
    ids[:5] = -1  # unlabelled points are ignored
    scene = SceneAnnotation.from_instance_points(
        "scannet", "x", points, ids, {0: "sofa", 1: "table"}, [[0, 0], [5, 0], [5, 3], [0, 3]]
    )
    np.testing.assert_allclose(scene.objects[0].center, a[5:].mean(0))
    assert scene.room_area == pytest.approx(15.0)
    closest = QuestionBuilder(distance="closest").build(scene, rng)
    abs_q = [r for r in closest if r.question_type == "object_abs_distance"][0]
    brute = min(math.dist(p, q) for p in a[5:] for q in b)
    assert float(abs_q.ground_truth) == pytest.approx(round(brute, 1))


def test_meta_info_scenes(tmp_path):
    box = {"centroid": [1, 1, 0.5], "axesLengths": [0.5, 0.6, 1.0], "normalizedAxes": [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    meta = {
        "scene0001_00": {
            "room_size": 21.37,
            "object_counts": {"chair": 2, "bed": 1},
            "object_bbox": {
                "chair": [
                    dict(box, min=[0.75, 0.7, 0], max=[1.25, 1.3, 1]),
                    dict(box, centroid=[3, 1, 0.5], min=[2.75, 0.7, 0], max=[3.25, 1.3, 1]),
                ],
                "bed": [
                    dict(box, centroid=[1, 4, 0.3], axesLengths=[2.0, 1.5, 0.6], min=[0, 3.25, 0], max=[2, 4.75, 0.6])
                ],
            },
        }
    }
    path = tmp_path / "scannet_meta_info_val.json"
    path.write_text(json.dumps(meta))
    (scene,) = scenes_from_meta_info(path)
    assert scene.dataset == "scannet" and scene.room_area == 21.37
    records = {r.question_type: r for r in QuestionBuilder(style="vsibench").build(scene, np.random.default_rng(0))}
    assert records["room_size_estimation"].ground_truth == "21.4"
    assert records["object_size_estimation"].ground_truth == "200"
    built = QuestionBuilder().build(scene, np.random.default_rng(0))
    counts = [r for r in built if r.question_type == "object_counting"]
    assert sorted(r.ground_truth for r in counts) == ["1", "2"]
    meta["scene0001_00"]["object_counts"]["chair"] = 3
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="object_counts disagree"):
        scenes_from_meta_info(path)


def test_cap_per_type_and_bad_arguments():
    rng = np.random.default_rng(3)
    scene = generate_scene(rng, "s")
    capped = QuestionBuilder(max_per_type=1).build(scene, rng)
    types = [r.question_type for r in capped]
    assert len(types) == len(set(types))
    with pytest.raises(ValueError, match="style"):
        QuestionBuilder(style="mmbench")
    with pytest.raises(ValueError, match="unknown question types"):
        QuestionBuilder(max_per_type={"route_planning": 1})


@st.composite
def _box_scenes(draw) -> SceneAnnotation:
    """Arbitrary box layouts (overlaps allowed, any size), not only the SynthVSI generator's."""
    n = draw(st.integers(1, 9))
    categories = [draw(st.sampled_from(["sofa", "bed", "chair", "lamp", "sink", "tv"])) for _ in range(n)]
    coord = st.floats(-5, 5, allow_nan=False).map(lambda v: round(v, 3))
    centers = [[draw(coord), draw(coord), draw(st.floats(0, 2).map(lambda v: round(v, 3)))] for _ in range(n)]
    lengths = [[draw(st.floats(0.05, 3).map(lambda v: round(v, 3))) for _ in range(3)] for _ in range(n)]
    w, d = draw(st.floats(1, 12).map(lambda v: round(v, 3))), draw(st.floats(1, 12).map(lambda v: round(v, 3)))
    return SceneAnnotation.from_boxes(
        "synthvsi", "h", categories, centers, lengths, floor_polygon=[[0, 0], [w, 0], [w, d], [0, d]]
    )


@settings(max_examples=50, deadline=None, derandomize=True)
@given(scene=_box_scenes(), style=st.sampled_from(["vsi100k", "vsibench"]), seed=st.integers(0, 2**16))
def test_builder_answers_equal_brute_force_on_arbitrary_layouts(scene, style, seed):
    for record in QuestionBuilder(style=style).build(scene, np.random.default_rng(seed)):
        _check(record, _brute_force_answer(scene, record, "centre"))
