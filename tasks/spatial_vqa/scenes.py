"""3D scene annotations: the input of the question builder (spec §1.6).

A :class:`SceneAnnotation` holds the objects of one scene (category, geometric centre, 3D bounding box, optionally
the instance's points) and the room (floor polygon or a given floor area). The up axis is +z and the frame is
right-handed, so on the floor plane a positive cross product ``f × q`` means ``q`` lies to the left of ``f``.

Three sources build it:

* :meth:`SceneAnnotation.from_instance_points` — ScanNet style: a point cloud with a per-point instance id and a
  category per instance, plus the floor polygon;
* :meth:`SceneAnnotation.from_boxes` — oriented boxes (centre, edge lengths, axes) plus the floor polygon;
* :func:`scenes_from_meta_info` — VSI-Bench ``data/meta_info/*_meta_info_val.json`` (room size, object counts,
  per-object ``centroid / axesLengths / normalizedAxes / min / max``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SceneObject:
    """One object instance.

    ``center`` is the geometric centre (mean of the instance points, or the box centre); ``lengths`` the edge
    lengths of its 3D bounding box (m); ``box_min``/``box_max`` its axis-aligned bounds; ``points`` the instance's
    points ``[P, 3]`` when known (closest-point distances then use them).
    """

    category: str
    center: np.ndarray
    lengths: np.ndarray
    box_min: np.ndarray
    box_max: np.ndarray
    points: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("center", "lengths", "box_min", "box_max"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64).reshape(3))
        if self.points is not None:
            self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)

    def to_dict(self) -> dict:
        """JSON-ready fields (points are not written)."""
        return {
            "category": self.category,
            "center": self.center.tolist(),
            "lengths": self.lengths.tolist(),
            "box_min": self.box_min.tolist(),
            "box_max": self.box_max.tolist(),
        }


@dataclass
class SceneAnnotation:
    """Objects and room of one scene; ``room_area`` (m²) is the floor-polygon area unless given explicitly."""

    dataset: str
    scene_name: str
    objects: list[SceneObject]
    floor_polygon: np.ndarray | None = None
    room_area: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.floor_polygon is not None:
            self.floor_polygon = np.asarray(self.floor_polygon, dtype=np.float64).reshape(-1, 2)
            if self.room_area is None:
                self.room_area = polygon_area(self.floor_polygon)

    @property
    def counts(self) -> Counter:
        """Number of instances per category."""
        return Counter(o.category for o in self.objects)

    def unique_objects(self) -> dict[str, SceneObject]:
        """Objects whose category occurs exactly once (the only ones a distance/size question may name)."""
        counts = self.counts
        return {o.category: o for o in self.objects if counts[o.category] == 1}

    def to_dict(self) -> dict:
        """JSON-ready scene (objects without their points)."""
        return {
            "dataset": self.dataset,
            "scene_name": self.scene_name,
            "objects": [o.to_dict() for o in self.objects],
            "floor_polygon": None if self.floor_polygon is None else self.floor_polygon.tolist(),
            "room_area": self.room_area,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> SceneAnnotation:
        """Inverse of :meth:`to_dict`."""
        return cls(
            dataset=data["dataset"],
            scene_name=data["scene_name"],
            objects=[SceneObject(**o) for o in data["objects"]],
            floor_polygon=data.get("floor_polygon"),
            room_area=data.get("room_area"),
            extra=dict(data.get("extra") or {}),
        )

    @classmethod
    def from_instance_points(
        cls,
        dataset: str,
        scene_name: str,
        points: np.ndarray,
        instance_ids: np.ndarray,
        instance_categories: Mapping[int, str],
        floor_polygon: np.ndarray,
    ) -> SceneAnnotation:
        """ScanNet style: ``points [N, 3]``, ``instance_ids [N]`` (negative = unlabelled), a category per id.

        Each instance's centre is the mean of its points; its box the axis-aligned bounds of its points.
        """
        points = np.asarray(points, dtype=np.float64)
        instance_ids = np.asarray(instance_ids)
        if points.shape[0] != instance_ids.shape[0]:
            raise ValueError(f"{points.shape[0]} points but {instance_ids.shape[0]} instance ids")
        objects = []
        for inst in np.unique(instance_ids[instance_ids >= 0]):
            if int(inst) not in instance_categories:
                raise KeyError(f"{scene_name}: instance {int(inst)} has points but no category")
            pts = points[instance_ids == inst]
            lo, hi = pts.min(0), pts.max(0)
            objects.append(SceneObject(instance_categories[int(inst)], pts.mean(0), hi - lo, lo, hi, pts))
        return cls(dataset, scene_name, objects, floor_polygon=floor_polygon)

    @classmethod
    def from_boxes(
        cls,
        dataset: str,
        scene_name: str,
        categories: Sequence[str],
        centers: np.ndarray,
        lengths: np.ndarray,
        axes: np.ndarray | None = None,
        floor_polygon: np.ndarray | None = None,
        room_area: float | None = None,
    ) -> SceneAnnotation:
        """Oriented boxes: ``centers [K, 3]``, edge ``lengths [K, 3]``, unit edge directions ``axes [K, 3, 3]``
        (rows; identity when omitted). Axis-aligned bounds are those of the box corners."""
        centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
        lengths = np.asarray(lengths, dtype=np.float64).reshape(-1, 3)
        axes = np.broadcast_to(np.eye(3), (len(centers), 3, 3)) if axes is None else np.asarray(axes).reshape(-1, 3, 3)
        signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, 8).T  # [8, 3]
        # corners[k, c] = centre + Σ_a sign[c, a] · length[a]/2 · axis[a]
        corners = centers[:, None] + np.einsum("ca,ka,kad->kcd", signs, lengths / 2, axes)
        objects = [
            SceneObject(cat, c, length, cs.min(0), cs.max(0))
            for cat, c, length, cs in zip(categories, centers, lengths, corners)
        ]
        return cls(dataset, scene_name, objects, floor_polygon=floor_polygon, room_area=room_area)


def polygon_area(polygon: np.ndarray) -> float:
    """Area of a simple polygon ``[V, 2]`` (shoelace formula)."""
    x, y = polygon[:, 0], polygon[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def scenes_from_meta_info(path: str | Path, dataset: str | None = None) -> list[SceneAnnotation]:
    """Scenes of a VSI-Bench meta-info JSON (``{scene_name: {room_size, object_counts, object_bbox}}``).

    ``object_bbox`` maps a category to a list of boxes with ``centroid``, ``axesLengths``, ``min`` and ``max``;
    the room area is the file's ``room_size``. ``dataset`` defaults to the file-name prefix
    (``scannet_meta_info_val.json`` → ``scannet``).
    """
    path = Path(path)
    data = json.loads(path.read_text())
    dataset = dataset or path.name.split("_meta_info")[0]
    scenes = []
    for scene_name, entry in data.items():
        objects = []
        for category, boxes in entry.get("object_bbox", {}).items():
            for box in boxes:
                objects.append(
                    SceneObject(category, box["centroid"], box["axesLengths"], box["min"], box["max"])
                )
        declared = entry.get("object_counts")
        if declared is not None:
            found = Counter(o.category for o in objects)
            wrong = {c: (n, found.get(c, 0)) for c, n in declared.items() if found.get(c, 0) != n}
            if wrong:
                raise ValueError(
                    f"{path}: scene {scene_name}: object_counts disagree with object_bbox "
                    f"(category: (declared, boxes)) {wrong}"
                )
        scenes.append(SceneAnnotation(dataset, scene_name, objects, room_area=entry.get("room_size")))
    return scenes
