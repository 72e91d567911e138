"""The pure-torch Gaussian renderer: closed forms, finite-difference gradients, tiled == dense."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.splat.cameras import orbit_cameras
from zoo.splat.gaussians import Gaussians
from zoo.splat.renderer import LOW_PASS, project, render, render_dense, render_tiled


def random_gaussians(n: int, *, seed: int = 0, dtype=torch.float64, batch: int = 1) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=(torch.rand(batch, n, 3, generator=g, dtype=dtype) - 0.5) * 0.8,
        scales=0.03 + 0.1 * torch.rand(batch, n, 3, generator=g, dtype=dtype),
        rotations=torch.nn.functional.normalize(torch.randn(batch, n, 4, generator=g, dtype=dtype), dim=-1),
        opacities=0.2 + 0.6 * torch.rand(batch, n, generator=g, dtype=dtype),
        colors=torch.rand(batch, n, 3, generator=g, dtype=dtype),
    )


def cameras(batch: int = 1, views: int = 2, dtype=torch.float64):
    cams = orbit_cameras(torch.full((batch, views), 20.0), torch.linspace(10, 250, views).expand(batch, views), 2.0, 1.0)
    return cams.to(dtype)


def test_single_gaussian_matches_closed_form():
    # an isotropic Gaussian at the origin seen head-on projects to N(centre, (s f / z)^2 I + low-pass I)
    s, opacity, f, dist, size = 0.05, 0.7, 1.0, 2.0, 16
    g = Gaussians(
        torch.zeros(1, 1, 3, dtype=torch.float64), torch.full((1, 1, 3), s, dtype=torch.float64),
        torch.tensor([[[1.0, 0, 0, 0]]], dtype=torch.float64), torch.tensor([[opacity]], dtype=torch.float64),
        torch.tensor([[[0.2, 0.4, 0.6]]], dtype=torch.float64),
    )
    cam = orbit_cameras(torch.tensor([[0.0]]), torch.tensor([[0.0]]), dist, f).to(torch.float64)
    out = render_dense(g, cam, size, size, background=1.0)
    var = (s * f * size / dist) ** 2 + LOW_PASS
    ys, xs = torch.meshgrid(*(torch.arange(size, dtype=torch.float64) + 0.5,) * 2, indexing="ij")
    maha = ((xs - size / 2) ** 2 + (ys - size / 2) ** 2) / var
    alpha = torch.where(maha <= 9, opacity * torch.exp(-0.5 * maha), torch.zeros(()))
    torch.testing.assert_close(out.alpha[0, 0, 0], alpha.double(), rtol=1e-10, atol=1e-12)
    expected_red = alpha * 0.2 + (1 - alpha) * 1.0
    torch.testing.assert_close(out.rgb[0, 0, 0], expected_red.double(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.depth[0, 0, 0][alpha > 0], torch.full_like(alpha[alpha > 0], dist, dtype=torch.float64))


def test_two_gaussians_composite_front_to_back():
    # two overlapping Gaussians on the optical axis: C = a1 c1 + (1-a1) a2 c2 + (1-a1)(1-a2) bg, whatever the input order
    means = torch.tensor([[[0.0, 0, -0.3], [0.0, 0, 0.3]]], dtype=torch.float64)  # the second is nearer (camera on +z)
    colors = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], dtype=torch.float64)
    g = Gaussians(means, torch.full((1, 2, 3), 0.1, dtype=torch.float64), torch.tensor([1.0, 0, 0, 0]).double().expand(1, 2, 4),
                  torch.tensor([[0.5, 0.6]], dtype=torch.float64), colors)
    cam = orbit_cameras(torch.tensor([[0.0]]), torch.tensor([[0.0]]), 2.0, 1.0).to(torch.float64)
    out = render_dense(g, cam, 8, 8, background=(0.0, 0.0, 1.0))
    screen = project(g, cam, 8, 8)
    d = torch.tensor([4.5, 4.5], dtype=torch.float64) - screen["means2d"][0, 0]
    con = screen["conics"][0, 0]
    a = screen["opacities"][0, 0] * torch.exp(-0.5 * (con[:, 0] * d[:, 0] ** 2 + 2 * con[:, 1] * d[:, 0] * d[:, 1] + con[:, 2] * d[:, 1] ** 2))
    near, far = a[1], a[0]
    expected = near * colors[0, 1] + (1 - near) * far * colors[0, 0] + (1 - near) * (1 - far) * torch.tensor([0.0, 0, 1.0]).double()
    torch.testing.assert_close(out.rgb[0, 0, :, 4, 4], expected)


def test_projected_covariance_matches_numerical_jacobian():
    # EWA: Σ' = J W Σ Wᵀ Jᵀ + low-pass, J the Jacobian of the pixel projection — compare with autograd's Jacobian
    g = random_gaussians(3)
    cam = cameras(views=1)
    screen = project(g, cam, 32, 32)
    w2c = cam.world_to_cam[0, 0]
    fx = cam.fx[0, 0] * 32

    def pixel(p):
        q = w2c[:3, :3] @ p + w2c[:3, 3]
        return torch.stack([fx * q[0] / q[2] + 16, fx * q[1] / q[2] + 16])

    for i in range(3):
        jac = torch.autograd.functional.jacobian(pixel, g.means[0, i])
        cov = jac @ g.covariances()[0, i] @ jac.T + LOW_PASS * torch.eye(2, dtype=torch.float64)
        a, b, c = screen["conics"][0, 0, i]
        torch.testing.assert_close(torch.tensor([[a, b], [b, c]]), torch.linalg.inv(cov))


@pytest.mark.parametrize("renderer", [render_dense, render_tiled])
def test_gradients_match_finite_differences(renderer):
    # float64 central differences (gradcheck fast mode: random projections of the Jacobian; eps 1e-6, atol 1e-5) on 5 Gaussians, 2 views
    g = random_gaussians(5, seed=1)
    cam = cameras(views=2)
    leaves = [t.clone().requires_grad_() for t in (g.means, g.scales, g.rotations, g.opacities, g.colors)]

    def fn(*tensors):
        out = renderer(Gaussians(*tensors), cam, 8, 8)
        return out.rgb, out.alpha, out.depth, out.normals

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_tiled_equals_dense_without_overflow():
    g = random_gaussians(60, seed=2, batch=2)
    cam = cameras(batch=2, views=3)
    dense = render_dense(g, cam, 16, 24, background=0.5)
    tiled = render_tiled(g, cam, 16, 24, background=0.5, max_per_tile=64)
    assert not tiled.overflow.any()
    for name in ("rgb", "alpha", "depth", "normals"):
        torch.testing.assert_close(getattr(tiled, name), getattr(dense, name), rtol=1e-9, atol=1e-11)


def test_tile_selection_in_chunks_equals_all_at_once(monkeypatch):
    # a budget of one tile's overlap test at a time: the same Gaussians are chosen, so the images are identical
    import zoo.splat.renderer as renderer

    g = random_gaussians(60, seed=3, batch=2)
    cam = cameras(batch=2, views=3)
    whole = render_tiled(g, cam, 16, 24, max_per_tile=8)
    monkeypatch.setattr(renderer, "SELECT_BUDGET", 1)
    chunked = render_tiled(g, cam, 16, 24, max_per_tile=8)
    assert whole.overflow.any()  # truncation happens, so the choice of Gaussians matters
    for name in ("rgb", "alpha", "depth", "normals", "overflow"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name), rtol=0, atol=0)


def test_tile_overflow_is_reported():
    g = random_gaussians(60, seed=2)
    out = render_tiled(g, cameras(), 16, 16, max_per_tile=4)
    assert out.overflow.all()


def test_render_dispatch_and_errors():
    g = random_gaussians(4, dtype=torch.float32)
    cam = cameras(dtype=torch.float32)
    auto = render(g, cam, 8, 8)
    torch.testing.assert_close(auto.rgb, render_tiled(g, cam, 8, 8).rgb)
    with pytest.raises(ValueError, match="backend must be"):
        render(g, cam, 8, 8, backend="nope")
    with pytest.raises(ValueError, match="multiple of tile_size"):
        render_tiled(g, cam, 10, 8)


def test_gaussians_behind_the_camera_are_culled():
    g = random_gaussians(3)
    g.means[0, 0] = torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64)  # behind a camera at z = 2 looking at -z
    cam = orbit_cameras(torch.tensor([[0.0]]), torch.tensor([[0.0]]), 2.0, 1.0).to(torch.float64)
    with_it = render_dense(g, cam, 8, 8)
    without = render_dense(Gaussians(*(t[:, 1:] for t in (g.means, g.scales, g.rotations, g.opacities, g.colors))), cam, 8, 8)
    torch.testing.assert_close(with_it.rgb, without.rgb)
    assert math.isfinite(with_it.rgb.sum().item())
