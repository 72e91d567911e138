"""Procedural shapes with exact ground truth: sphere tracing of the exact signed distance functions of four
primitives (sphere, box, cylinder, torus), Lambert-shaded with a fixed world light (view-independent, so the
colour of a surface point is the same from every camera — what a degree-0 Gaussian can represent).

Each shape is a class ``(primitive, colour)`` with a small random size and colour jitter; its prompt is
``"a <colour> <primitive>"``. :func:`raycast` renders any camera; :func:`shape_splatter` encodes a shape exactly
as the toy prior's splatter images (rgb, opacity, depth per input view).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zoo.splat.cameras import Cameras, pixel_rays

PRIMITIVES = ("sphere", "box", "cylinder", "torus")
COLOURS = {"red": (0.85, 0.15, 0.12), "green": (0.15, 0.7, 0.2), "blue": (0.15, 0.3, 0.85), "yellow": (0.9, 0.8, 0.15)}
LIGHT = F.normalize(torch.tensor([0.45, 0.8, 0.4]), dim=0)
AMBIENT = 0.35


def class_names() -> list[str]:
    """``"<colour> <primitive>"`` for every class, index = ``primitive_index * len(COLOURS) + colour_index``."""
    return [f"{c} {p}" for p in PRIMITIVES for c in COLOURS]


def prompts_for(labels: torch.Tensor) -> list[str]:
    """Prompts ``"a <colour> <primitive>"`` for class labels."""
    names = class_names()
    return [f"a {names[i]}" for i in labels.tolist()]


@dataclass
class ShapeBatch:
    """Shape parameters: ``labels`` ``[B]`` class index, ``size`` ``[B]`` uniform scale, ``yaw`` ``[B]`` radians
    about the vertical axis, ``albedo`` ``[B, 3]``."""

    labels: torch.Tensor
    size: torch.Tensor
    yaw: torch.Tensor
    albedo: torch.Tensor

    @property
    def primitive(self) -> torch.Tensor:
        return self.labels // len(COLOURS)


def sample_shapes(
    n: int,
    *,
    generator: torch.Generator | None = None,
    size_range: tuple[float, float] = (0.85, 1.1),
    max_yaw_deg: float = 20.0,
    colour_jitter: float = 0.06,
    labels: torch.Tensor | None = None,
) -> ShapeBatch:
    """``n`` random shapes (uniform classes unless ``labels`` is given) with size, yaw and colour jitter."""
    num_classes = len(PRIMITIVES) * len(COLOURS)
    if labels is None:
        labels = torch.randint(num_classes, (n,), generator=generator)
    u = torch.rand(n, 5, generator=generator)
    base = torch.tensor(list(COLOURS.values()))[labels % len(COLOURS)]
    return ShapeBatch(
        labels=labels,
        size=size_range[0] + (size_range[1] - size_range[0]) * u[:, 0],
        yaw=torch.deg2rad((u[:, 1] * 2 - 1) * max_yaw_deg),
        albedo=(base + (u[:, 2:] * 2 - 1) * colour_jitter).clamp(0, 1),
    )


def signed_distance(points: torch.Tensor, primitive: int) -> torch.Tensor:
    """Exact SDF of a unit-size primitive (index into :data:`PRIMITIVES`) at object-space ``points`` ``[..., 3]``:
    sphere r 0.5; cube half-edge 0.4; cylinder (y axis) r 0.38, half-height 0.42; torus (y axis) R 0.36, r 0.16."""
    return (_sphere, _box, _cylinder, _torus)[primitive](points)


def _sphere(p: torch.Tensor) -> torch.Tensor:
    return p.norm(dim=-1) - 0.5


def _box(p: torch.Tensor) -> torch.Tensor:
    q = p.abs() - 0.4
    return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)


def _cylinder(p: torch.Tensor) -> torch.Tensor:
    d = torch.stack([torch.sqrt(p[..., 0] ** 2 + p[..., 2] ** 2 + 1e-12) - 0.38, p[..., 1].abs() - 0.42], -1)
    return d.clamp(min=0).norm(dim=-1) + d.max(dim=-1).values.clamp(max=0)


def _torus(p: torch.Tensor) -> torch.Tensor:
    radial = torch.sqrt(p[..., 0] ** 2 + p[..., 2] ** 2 + 1e-12)
    return torch.sqrt((radial - 0.36) ** 2 + p[..., 1] ** 2 + 1e-12) - 0.16


def raycast(
    shapes: ShapeBatch, cameras: Cameras, height: int, width: int, *, iterations: int = 64
) -> dict[str, torch.Tensor]:
    """Render ``shapes`` (``B``) from ``cameras`` ``[B, V]`` by sphere tracing: returns ``rgb`` ``[B, V, 3, H, W]``
    (Lambert-shaded albedo, 0 where missed), ``mask`` ``[B, V, 1, H, W]`` (bool), camera ``depth`` ``[B, V, 1, H, W]``
    (``inf`` where missed) and world ``normals`` ``[B, V, 3, H, W]``."""
    origins, dirs = pixel_rays(cameras, height, width)  # [B, V, H, W, 3], camera-z-normalised
    unit = dirs.norm(dim=-1)
    directions = dirs / unit[..., None]
    t = torch.empty_like(unit)
    normals = torch.empty_like(dirs)
    for primitive in shapes.primitive.unique().tolist():  # trace each primitive's shapes together
        rows = (shapes.primitive == primitive).nonzero().squeeze(1)
        t[rows], normals[rows] = _sphere_trace(
            origins[rows], directions[rows], primitive, shapes.size[rows], shapes.yaw[rows], iterations
        )
    hit = t.isfinite()
    shade = AMBIENT + (1 - AMBIENT) * (normals @ LIGHT).clamp(min=0)
    view = (len(shapes.labels),) + (1,) * (origins.dim() - 2)
    rgb = shapes.albedo.view(*view, 3) * shade[..., None] * hit[..., None]
    return {
        "rgb": rgb.movedim(-1, 2),
        "mask": hit.unsqueeze(2),
        "depth": (t / unit).unsqueeze(2),
        "normals": (normals * hit[..., None]).movedim(-1, 2),
    }


def _sphere_trace(
    origins: torch.Tensor, directions: torch.Tensor, primitive: int, size: torch.Tensor, yaw: torch.Tensor, iterations: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray distance (``inf`` on a miss) and world normals of unit-speed rays against posed primitives."""
    view = (size.shape[0],) + (1,) * (origins.dim() - 2)
    cos, sin, size = yaw.cos().view(view), yaw.sin().view(view), size.view(view)

    def sdf(p: torch.Tensor) -> torch.Tensor:  # object space = inverse of (rotate by yaw about y, then scale)
        x, y, z = p.unbind(-1)
        local = torch.stack([cos * x - sin * z, y, sin * x + cos * z], -1) / size[..., None]
        return signed_distance(local, primitive) * size

    t = (origins.norm(dim=-1) - 1.0).clamp(min=0)  # objects lie inside the unit sphere
    for _ in range(iterations):
        t = t + sdf(origins + t[..., None] * directions).clamp(min=0)
    p = origins + t[..., None] * directions
    offsets = torch.eye(3, dtype=p.dtype) * 1e-3
    grad = torch.stack([sdf(p + offsets[i]) - sdf(p - offsets[i]) for i in range(3)], -1)
    t = torch.where(sdf(p) < 1e-3, t, torch.full_like(t, float("inf")))
    return t, torch.nn.functional.normalize(grad, dim=-1)


def shape_splatter(
    shapes: ShapeBatch, cameras: Cameras, size: int, *, depth_range: tuple[float, float]
) -> torch.Tensor:
    """Exact splatter channels ``[B, V, 5, size, size]`` in ``[-1, 1]`` of ``shapes`` seen by input ``cameras``:
    rgb (3), opacity (±1 from the hit mask) and depth (mapped from ``depth_range``; background at the far end)."""
    out = raycast(shapes, cameras, size, size)
    near, far = depth_range
    depth = ((out["depth"].clamp(max=far) - near) / (far - near)).clamp(0, 1) * 2 - 1
    opacity = out["mask"].to(depth.dtype) * 2 - 1
    return torch.cat([out["rgb"] * 2 - 1, opacity, depth], dim=2)
