"""Differentiable 3D Gaussian splatting in pure torch (Kerbl et al. 2023, §4–6; EWA projection, Zwicker et al. 2002).

Each Gaussian is projected to the image with the local affine approximation of the perspective map,
``Σ' = J W Σ Wᵀ Jᵀ + 0.3·I`` (pixels², the 3DGS low-pass term), and composited front to back by camera depth:
``α_i = min(0.99, o_i · exp(-½ dᵀ Σ'^{-1} d))``, ``T_i = Π_{j<i} (1 − α_j)``, ``C = Σ_i T_i α_i c_i + T_N · bg``.
The kernel is truncated at Mahalanobis distance 3 (α = 0 beyond), which is what makes the tiled evaluation exact.

Two evaluations of the same formula:

* :func:`render_dense` — every Gaussian at every pixel: the reference (test oracle), memory ``O(V·H·W·N)``;
* :func:`render_tiled` — 8 × 8-pixel tiles, each compositing only the ``max_per_tile`` front-most Gaussians whose
  3σ box overlaps it (selection under no-grad, the gather is differentiable). Identical to the dense result
  wherever no tile has more overlapping Gaussians than ``max_per_tile`` (``RenderOutput.overflow`` says if one did).

:func:`render` picks the backend: ``gsplat`` on CUDA when installed, else the tiled torch renderer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zoo.splat.cameras import Cameras
from zoo.splat.gaussians import Gaussians

LOW_PASS = 0.3  # pixels², 3DGS's screen-space dilation
MAX_ALPHA = 0.99
CUTOFF_SIGMA = 3.0
NEAR = 0.05
#: Elements of the tile × Gaussian overlap test evaluated at once by the tiled renderer (bounds its memory).
SELECT_BUDGET = 2**24


@dataclass
class RenderOutput:
    """Renders of ``B`` scenes from ``V`` cameras each.

    ``rgb`` ``[B, V, 3, H, W]`` composited over the background; ``alpha`` ``[B, V, 1, H, W]`` (1 − final
    transmittance); ``depth`` ``[B, V, 1, H, W]`` expected camera depth ``Σ w_i z_i / α`` (0 where α = 0);
    ``normals`` ``[B, V, 3, H, W]`` accumulated world normals ``Σ w_i n_i`` (each ``n_i`` facing the camera; not
    renormalised, so their length is the coverage); ``overflow`` ``[B, V]`` bool, True where some tile dropped
    Gaussians (tiled renderer only; always False for the dense one).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    normals: torch.Tensor
    overflow: torch.Tensor


def project(gaussians: Gaussians, cameras: Cameras, height: int, width: int) -> dict[str, torch.Tensor]:
    """Screen-space Gaussians for every camera ``[B, V]``: ``means2d`` ``[B, V, N, 2]`` (pixels, x right / y down),
    ``conics`` ``[B, V, N, 3]`` (upper triangle ``a, b, c`` of ``Σ'^{-1}``), ``depths`` ``[B, V, N]``, ``radii``
    ``[B, V, N]`` (3σ, pixels), ``visible`` ``[B, V, N]`` (in front of the near plane), plus the per-Gaussian
    ``colors``, ``opacities`` and camera-facing world ``normals`` expanded over views."""
    w2c = cameras.world_to_cam.to(gaussians.means)  # [B, V, 4, 4]
    rot, trans = w2c[..., None, :3, :3], w2c[..., None, :3, 3]  # [B, V, 1, 3, 3], [B, V, 1, 3]
    means = gaussians.means[:, None]  # [B, 1, N, 3]
    p = (rot @ means.unsqueeze(-1)).squeeze(-1) + trans  # [B, V, N, 3]
    x, y, z = p.unbind(-1)
    visible = z > NEAR
    zs = torch.where(visible, z, torch.full_like(z, 1.0))  # keep the maths finite for culled Gaussians
    fx = (cameras.fx.to(z) * width)[..., None]
    fy = (cameras.fy.to(z) * height)[..., None]
    cx = (cameras.cx.to(z) * width)[..., None]
    cy = (cameras.cy.to(z) * height)[..., None]
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    zero = torch.zeros_like(zs)
    jac = torch.stack(
        [torch.stack([fx / zs, zero, -fx * x / zs**2], -1), torch.stack([zero, fy / zs, -fy * y / zs**2], -1)], -2
    )  # [B, V, N, 2, 3]
    cov_cam = rot @ gaussians.covariances()[:, None] @ rot.transpose(-1, -2)
    cov2d = jac @ cov_cam @ jac.transpose(-1, -2)
    a = cov2d[..., 0, 0] + LOW_PASS
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + LOW_PASS
    det = a * c - b * b
    conics = torch.stack([c / det, -b / det, a / det], -1)
    mid = (a + c) / 2
    max_eig = mid + torch.sqrt((mid * mid - det).clamp(min=0.1))
    radii = CUTOFF_SIGMA * max_eig.sqrt()
    normals = gaussians.normals()[:, None].expand_as(p)
    to_camera = cameras.centers.to(z)[..., None, :] - gaussians.means[:, None]
    facing = torch.where((normals * to_camera).sum(-1, keepdim=True) < 0, -normals, normals)
    views = p.shape[1]
    return {
        "means2d": means2d,
        "conics": conics,
        "depths": z,
        "radii": radii,
        "visible": visible,
        "colors": gaussians.colors[:, None].expand(-1, views, -1, -1),
        "opacities": gaussians.opacities[:, None].expand(-1, views, -1),
        "normals": facing,
    }


