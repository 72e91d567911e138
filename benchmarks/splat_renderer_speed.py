"""Forward + backward time of the tiled vs the dense torch Gaussian renderer (and gsplat on CUDA when installed).

    python benchmarks/splat_renderer_speed.py [--gaussians 1024] [--size 32] [--views 4] [--max-per-tile 128]

Prints the best of ``--repeats`` seconds per forward+backward, the dense/tiled ratio, the largest pixel difference
and whether a tile overflowed (only then may the tiled image differ from the dense one).
"""

from __future__ import annotations

import argparse
import time

import torch

from zoo.splat.cameras import orbit_cameras
from zoo.splat.gaussians import Gaussians
from zoo.splat.renderer import gsplat_available, render, render_dense, render_tiled


def gaussians(n: int, device: str = "cpu") -> tuple[Gaussians, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    leaves = [
        (torch.rand(1, n, 3, generator=g) - 0.5) * 0.8, 0.01 + 0.04 * torch.rand(1, n, 3, generator=g),
        torch.nn.functional.normalize(torch.randn(1, n, 4, generator=g), dim=-1), 0.2 + 0.6 * torch.rand(1, n, generator=g),
        torch.rand(1, n, 3, generator=g),
    ]
    leaves = [t.to(device).requires_grad_() for t in leaves]
    return Gaussians(*leaves), leaves


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        (out.rgb.sum() + out.alpha.sum()).backward()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaussians", type=int, default=1024)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--max-per-tile", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    g, _ = gaussians(args.gaussians)
    cams = orbit_cameras(torch.full((1, args.views), 20.0), torch.arange(args.views) * 360.0 / args.views, 2.0, 1.2)
    t_dense, dense = timed(lambda: render_dense(g, cams, args.size, args.size), args.repeats)
    t_tiled, tiled = timed(lambda: render_tiled(g, cams, args.size, args.size, max_per_tile=args.max_per_tile), args.repeats)
    diff = (tiled.rgb - dense.rgb).abs().max().item()
    print(f"{args.gaussians} Gaussians, {args.views} views at {args.size} px, threads={torch.get_num_threads()}")
    print(f"dense {t_dense:.3f} s  tiled {t_tiled:.3f} s  dense/tiled {t_dense / t_tiled:.1f}x  "
          f"max |diff| {diff:.2e}  overflow {bool(tiled.overflow.any())}")
    if torch.cuda.is_available() and gsplat_available():
        gc, _ = gaussians(args.gaussians, "cuda")
        t_gs, _ = timed(lambda: render(gc, cams, args.size, args.size, backend="gsplat"), args.repeats)
        print(f"gsplat {t_gs:.4f} s  tiled/gsplat {t_tiled / t_gs:.1f}x")


if __name__ == "__main__":
    main()
