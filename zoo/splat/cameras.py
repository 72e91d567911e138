"""Orbit cameras, rays and Plücker ray maps (Nabla-R2D3 spec §2.1 and §2.3).

Conventions: world y is up; cameras follow OpenCV (x right, y down, z forward). A camera at elevation ``e`` and
azimuth ``a`` (degrees) on a sphere of radius ``r`` sits at ``r·(cos e sin a, sin e, cos e cos a)`` and looks at the
origin. Intrinsics are *normalised* (``fx`` = focal / image width, principal point ``cx = cy = 0.5``), so one
camera renders at any resolution, as in DiffSplat (``fx = fy = 1422.222 / 1024``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: DiffSplat's fixed input cameras (spec §2.1): elevation 10° above, azimuths 0/90/180/270, radius 1.4.
DIFFSPLAT_ELEVATION_DEG = 10.0
DIFFSPLAT_RADIUS = 1.4
DIFFSPLAT_FOCAL = 1422.222 / 1024

#: Training-camera jitter (spec §2.3 / §7): the official code uses a shared azimuth offset in ±10° and an elevation
#: offset in ±5°; the paper states ±60° azimuth and ±20° elevation. Both are available; the code's is the default.
CODE_JITTER = {"azimuth_jitter_deg": 10.0, "elevation_jitter_deg": 5.0}
PAPER_JITTER = {"azimuth_jitter_deg": 60.0, "elevation_jitter_deg": 20.0}


@dataclass
class Cameras:
    """A batch of pinhole cameras, any leading shape ``S`` (usually ``[B, V]``).

    ``cam_to_world``: ``[*S, 4, 4]`` (columns: camera x, y, z axes and position in world coordinates);
    ``fx, fy, cx, cy``: ``[*S]`` normalised intrinsics (divide-by-size convention, see module docstring).
    """

    cam_to_world: torch.Tensor
    fx: torch.Tensor
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        return self.cam_to_world.shape[:-2]

    @property
    def world_to_cam(self) -> torch.Tensor:
        """``[*S, 4, 4]`` rigid inverse of :attr:`cam_to_world`."""
        rot = self.cam_to_world[..., :3, :3]
        pos = self.cam_to_world[..., :3, 3:]
        out = torch.zeros_like(self.cam_to_world)
        out[..., :3, :3] = rot.transpose(-1, -2)
        out[..., :3, 3:] = -rot.transpose(-1, -2) @ pos
        out[..., 3, 3] = 1.0
        return out

    @property
    def centers(self) -> torch.Tensor:
        """Camera positions ``[*S, 3]``."""
        return self.cam_to_world[..., :3, 3]

    def to(self, *args, **kwargs) -> Cameras:
        return Cameras(*(t.to(*args, **kwargs) for t in (self.cam_to_world, self.fx, self.fy, self.cx, self.cy)))

    def __getitem__(self, index) -> Cameras:
        return Cameras(self.cam_to_world[index], self.fx[index], self.fy[index], self.cx[index], self.cy[index])


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """OpenCV camera-to-world matrices ``[*S, 4, 4]`` for cameras at ``eye`` ``[*S, 3]`` looking at ``target``.

    World y is up; at the poles (``|elevation| = 90°``) the frame is undefined and an error is raised.
    """
    target = torch.zeros_like(eye) if target is None else target.expand_as(eye)
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device).expand_as(forward)
    right = torch.cross(forward, up, dim=-1)
    if (right.norm(dim=-1) < 1e-6).any():
        raise ValueError("look_at: a camera looks straight up or down; keep |elevation| < 90 degrees")
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.cross(forward, right, dim=-1)
    out = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    out[..., :3, 0], out[..., :3, 1], out[..., :3, 2], out[..., :3, 3] = right, down, forward, eye
    out[..., 3, 3] = 1.0
    return out


def orbit_cameras(
    elevation_deg: torch.Tensor | float,
    azimuth_deg: torch.Tensor | float,
    radius: torch.Tensor | float = DIFFSPLAT_RADIUS,
    focal: float = DIFFSPLAT_FOCAL,
) -> Cameras:
    """Cameras on a sphere around the origin; elevation/azimuth/radius broadcast to a common shape ``S``.

    ``focal`` is the normalised focal length (focal / image size); ``fov = 2·atan(1 / (2·focal))``.
    """
    elev, azim, rad = torch.broadcast_tensors(
        *(torch.as_tensor(v, dtype=torch.float32) for v in (elevation_deg, azimuth_deg, radius))
    )
    e, a = torch.deg2rad(elev), torch.deg2rad(azim)
    eye = torch.stack([rad * e.cos() * a.sin(), rad * e.sin(), rad * e.cos() * a.cos()], dim=-1)
    full = torch.full(elev.shape, focal, dtype=torch.float32)
    half = torch.full(elev.shape, 0.5, dtype=torch.float32)
    return Cameras(look_at(eye), full, full.clone(), half, half.clone())


def focal_from_fov(fov_deg: float) -> float:
    """Normalised focal length for a full field of view of ``fov_deg`` degrees."""
    return 0.5 / math.tan(math.radians(fov_deg) / 2)


def input_cameras(
    batch: int = 1,
    views: int = 4,
    elevation_deg: float = DIFFSPLAT_ELEVATION_DEG,
    radius: float = DIFFSPLAT_RADIUS,
    focal: float = DIFFSPLAT_FOCAL,
) -> Cameras:
    """The fixed input cameras of a splatter-image model: ``views`` equally spaced azimuths from 0°, ``[batch, V]``."""
    azim = torch.arange(views, dtype=torch.float32) * (360.0 / views)
    return orbit_cameras(torch.full((batch, views), elevation_deg), azim.expand(batch, views), radius, focal)


def sample_orbit_cameras(
    batch: int,
    views: int = 4,
    *,
    elevation_deg: float = DIFFSPLAT_ELEVATION_DEG,
    radius: float = DIFFSPLAT_RADIUS,
    focal: float = DIFFSPLAT_FOCAL,
    azimuth_jitter_deg: float = CODE_JITTER["azimuth_jitter_deg"],
    elevation_jitter_deg: float = CODE_JITTER["elevation_jitter_deg"],
    generator: torch.Generator | None = None,
) -> Cameras:
    """Random training cameras (spec §2.3, ``geo_util.random_sample_cams``): ``views`` equally spaced azimuths
    plus one offset per sample in ``U(±azimuth_jitter_deg)``, and elevation ``elevation_deg + U(±elevation_jitter_deg)``
    per sample. Defaults follow the official code (:data:`CODE_JITTER`); pass ``**PAPER_JITTER`` for the paper's.
    """
    u = torch.rand(batch, 2, generator=generator) * 2 - 1
    azim = torch.arange(views, dtype=torch.float32) * (360.0 / views) + u[:, :1] * azimuth_jitter_deg
    elev = (elevation_deg + u[:, 1:] * elevation_jitter_deg).expand(batch, views)
    return orbit_cameras(elev, azim, radius, focal)


def pixel_rays(
    cameras: Cameras, height: int, width: int, *, corner_aligned: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixel centres: origins ``[*S, H, W, 3]`` and world directions ``[*S, H, W, 3]`` whose
    camera-space z component is 1 (so ``origin + z·direction`` is the point at camera depth ``z``).

    ``corner_aligned`` puts pixel ``j`` at ``j / (W − 1)`` of the image instead of ``(j + 0.5) / W`` (the grid of
    DiffSplat's ``geo_util.unproject_depth``, which its splatter images are decoded with)."""
    dtype, device = cameras.cam_to_world.dtype, cameras.cam_to_world.device

    def grid(n: int) -> torch.Tensor:
        index = torch.arange(n, dtype=dtype, device=device)
        return index / (n - 1) if corner_aligned else (index + 0.5) / n

    v, u = torch.meshgrid(grid(height), grid(width), indexing="ij")
    fx, fy, cx, cy = (t[..., None, None] for t in (cameras.fx, cameras.fy, cameras.cx, cameras.cy))
    # normalised intrinsics: x_cam / z = (u - cx) / fx, u in [0, 1] across the width; likewise y with the height
    x, y = (u - cx) / fx, (v - cy) / fy
    dirs_cam = torch.stack([x, y, torch.ones_like(x)], -1)
    rot = cameras.cam_to_world[..., None, None, :3, :3]
    dirs = (rot @ dirs_cam.unsqueeze(-1)).squeeze(-1)
    origins = cameras.centers[..., None, None, :].expand_as(dirs)
    return origins, dirs


def plucker_rays(cameras: Cameras, height: int, width: int) -> torch.Tensor:
    """Plücker ray maps ``[*S, 6, H, W]``: unit direction ``d`` and moment ``o × d`` (DiffSplat's conditioning)."""
    origins, dirs = pixel_rays(cameras, height, width)
    d = torch.nn.functional.normalize(dirs, dim=-1)
    return torch.cat([d, torch.cross(origins, d, dim=-1)], dim=-1).movedim(-1, -3)