def _composite(
    pixels: torch.Tensor, attrs: dict[str, torch.Tensor], valid: torch.Tensor, background: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Front-to-back compositing of depth-sorted Gaussians ``[..., K]`` at ``pixels`` ``[..., P, 2]``.

    ``attrs`` hold ``[..., K, F]`` tensors (already sorted); returns rgb ``[..., P, 3]``, alpha, depth ``[..., P, 1]``,
    normals ``[..., P, 3]``.
    """
    d = pixels[..., :, None, :] - attrs["means2d"][..., None, :, :]  # [..., P, K, 2]
    con = attrs["conics"][..., None, :, :]
    maha = con[..., 0] * d[..., 0] ** 2 + 2 * con[..., 1] * d[..., 0] * d[..., 1] + con[..., 2] * d[..., 1] ** 2
    inside = (maha <= CUTOFF_SIGMA**2) & valid[..., None, :]
    alpha = (attrs["opacities"][..., None, :] * torch.exp(-0.5 * maha)).clamp(max=MAX_ALPHA)
    alpha = torch.where(inside, alpha, torch.zeros_like(alpha))
    log_t = torch.cumsum(torch.log1p(-alpha), dim=-1)
    transmittance = torch.exp(torch.cat([torch.zeros_like(log_t[..., :1]), log_t[..., :-1]], dim=-1))
    weights = alpha * transmittance  # [..., P, K]
    final_t = torch.exp(log_t[..., -1:])
    rgb = weights @ attrs["colors"] + final_t * background
    coverage = 1 - final_t
    depth = (weights @ attrs["depths"][..., None]) / coverage.clamp(min=1e-6)
    normals = weights @ attrs["normals"]
    return rgb, coverage, depth, normals


def _pixel_centres(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=like.dtype, device=like.device) + 0.5,
        torch.arange(width, dtype=like.dtype, device=like.device) + 0.5,
        indexing="ij",
    )
    return torch.stack([xs, ys], -1)  # [H, W, 2]


def _gather_sorted(screen: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gather the per-Gaussian attributes ``[B, V, N, (F)]`` at ``index`` ``[B, V, ..., K]``."""
    keys = ("means2d", "conics", "depths", "colors", "opacities", "normals")
    out = {}
    b, v = index.shape[:2]
    flat = index.reshape(b, v, -1)
    for key in keys:
        value = screen[key]
        if value.dim() == 3:
            out[key] = torch.gather(value, 2, flat).reshape(index.shape)
        else:
            f = value.shape[-1]
            out[key] = torch.gather(value, 2, flat[..., None].expand(-1, -1, -1, f)).reshape(*index.shape, f)
    return out


def _as_background(background: float | torch.Tensor | tuple, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(background, dtype=like.dtype, device=like.device).expand(3)


def render_dense(
    gaussians: Gaussians, cameras: Cameras, height: int, width: int, *, background: float | tuple | torch.Tensor = 1.0
) -> RenderOutput:
    """Reference renderer: every Gaussian composited at every pixel (see module docstring)."""
    screen = project(gaussians, cameras, height, width)
    key = torch.where(screen["visible"], screen["depths"], torch.full_like(screen["depths"], float("inf")))
    order = key.argsort(dim=-1)  # [B, V, N]
    attrs = _gather_sorted(screen, order)
    valid = torch.gather(screen["visible"], 2, order)
    b, v = order.shape[:2]
    pixels = _pixel_centres(height, width, screen["means2d"]).reshape(1, 1, -1, 2)
    rgb, alpha, depth, normals = _composite(pixels, attrs, valid, _as_background(background, pixels))
    return RenderOutput(
        *(t.reshape(b, v, height, width, -1).movedim(-1, 2) for t in (rgb, alpha, depth, normals)),
        overflow=torch.zeros(b, v, dtype=torch.bool, device=rgb.device),
    )


def render_tiled(
    gaussians: Gaussians,
    cameras: Cameras,
    height: int,
    width: int,
    *,
    background: float | tuple | torch.Tensor = 1.0,
    tile_size: int = 8,
    max_per_tile: int = 128,
) -> RenderOutput:
    """Tiled renderer: per tile, the ``max_per_tile`` front-most overlapping Gaussians (see module docstring)."""
    if height % tile_size or width % tile_size:
        raise ValueError(f"image size {height}x{width} must be a multiple of tile_size={tile_size}")
    screen = project(gaussians, cameras, height, width)
    b, v, n = screen["depths"].shape
    ty, tx = height // tile_size, width // tile_size
    with torch.no_grad():
        lo = torch.stack(
            torch.meshgrid(torch.arange(tx), torch.arange(ty), indexing="xy"), -1
        ).reshape(-1, 2).to(screen["means2d"]) * tile_size  # [T, 2] tile corners (x, y)
        centre, radius = screen["means2d"][:, :, None], screen["radii"][:, :, None, :, None]  # [B,V,1,N,2], [B,V,1,N,1]
        k = min(max_per_tile, n)
        inf = torch.tensor(float("inf"), dtype=screen["depths"].dtype, device=lo.device)
        # the tile × Gaussian overlap test is [B, V, T, N]: done in chunks of tiles to bound memory (a DiffSplat
        # object has 262k Gaussians and 1,024 tiles at 256 px)
        chunk = max(1, SELECT_BUDGET // max(1, b * v * n))
        tops, indices, counts = [], [], []
        for start in range(0, lo.shape[0], chunk):
            corner = lo[start : start + chunk, None]  # [t, 1, 2]
            overlap = (((centre + radius) >= corner) & ((centre - radius) <= corner + tile_size)).all(-1)
            overlap &= screen["visible"][:, :, None]  # [B, V, t, N]
            counts.append(overlap.sum(-1))
            top, index = torch.where(overlap, screen["depths"][:, :, None], inf).topk(k, dim=-1, largest=False, sorted=True)
            tops.append(top)
            indices.append(index)
        top, index, count = torch.cat(tops, 2), torch.cat(indices, 2), torch.cat(counts, 2)  # [B, V, T, K], [B, V, T]
        valid = top.isfinite()
        overflow = (count > k).flatten(2).any(-1)
    attrs = _gather_sorted(screen, index)
    offsets = _pixel_centres(tile_size, tile_size, lo).reshape(-1, 2)  # [P, 2]
    pixels = lo[:, None] + offsets  # [T, P, 2]
    rgb, alpha, depth, normals = _composite(pixels, attrs, valid, _as_background(background, pixels))

    def untile(t: torch.Tensor) -> torch.Tensor:  # [B, V, T, P, F] -> [B, V, F, H, W]
        f = t.shape[-1]
        t = t.reshape(b, v, ty, tx, tile_size, tile_size, f).permute(0, 1, 6, 2, 4, 3, 5)
        return t.reshape(b, v, f, height, width)

    return RenderOutput(untile(rgb), untile(alpha), untile(depth), untile(normals), overflow)


def gsplat_available() -> bool:
    """Whether the ``gsplat`` CUDA rasteriser can be imported."""
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def render(
    gaussians: Gaussians,
    cameras: Cameras,
    height: int,
    width: int,
    *,
    background: float | tuple | torch.Tensor = 1.0,
    backend: str = "auto",
    tile_size: int = 8,
    max_per_tile: int = 128,
) -> RenderOutput:
    """Render with ``backend`` ``"torch"`` (tiled), ``"dense"``, ``"gsplat"`` or ``"auto"`` (gsplat on CUDA
    tensors when installed, else the tiled torch renderer)."""
    if backend == "auto":
        backend = "gsplat" if gaussians.means.is_cuda and gsplat_available() else "torch"
    if backend == "torch":
        return render_tiled(
            gaussians, cameras, height, width, background=background, tile_size=tile_size, max_per_tile=max_per_tile
        )
    if backend == "dense":
        return render_dense(gaussians, cameras, height, width, background=background)
    if backend == "gsplat":
        from zoo.splat.gsplat_backend import render_gsplat

        return render_gsplat(gaussians, cameras, height, width, background=background)
    raise ValueError(f"backend must be 'auto', 'torch', 'dense' or 'gsplat', got {backend!r}")
