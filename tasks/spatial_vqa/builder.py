"""VSI-100k-style question builder (spec §1.6): six question types from a :class:`SceneAnnotation`.

Rules (VSI-100k, following the VSI-Bench protocol):

* **object_counting** — number of instances of a category present in the scene (at least ``min_count``).
* **object_abs_distance** (m, one decimal) — between two objects whose categories occur once; measured between
  geometric centres (``distance="centre"``, VSI-100k) or closest points (``distance="closest"``, VSI-Bench: the
  instance points when known, else the axis-aligned boxes).
* **object_rel_distance** — a target object and 2–4 candidate objects (all of unique categories): which candidate
  is closest to the target; skipped when the runner-up is within ``rel_distance_margin`` m.
* **object_rel_direction_{easy,medium,hard}** — standing by object P facing object O (centres, on the floor
  plane), where is object Q: left/right (easy); left/right/back, back when the turn is ≥ 135° (medium);
  front-left/front-right/back-left/back-right (hard). Skipped within ``angle_margin`` degrees of a boundary.
* **object_size_estimation** (cm, integer) — the longest edge of a unique object's 3D bounding box.
* **room_size_estimation** (m², one decimal) — the floor area.

Route planning and appearance order are not generated (they need trajectories, not static annotations).

``style="vsi100k"`` writes training records: no options, the answer is a word (``"left"``, ``"sofa"``) or a
number. ``style="vsibench"`` writes evaluation records: relative-distance / -direction questions get lettered
options in random order (``"A. sofa"``) and the ground truth is the letter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np
import torch

from zoo.configurable import Configurable
from zoo.tasks.spatial_vqa.records import VQARecord
from zoo.tasks.spatial_vqa.scenes import SceneAnnotation, SceneObject

BUILT_QUESTION_TYPES = (
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
    "object_rel_distance",
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
)
_LETTERS = "ABCD"
_DIRECTION_ANSWERS = {
    "easy": ("left", "right"),
    "medium": ("left", "right", "back"),
    "hard": ("front-left", "front-right", "back-left", "back-right"),
}
_DIRECTION_BOUNDARIES = {"easy": (0.0, 180.0), "medium": (0.0, 135.0, 180.0), "hard": (0.0, 90.0, 180.0)}
_DISTANCE_PHRASE = {
    "centre": "Measuring from the center of each object",
    "closest": "Measuring from the closest point of each object",
}


def centre_distance(a: SceneObject, b: SceneObject) -> float:
    """Euclidean distance between the geometric centres (VSI-100k)."""
    return float(np.linalg.norm(a.center - b.center))


def closest_distance(a: SceneObject, b: SceneObject, chunk: int = 4096) -> float:
    """Closest-point distance (VSI-Bench): min over point pairs when both have points, else between the
    axis-aligned boxes (exact for axis-aligned boxes)."""
    if a.points is not None and b.points is not None:
        pa, pb = torch.from_numpy(a.points), torch.from_numpy(b.points)
        return float(min(torch.cdist(pa[i : i + chunk], pb).min() for i in range(0, len(pa), chunk)))
    gap = np.maximum(0.0, np.maximum(a.box_min - b.box_max, b.box_min - a.box_max))
    return float(np.linalg.norm(gap))


def signed_angle(position: SceneObject, facing: SceneObject, query: SceneObject) -> float:
    """Angle (degrees, in (−180, 180]) from the facing direction P→O to P→Q on the floor; positive = left."""
    f = facing.center[:2] - position.center[:2]
    q = query.center[:2] - position.center[:2]
    return math.degrees(math.atan2(f[0] * q[1] - f[1] * q[0], f[0] * q[0] + f[1] * q[1]))


def direction_answer(angle: float, level: str) -> str:
    """The relative-direction answer of ``level`` for a signed angle (positive = left)."""
    side = "left" if angle > 0 else "right"
    if level == "easy":
        return side
    if level == "medium":
        return "back" if abs(angle) >= 135 else side
    return ("front-" if abs(angle) < 90 else "back-") + side


class QuestionBuilder(Configurable):
    """Turns scene annotations into :class:`VQARecord` questions (see the module docstring for the rules).

    Args:
        style: ``"vsi100k"`` (option-less training records) or ``"vsibench"`` (lettered options).
        distance: ``"centre"`` (VSI-100k) or ``"closest"`` (VSI-Bench) for absolute and relative distances.
        max_per_type: at most this many questions per question type and scene (an int for all types, a mapping
            by type (types it does not name are not capped), or None for all); a random subset is kept.
        rel_distance_margin: minimum gap (m) between the closest and the second-closest candidate.
        angle_margin: minimum distance (degrees) of a relative-direction angle from an answer boundary.
        min_direction_distance: minimum distance (m) between P and O and between P and Q.
        min_count: counting questions only for categories with at least this many instances.
    """

    def __init__(
        self,
        style: str = "vsi100k",
        distance: str = "centre",
        max_per_type: int | Mapping[str, int] | None = None,
        rel_distance_margin: float = 0.3,
        angle_margin: float = 15.0,
        min_direction_distance: float = 0.5,
        min_count: int = 1,
    ) -> None:
        if style not in ("vsi100k", "vsibench"):
            raise ValueError(f"style must be 'vsi100k' or 'vsibench', got {style!r}")
        if distance not in _DISTANCE_PHRASE:
            raise ValueError(f"distance must be 'centre' or 'closest', got {distance!r}")
        if isinstance(max_per_type, Mapping):
            unknown = set(max_per_type) - set(BUILT_QUESTION_TYPES)
            if unknown:
                raise ValueError(f"max_per_type names unknown question types {sorted(unknown)}")
        self.style, self.distance, self.max_per_type = style, distance, max_per_type
        self.rel_distance_margin, self.angle_margin = rel_distance_margin, angle_margin
        self.min_direction_distance, self.min_count = min_direction_distance, min_count

    # ----------------------------------------------------------------- helpers
    def _cap(self, question_type: str) -> int | None:
        if isinstance(self.max_per_type, Mapping):
            return self.max_per_type.get(question_type)
        return self.max_per_type

    def _distance(self, a: SceneObject, b: SceneObject) -> float:
        return centre_distance(a, b) if self.distance == "centre" else closest_distance(a, b)

    def _choices(self, answer: str, choices: list[str], rng: np.random.Generator) -> tuple[list[str], str]:
        """Lettered options in random order and the letter of ``answer`` (vsibench style)."""
        order = [choices[i] for i in rng.permutation(len(choices))]
        return [f"{_LETTERS[i]}. {c}" for i, c in enumerate(order)], _LETTERS[order.index(answer)]

    # ----------------------------------------------------------- question types
    def counting(self, scene: SceneAnnotation, rng: np.random.Generator) -> list[tuple]:
        """``(question, options, answer)`` for each category with at least ``min_count`` instances."""
        if self.style == "vsibench":
            template = "How many {}(s) are in this room?"
        else:
            template = "How many {}(s) in the room?"
        return [(template.format(c), [], str(n)) for c, n in sorted(scene.counts.items()) if n >= self.min_count]

    def abs_distance(self, scene: SceneAnnotation, rng: np.random.Generator) -> list[tuple]:
        """Distance (m, one decimal) for every pair of unique-category objects; touching pairs are skipped."""
        unique = scene.unique_objects()
        out = []
        for a, b in itertools.combinations(sorted(unique), 2):
            value = round(self._distance(unique[a], unique[b]), 1)
            if value <= 0:
                continue  # touching objects: a relative error against 0 is undefined
            q = (
                f"{_DISTANCE_PHRASE[self.distance]}, what is the direct distance between the {a} and the {b} "
                "(in meters)?"
            )
            out.append((q, [], f"{value:.1f}"))
        return out

    def object_size(self, scene: SceneAnnotation, rng: np.random.Generator) -> list[tuple]:
        """Longest bounding-box edge (cm, integer) of every unique-category object."""
        unique = scene.unique_objects()
        q = "What is the length of the longest dimension (length, width, or height) of the {}, measured in centimeters?"
        return [(q.format(c), [], str(int(round(unique[c].lengths.max() * 100)))) for c in sorted(unique)]

    def room_size(self, scene: SceneAnnotation, rng: np.random.Generator) -> list[tuple]:
        """Floor area (m², one decimal), when the scene has one."""
        if scene.room_area is None:
            return []
        q = "What is the size of this room (in square meters)?"
        if self.style == "vsibench":
            q += " If multiple rooms are shown, estimate the size of the combined space."
        return [(q, [], f"{round(scene.room_area, 1):.1f}")]

    def rel_distance(self, scene: SceneAnnotation, rng: np.random.Generator) -> list[tuple]:
        """Per unique target: the closest of up to 4 random unique candidates (unambiguous by the margin)."""
        unique = scene.unique_objects()
        names = sorted(unique)
        out = []
        for target in names:
            others = [n for n in names if n != target]
            if len(others) < 2:
                continue
            candidates = [others[i] for i in sorted(rng.choice(len(others), min(4, len(others)), replace=False))]
            dists = sorted((self._distance(unique[target], unique[c]), c) for c in candidates)
            if dists[1][0] - dists[0][0] < self.rel_distance_margin:
                continue
            answer = dists[0][1]
            q = (
                f"{_DISTANCE_PHRASE[self.distance]}, which of these objects ({', '.join(candidates)}) "
                f"is the closest to the {target}?"
            )
            if self.style == "vsibench":
                options, letter = self._choices(answer, candidates, rng)
                out.append((q, options, letter))
            else:
                out.append((q, [], answer))
        return out

    def rel_direction(self, scene: SceneAnnotation, level: str, rng: np.random.Generator) -> list[tuple]:
        """Every ordered triple (P, O, Q) of unique objects whose direction answer is unambiguous at ``level``."""
        unique = scene.unique_objects()
        out = []
        for p, o, qn in itertools.permutations(sorted(unique), 3):
            P, O, Q = unique[p], unique[o], unique[qn]
            if min(np.linalg.norm(O.center[:2] - P.center[:2]), np.linalg.norm(Q.center[:2] - P.center[:2])) < (
                self.min_direction_distance
            ):
                continue
            angle = signed_angle(P, O, Q)
            if min(abs(abs(angle) - b) for b in _DIRECTION_BOUNDARIES[level]) < self.angle_margin:
                continue
            answer = direction_answer(angle, level)
            stem = f"If I am standing by the {p} and facing the {o}, is the {qn} to "
            if level == "easy":
                q = stem + f"the left or the right of the {o}?"
            elif level == "medium":
                q = stem + (
                    "my left, right, or back? An object is to my back if I would have to turn at least 135 degrees "
                    "in order to face it."
                )
            else:
                q = stem + (
                    "my front-left, front-right, back-left, or back-right? The directions refer to the quadrants of "
                    "a Cartesian plane (if I am standing at the origin and facing along the positive y-axis)."
                )
            if self.style == "vsibench":
                options, letter = self._choices(answer, list(_DIRECTION_ANSWERS[level]), rng)
                out.append((q, options, letter))
            else:
                out.append((q, [], answer))
        return out

    # ------------------------------------------------------------------ build
    def build(
        self, scene: SceneAnnotation, rng: np.random.Generator, start_id: int = 0, video: str = ""
    ) -> list[VQARecord]:
        """All questions of ``scene`` (capped per type by ``max_per_type``), ids from ``start_id``."""
        generators = {
            "object_counting": lambda: self.counting(scene, rng),
            "object_abs_distance": lambda: self.abs_distance(scene, rng),
            "object_size_estimation": lambda: self.object_size(scene, rng),
            "room_size_estimation": lambda: self.room_size(scene, rng),
            "object_rel_distance": lambda: self.rel_distance(scene, rng),
            "object_rel_direction_easy": lambda: self.rel_direction(scene, "easy", rng),
            "object_rel_direction_medium": lambda: self.rel_direction(scene, "medium", rng),
            "object_rel_direction_hard": lambda: self.rel_direction(scene, "hard", rng),
        }
        records = []
        for question_type in BUILT_QUESTION_TYPES:
            cap = self._cap(question_type)
            if cap == 0:
                continue
            items = generators[question_type]()
            if cap is not None and len(items) > cap:
                items = [items[i] for i in sorted(rng.choice(len(items), cap, replace=False))]
            for question, options, answer in items:
                records.append(
                    VQARecord(
                        id=start_id + len(records),
                        dataset=scene.dataset,
                        scene_name=scene.scene_name,
                        question_type=question_type,
                        question=question,
                        options=options,
                        ground_truth=answer,
                        video=video or f"{scene.dataset}/{scene.scene_name}.mp4",
                    )
                )
        return records
