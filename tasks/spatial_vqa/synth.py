"""SynthVSI: procedural rooms rendered to video frames, with exact 3D annotations.

* **Scenes** (:func:`generate_scene`): a rectangular room (4–8 m per side, walls 2.8 m) with 3–6 categories from
  :data:`CATEGORIES`, each a box of realistic size and one saturated colour (one colour per category, so a
  category is recognisable), 1–4 instances per category, rotated by 0° or 90°, placed without overlap. The floor
  is a 1 m checkerboard, which gives a visual scale for distances, sizes and the room area.
* **Camera walk** (:func:`camera_walk`): the camera (1.7 m high, above every object) walks along the walls and
  looks down at the room centre; ``num_frames`` poses cover a full turn, so every object is seen from several sides.
* **Rendering** (:func:`render_frames`): exact ray casting of the room box and the object boxes as tensor ops over
  all pixels of all frames at once (slab tests), flat colours with fixed per-face shading.
* **Questions**: the scene annotation goes through :class:`~zoo.tasks.spatial_vqa.builder.QuestionBuilder`.
  Half of the categories that may repeat occur once (so distance, size and direction questions have unique
  objects to name), the other half 2…max times; SynthVSI asks counts only for categories that occur at least
  twice, so that "1" is never the answer a text-only prior can give.

Everything is a deterministic function of ``(seed, split, scene index)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from zoo.tasks.spatial_vqa.scenes import SceneAnnotation

#: category → (RGB colour, x-extent range, y-extent range, height range (m), maximum instances).
_Range = tuple[float, float]
CATEGORIES: dict[str, tuple[tuple[int, int, int], _Range, _Range, _Range, int]] = {
    "bed": ((205, 40, 40), (1.9, 2.2), (1.4, 1.8), (0.45, 0.65), 1),
    "sofa": ((40, 170, 60), (1.7, 2.3), (0.8, 1.0), (0.75, 0.9), 2),
    "table": ((45, 85, 215), (0.9, 1.6), (0.7, 1.0), (0.7, 0.8), 3),
    "chair": ((235, 205, 30), (0.45, 0.6), (0.45, 0.6), (0.8, 1.0), 5),
    "cabinet": ((200, 50, 200), (0.8, 1.4), (0.4, 0.6), (1.0, 1.4), 3),
    "plant": ((30, 200, 200), (0.4, 0.6), (0.4, 0.6), (0.8, 1.3), 4),
    "shelf": ((245, 135, 20), (0.8, 1.2), (0.3, 0.4), (1.0, 1.4), 3),
}
WALL_HEIGHT = 2.8
EYE_HEIGHT = 1.7
_GAP = 0.2  # free space kept between objects and from the walls (m)
_FLOOR = ((150, 150, 150), (105, 105, 105))
_WALL, _CEILING, _MISS = (215, 205, 185), (235, 235, 235), (0, 0, 0)
FACE_SHADE = (0.8, 0.62, 1.0)  # multiplier for faces normal to x, y, z


def _is_free(lo: np.ndarray, hi: np.ndarray, placed: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """True if the footprint ``[lo, hi]`` is at least ``_GAP`` from every placed footprint along x or y."""
    return all(np.any(lo[:2] >= p_hi[:2] + _GAP) or np.any(p_lo[:2] >= hi[:2] + _GAP) for p_lo, p_hi in placed)


def generate_scene(rng: np.random.Generator, scene_name: str) -> SceneAnnotation:
    """A random furnished rectangular room (see the module docstring); an instance that finds no free spot in
    100 tries is left out (the annotation lists only placed objects)."""
    width, depth = rng.uniform(4.0, 8.0, size=2).round(2)
    names = list(CATEGORIES)
    chosen = [names[i] for i in sorted(rng.choice(len(names), rng.integers(3, 7), replace=False))]
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    categories = []
    for category in chosen:
        _, xr, yr, hr, max_count = CATEGORIES[category]
        count = 1 if max_count == 1 or rng.random() < 0.5 else int(rng.integers(2, max_count + 1))
        for _ in range(count):
            size = np.array([rng.uniform(*xr), rng.uniform(*yr), rng.uniform(*hr)])
            if rng.random() < 0.5:
                size[[0, 1]] = size[[1, 0]]
            for _attempt in range(100):
                x = rng.uniform(_GAP, width - _GAP - size[0])
                y = rng.uniform(_GAP, depth - _GAP - size[1])
                lo = np.array([x, y, 0.0])
                hi = lo + size
                if _is_free(lo, hi, placed):
                    placed.append((lo, hi))
                    categories.append(category)
                    break
    lo, hi = (np.array([box[i] for box in placed]).reshape(-1, 3) for i in (0, 1))
    polygon = np.array([[0.0, 0.0], [width, 0.0], [width, depth], [0.0, depth]])
    return SceneAnnotation.from_boxes(
        "synthvsi", scene_name, categories, (lo + hi) / 2, hi - lo, floor_polygon=polygon
    )


def camera_walk(scene: SceneAnnotation, num_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Eye positions and look-at points ``[F, 3]``: a full turn along the walls (on an ellipse at 85% of the
    half-extents, 1.7 m high), always looking at the room centre on the floor.

    Measured on 40 scenes at 56 px: an object covers ≥ 10 pixels in 87% of the frames on average (66% when
    the camera circled closer to the centre, looking across the room), and every object ≥ 16 pixels in at least
    one frame.
    """
    lo, hi = scene.floor_polygon.min(0), scene.floor_polygon.max(0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    angles = rng.uniform(0, 2 * math.pi) + 2 * math.pi * np.arange(num_frames) / num_frames
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    eyes = np.concatenate([centre + 0.85 * half * ring, np.full((num_frames, 1), EYE_HEIGHT)], axis=1)
    targets = np.tile(np.array([[centre[0], centre[1], 0.0]]), (num_frames, 1))
    return eyes, targets


def _slab(origins: torch.Tensor, inv_dirs: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """Ray/box slab test. ``origins [F, 1, 3]``, inverse directions ``[F, R, 3]``, boxes ``lo, hi [K, 3]`` →
    entry t, exit t, entry-face axis and exit-face axis, each ``[F, R, K]``."""
    t1 = (lo - origins[..., None, :]) * inv_dirs[..., None, :]
    t2 = (hi - origins[..., None, :]) * inv_dirs[..., None, :]
    t_near, near_axis = torch.minimum(t1, t2).max(dim=-1)
    t_far, far_axis = torch.maximum(t1, t2).min(dim=-1)
    return t_near, t_far, near_axis, far_axis


def render_frames(
    scene: SceneAnnotation,
    eyes: np.ndarray,
    targets: np.ndarray,
    image_size: int = 112,
    fov_degrees: float = 90.0,
    return_instances: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Render ``[F, image_size, image_size, 3]`` uint8 RGB frames of ``scene`` from pinhole cameras at ``eyes``
    looking at ``targets`` (z up; image x to the camera's right, image y down; square pixels, horizontal and
    vertical field of view ``fov_degrees``). With ``return_instances`` also the index of the object seen at each
    pixel, ``[F, image_size, image_size]`` int64, −1 for room surfaces."""
    f32 = torch.float32
    eyes_t = torch.as_tensor(eyes, dtype=f32)
    forward = torch.as_tensor(targets, dtype=f32) - eyes_t
    forward = forward / forward.norm(dim=-1, keepdim=True)
    right = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0]).expand_as(forward))
    right = right / right.norm(dim=-1, keepdim=True)
    cam_up = torch.linalg.cross(right, forward)
    half = math.tan(math.radians(fov_degrees) / 2)
    pix = ((torch.arange(image_size, dtype=f32) + 0.5) / image_size * 2 - 1) * half  # left→right / top→bottom
    sx, sy = pix.repeat(image_size), (-pix).repeat_interleave(image_size)  # [R] per pixel, row-major
    dirs = forward[:, None] + sx[None, :, None] * right[:, None] + sy[None, :, None] * cam_up[:, None]  # [F, R, 3]
    dirs = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    inv_dirs = 1.0 / dirs
    origins = eyes_t[:, None]  # [F, 1, 3]

    # room: every ray leaves the room box through one face: floor, ceiling or a wall
    lo_xy, hi_xy = scene.floor_polygon.min(0), scene.floor_polygon.max(0)
    room_lo = torch.tensor([[lo_xy[0], lo_xy[1], 0.0]], dtype=f32)
    room_hi = torch.tensor([[hi_xy[0], hi_xy[1], WALL_HEIGHT]], dtype=f32)
    _, t_room, _, exit_axis = _slab(origins, inv_dirs, room_lo, room_hi)
    t_room, exit_axis = t_room[..., 0], exit_axis[..., 0]
    hit = origins + t_room[..., None] * dirs
    checker = (torch.floor(hit[..., 0]) + torch.floor(hit[..., 1])).remainder(2).long()
    shade = torch.tensor(FACE_SHADE, dtype=f32)
    palette = torch.tensor([_FLOOR[0], _FLOOR[1], _CEILING, _WALL], dtype=f32)
    surface = torch.where(exit_axis == 2, torch.where(dirs[..., 2] < 0, checker, 2), 3)
    rgb = palette[surface] * torch.where(exit_axis == 2, 1.0, shade[exit_axis])[..., None]

    instances = torch.full(t_room.shape, -1, dtype=torch.long)
    # objects: the nearest box hit in front of the camera, where it is nearer than the room surface
    if scene.objects:
        lo = torch.tensor(np.stack([o.box_min for o in scene.objects]), dtype=f32)
        hi = torch.tensor(np.stack([o.box_max for o in scene.objects]), dtype=f32)
        t_near, t_far, near_axis, _ = _slab(origins, inv_dirs, lo, hi)
        t_obj = torch.where((t_near <= t_far) & (t_near > 0), t_near, math.inf)
        t_best, k_best = t_obj.min(dim=-1)
        colours = torch.tensor([CATEGORIES[o.category][0] for o in scene.objects], dtype=f32)
        face = near_axis.gather(-1, k_best[..., None])[..., 0]
        seen = t_best < t_room
        rgb = torch.where(seen[..., None], colours[k_best] * shade[face][..., None], rgb)
        instances = torch.where(seen, k_best, instances)
    shape = (len(eyes_t), image_size, image_size)
    frames = rgb.round().clamp(0, 255).to(torch.uint8).reshape(*shape, 3)
    return (frames, instances.reshape(shape)) if return_instances else frames
