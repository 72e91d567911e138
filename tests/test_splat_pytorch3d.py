"""pytorch3d camera interop (skipped where pytorch3d is not installed)."""

from __future__ import annotations

import pytest
import torch

from zoo.splat.cameras import input_cameras

pytestmark = pytest.mark.pytorch3d
pytorch3d = pytest.importorskip("pytorch3d", reason="pytorch3d is not installed")


def test_points_project_to_the_same_pixels_and_round_trip():
    from zoo.splat.pytorch3d_interop import from_pytorch3d, to_pytorch3d

    cams = input_cameras(2, 4, elevation_deg=20.0, radius=1.5)
    p3d = to_pytorch3d(cams, 24, 32)
    points = torch.rand(8, 5, 3) - 0.5
    screen = p3d.transform_points_screen(points)[..., :2]  # pixels, x right / y down, origin at the top-left corner
    w2c = cams.world_to_cam.reshape(8, 4, 4)
    cam = (w2c[:, None, :3, :3] @ points.unsqueeze(-1)).squeeze(-1) + w2c[:, None, :3, 3]
    flat_fx, flat_cx = cams.fx.reshape(8, 1), cams.cx.reshape(8, 1)
    u = (flat_fx * cam[..., 0] / cam[..., 2] + flat_cx) * 32
    v = (cams.fy.reshape(8, 1) * cam[..., 1] / cam[..., 2] + cams.cy.reshape(8, 1)) * 24
    torch.testing.assert_close(screen, torch.stack([u, v], -1), atol=1e-3, rtol=0)
    back = from_pytorch3d(p3d, 24, 32)
    torch.testing.assert_close(back.cam_to_world, cams.cam_to_world.reshape(8, 4, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(back.fx, cams.fx.reshape(8))
