"""The ``gsplat`` CUDA rasteriser behind :func:`zoo.splat.renderer.render` (``pip install alignzoo[gsplat]``).

Same inputs and :class:`~zoo.splat.renderer.RenderOutput` as the torch renderer; the camera-facing normals are
rasterised as three extra colour channels (background 0) and ``render_mode="RGB+ED"`` gives the expected depth.
gsplat skips fragments with α < 1/255 and bounds Gaussians by their own radius rule, so its images agree with the
torch reference to within those cut-offs, not bit for bit (``tests/test_splat_gsplat.py`` measures it on a GPU).
"""

from __future__ import annotations

import torch

from zoo.splat.cameras import Cameras
from zoo.splat.gaussians import Gaussians
from zoo.splat.renderer import LOW_PASS, RenderOutput


def intrinsics_matrix(cameras: Cameras, height: int, width: int) -> torch.Tensor:
    """Pixel intrinsics ``K`` ``[*S, 3, 3]`` of normalised cameras at ``height × width``."""
    k = torch.zeros(*cameras.shape, 3, 3, dtype=cameras.fx.dtype, device=cameras.fx.device)
    k[..., 0, 0], k[..., 1, 1] = cameras.fx * width, cameras.fy * height
    k[..., 0, 2], k[..., 1, 2] = cameras.cx * width, cameras.cy * height
    k[..., 2, 2] = 1.0
    return k


def render_gsplat(
    gaussians: Gaussians, cameras: Cameras, height: int, width: int, *, background: float | tuple | torch.Tensor = 1.0
) -> RenderOutput:
    """Render ``B`` scenes from their ``V`` cameras each with ``gsplat.rasterization`` (one call per scene)."""
    try:
        from gsplat import rasterization
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("backend='gsplat' needs gsplat (pip install 'alignzoo[gsplat]') and a CUDA GPU") from err
    device, dtype = gaussians.means.device, gaussians.means.dtype
    bg = torch.as_tensor(background, dtype=dtype, device=device).expand(3)
    cams = cameras.to(device=device, dtype=dtype)
    viewmats, ks = cams.world_to_cam, intrinsics_matrix(cams, height, width)
    outputs = []
    for b in range(gaussians.batch_size):
        normals = gaussians.normals()[b]
        to_camera = cams.centers[b][:, None] - gaussians.means[b][None]  # [V, N, 3]
        facing = torch.where((normals[None] * to_camera).sum(-1, keepdim=True) < 0, -normals[None], normals[None])
        colors = torch.cat([gaussians.colors[b][None].expand_as(facing), facing], dim=-1)  # [V, N, 6]
        backgrounds = torch.cat([bg, torch.zeros_like(bg)]).expand(viewmats.shape[1], 6)
        image, alpha, _ = rasterization(
            gaussians.means[b], gaussians.rotations[b], gaussians.scales[b], gaussians.opacities[b], colors,
            viewmats[b], ks[b], width, height, eps2d=LOW_PASS, backgrounds=backgrounds, render_mode="RGB+ED",
        )
        outputs.append((image, alpha))
    image = torch.stack([o[0] for o in outputs]).movedim(-1, 2)  # [B, V, 7, H, W]
    alpha = torch.stack([o[1] for o in outputs]).movedim(-1, 2)
    return RenderOutput(
        rgb=image[:, :, :3], alpha=alpha, depth=image[:, :, 6:7], normals=image[:, :, 3:6],
        overflow=torch.zeros(image.shape[:2], dtype=torch.bool, device=device),
    )
