"""Recognisability of generated shapes from novel views: a nearest-template classifier on ground-truth renders.

Each of the 16 classes has a template: the exact splatter encoding of its shape (unit size, no yaw, exact colour)
decoded and rendered from the same cameras as the sample. A sample's **primitive** is the template whose alpha
silhouettes (all views) have the highest mean IoU with the sample's; its **colour** is the class colour nearest
(in RGB) to its alpha-weighted mean foreground colour. From views between the input views, a fuzzy ball of the
right colour is classified a sphere: the primitive accuracy measures 3D shape, the colour accuracy appearance.
"""

from __future__ import annotations

import torch

from zoo.splat.cameras import Cameras
from zoo.tasks.text_to_3d.shapes import COLOURS, PRIMITIVES, ShapeBatch, shape_splatter


def soft_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Soft IoU ``Σ min / Σ max`` of alpha maps ``[..., V, 1, H, W]`` over views and pixels → ``[...]``."""
    return torch.minimum(a, b).sum((-4, -3, -2, -1)) / torch.maximum(a, b).sum((-4, -3, -2, -1)).clamp(min=1e-8)


@torch.no_grad()
def template_alphas(generator, cameras: Cameras, size: int) -> torch.Tensor:
    """Alpha renders ``[P, V, 1, S, S]`` of each primitive's template (red, unit size, no yaw) from ``cameras[0]``."""
    from zoo.tasks.text_to_3d.prior import TOY_DEPTH_RANGE, TOY_RESOLUTION, toy_input_cameras

    count = len(PRIMITIVES)
    labels = torch.arange(count) * len(COLOURS)
    shapes = ShapeBatch(labels, torch.ones(count), torch.zeros(count), torch.tensor(list(COLOURS.values()))[labels % len(COLOURS)])
    x0 = shape_splatter(shapes, toy_input_cameras(count), TOY_RESOLUTION, depth_range=TOY_DEPTH_RANGE)
    cams = Cameras(*(t[:1].expand(count, *t.shape[1:]) for t in (cameras.cam_to_world, cameras.fx, cameras.fy, cameras.cx, cameras.cy)))
    return generator.render_views(x0, cams, size).alpha


@torch.no_grad()
def classify(images: torch.Tensor, alpha: torch.Tensor, templates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted primitive and colour indices ``[B]`` of renders ``images`` ``[B, V, 3, H, W]`` / ``alpha``
    ``[B, V, 1, H, W]`` against primitive ``templates`` ``[P, V, 1, H, W]`` (same cameras)."""
    iou = soft_iou(alpha[:, None], templates[None])  # [B, P]
    # foreground colour over a white background: Σ (rgb − (1 − α)) / Σ α = the alpha-weighted mean Gaussian colour
    colour = (images - (1 - alpha)).sum((1, 3, 4)) / alpha.sum((1, 3, 4)).clamp(min=1e-6)
    palette = torch.tensor(list(COLOURS.values()), dtype=colour.dtype)
    # shading darkens colours: compare chromaticity (colour / its norm) with the palette's
    chroma = torch.nn.functional.normalize(colour, dim=-1)
    nearest = (chroma[:, None] - torch.nn.functional.normalize(palette, dim=-1)[None]).norm(dim=-1).argmin(1)
    return iou.argmax(1), nearest
