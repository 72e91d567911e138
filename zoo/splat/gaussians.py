"""Splatter images ↔ 3D Gaussians (Nabla-R2D3 spec §2.1, DiffSplat's representation).

A splatter image holds one 3D Gaussian per pixel of each input view: 12 channels in ``[-1, 1]`` —
rgb (3), scale (3), rotation quaternion ``wxyz`` (4), opacity (1), depth (1). Decoding (DiffSplat's activations):
rgb and opacity ``(x + 1) / 2``; scale mapped linearly from ``[-1, 1]`` onto ``scale_range = (s(−1), s(+1))``; the
quaternion normalised (world
frame); the centre unprojected along the fixed input-camera ray at camera depth mapped linearly into
``depth_range``. :func:`derive_splatter` builds the scale and rotation channels from depth alone (flat discs on
the surface that the depth map implies), which is how the toy prior and the procedural-shape encoder fill them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zoo.splat.cameras import Cameras, pixel_rays

SPLATTER_CHANNELS = 12
#: Channel slices of a splatter image.
RGB, SCALE, ROTATION, OPACITY, DEPTH = slice(0, 3), slice(3, 6), slice(6, 10), slice(10, 11), slice(11, 12)
#: DiffSplat's Gaussian scales (spec §2.1) as ``(s(−1), s(+1))``: its ``GaussianRenderer.scale_activation`` maps
#: ``u = (x + 1) / 2`` to ``s_min·u + s_max·(1 − u)``, so a channel value of −1 is the *largest* scale, 0.02.
DIFFSPLAT_SCALE_RANGE = (0.02, 0.0005)


@dataclass
class Gaussians:
    """A batch of 3D Gaussians with view-independent colour (SH degree 0).

    ``means`` ``[B, N, 3]``; ``scales`` ``[B, N, 3]`` (standard deviations along the local axes); ``rotations``
    ``[B, N, 4]`` unit quaternions ``wxyz`` (local → world); ``opacities`` ``[B, N]`` in ``[0, 1]``; ``colors``
    ``[B, N, 3]`` in ``[0, 1]``.
    """

    means: torch.Tensor
    scales: torch.Tensor
    rotations: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.means.shape[0]

    @property
    def num_gaussians(self) -> int:
        return self.means.shape[1]

    def covariances(self) -> torch.Tensor:
        """World covariances ``R S² Rᵀ`` ``[B, N, 3, 3]``."""
        rot = quaternion_to_matrix(self.rotations)
        return rot @ torch.diag_embed(self.scales**2) @ rot.transpose(-1, -2)

    def normals(self) -> torch.Tensor:
        """Unit normals ``[B, N, 3]``: each Gaussian's shortest axis (sign arbitrary)."""
        rot = quaternion_to_matrix(self.rotations)
        axis = self.scales.argmin(dim=-1)
        return torch.gather(rot, -1, axis[..., None, None].expand(*axis.shape, 3, 1)).squeeze(-1)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` from quaternions ``[..., 4]`` (``wxyz``, normalised here)."""
    w, x, y, z = F.normalize(q, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``wxyz`` ``[..., 4]`` (w ≥ 0) from rotation matrices ``[..., 3, 3]`` (Shepperd's method)."""
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    candidates = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22, m[..., 1, 2] + m[..., 2, 1]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m00 - m11 + m22], -1),
        ],
        dim=-2,
    )  # row k is 4·q·q_k: pick the row with the largest diagonal term for numerical stability
    best = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1).argmax(-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2


def _from_unit(x: torch.Tensor) -> torch.Tensor:
    return x * 2 - 1


def splatter_to_gaussians(
    splatter: torch.Tensor,
    cameras: Cameras,
    *,
    depth_range: tuple[float, float],
    scale_range: tuple[float, float] = DIFFSPLAT_SCALE_RANGE,
    corner_aligned: bool = False,
) -> Gaussians:
    """Decode splatter images ``[B, V, 12, H, W]`` seen by input ``cameras`` ``[B, V]`` into ``B × (V·H·W)``
    Gaussians (spec §2.1). Values are clamped to ``[-1, 1]`` first, as DiffSplat's GS-VAE output is.
    ``corner_aligned`` selects the pixel grid of the unprojection (see :func:`~zoo.splat.cameras.pixel_rays`)."""
    if splatter.dim() != 5 or splatter.shape[2] != SPLATTER_CHANNELS:
        raise ValueError(f"splatter images must be [B, V, {SPLATTER_CHANNELS}, H, W]; got {tuple(splatter.shape)}")
    b, v, _, h, w = splatter.shape
    x = splatter.clamp(-1, 1).movedim(2, -1)  # [B, V, H, W, 12]
    origins, dirs = pixel_rays(cameras.to(dtype=x.dtype, device=x.device), h, w, corner_aligned=corner_aligned)
    near, far = depth_range
    depth = near + (far - near) * _to_unit(x[..., DEPTH])
    means = origins + depth * dirs
    lo, hi = scale_range  # the scales at channel values −1 and +1 (either order)
    return Gaussians(
        means=means.reshape(b, -1, 3),
        scales=(lo + (hi - lo) * _to_unit(x[..., SCALE])).reshape(b, -1, 3),
        rotations=F.normalize(x[..., ROTATION], dim=-1).reshape(b, -1, 4),
        opacities=_to_unit(x[..., OPACITY]).reshape(b, -1),
        colors=_to_unit(x[..., RGB]).reshape(b, -1, 3),
    )


def depth_to_normals(points: torch.Tensor) -> torch.Tensor:
    """Unit normals ``[..., H, W, 3]`` of the surface through unprojected ``points`` ``[..., H, W, 3]``.

    Along each image axis the one-sided difference with the smaller step is used, so that normals at silhouettes
    come from the surface and not from the jump to the background; the normal faces the camera.
    """

    def tangent(dim: int) -> torch.Tensor:
        n = points.shape[dim]
        idx = torch.arange(n, device=points.device)
        fwd = points.index_select(dim, (idx + 1).clamp(max=n - 1)) - points
        bwd = points - points.index_select(dim, (idx - 1).clamp(min=0))
        # at the border one of the two differences is zero: take the other one there
        fwd_len, bwd_len = fwd.norm(dim=-1, keepdim=True), bwd.norm(dim=-1, keepdim=True)
        use_fwd = (fwd_len < bwd_len) & (fwd_len > 0) | (bwd_len == 0)
        return torch.where(use_fwd, fwd, bwd)

    du, dv = tangent(-2), tangent(-3)
    return F.normalize(torch.cross(du, dv, dim=-1), dim=-1, eps=1e-12)


def derive_splatter(
    rgb: torch.Tensor,
    opacity: torch.Tensor,
    depth: torch.Tensor,
    cameras: Cameras,
    *,
    depth_range: tuple[float, float],
    scale_range: tuple[float, float],
    footprint: float = 0.5,
    thickness: float = 0.15,
) -> torch.Tensor:
    """Full 12-channel splatter images ``[B, V, 12, H, W]`` from rgb ``[B, V, 3, H, W]``, opacity and depth
    ``[B, V, 1, H, W]`` (all in ``[-1, 1]``): every pixel becomes a flat disc on the surface implied by the depth
    map, with tangent standard deviation ``footprint`` × the pixel's footprint at its depth and normal standard
    deviation ``thickness`` × that, its thin axis along the depth-map normal. Differentiable in rgb/opacity/depth.
    """
    b, v, _, h, w = depth.shape
    near, far = depth_range
    origins, dirs = pixel_rays(cameras.to(dtype=depth.dtype, device=depth.device), h, w)
    z = near + (far - near) * _to_unit(depth.clamp(-1, 1).movedim(2, -1))  # [B, V, H, W, 1]
    normals = depth_to_normals(origins + z * dirs)
    helper = torch.where(
        normals[..., 1:2].abs() < 0.9, normals.new_tensor([0.0, 1.0, 0.0]), normals.new_tensor([1.0, 0.0, 0.0])
    ).expand_as(normals)
    t1 = F.normalize(torch.cross(normals, helper, dim=-1), dim=-1)
    t2 = torch.cross(normals, t1, dim=-1)
    rotation = matrix_to_quaternion(torch.stack([t1, t2, normals], dim=-1))
    pixel = z / (cameras.fx.to(z)[..., None, None, None] * w)  # world size of one pixel at depth z
    tangent_scale = footprint * pixel
    scales = torch.cat([tangent_scale, tangent_scale, thickness * tangent_scale], dim=-1)
    lo, hi = scale_range
    scale_channels = _from_unit(((scales - lo) / (hi - lo)).clamp(0, 1))
    return torch.cat(
        [rgb, scale_channels.movedim(-1, 2), rotation.movedim(-1, 2), opacity, depth], dim=2
    )
