"""Cameras, splatter images ↔ Gaussians, PLY round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.splat.cameras import (
    CODE_JITTER, PAPER_JITTER, focal_from_fov, input_cameras, look_at, orbit_cameras, pixel_rays, plucker_rays,
    sample_orbit_cameras,
)
from zoo.splat.gaussians import (
    Gaussians, derive_splatter, matrix_to_quaternion, quaternion_to_matrix, splatter_to_gaussians,
)
from zoo.splat.ply import PROPERTIES, SH_C0, load_ply, save_ply


def test_orbit_camera_positions_and_frames():
    cams = orbit_cameras(torch.tensor([0.0, 90.0 - 1e-3, 30.0]), torch.tensor([0.0, 0.0, 90.0]), 2.0, 1.0)
    e = math.radians(30.0)
    torch.testing.assert_close(cams.centers[0], torch.tensor([0.0, 0.0, 2.0]))
    torch.testing.assert_close(cams.centers[2], torch.tensor([2 * math.cos(e), 2 * math.sin(e), 0.0]), atol=1e-6, rtol=0)
    rot = cams.cam_to_world[..., :3, :3]
    torch.testing.assert_close(rot.transpose(-1, -2) @ rot, torch.eye(3).expand(3, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(3))
    # forward (camera z) points at the origin; camera y points down in the image (world y up)
    torch.testing.assert_close(rot[..., :, 2], -cams.centers / 2, atol=1e-5, rtol=0)
    assert rot[0, 1, 1] < 0
    torch.testing.assert_close(cams.world_to_cam @ cams.cam_to_world, torch.eye(4).expand(3, 4, 4), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="straight up or down"):
        look_at(torch.tensor([0.0, 2.0, 0.0]))


def test_rays_reproject_to_pixel_centres_and_plucker():
    cams = input_cameras(2, 4, elevation_deg=20.0, radius=1.5, focal=focal_from_fov(45.0))
    origins, dirs = pixel_rays(cams, 6, 8)
    z = 0.7 + torch.rand(2, 4, 6, 8, 1)
    points = origins + z * dirs
    w2c = cams.world_to_cam[..., None, None, :, :]
    cam_pts = (w2c[..., :3, :3] @ points.unsqueeze(-1)).squeeze(-1) + w2c[..., :3, 3]
    torch.testing.assert_close(cam_pts[..., 2:], z, atol=1e-5, rtol=0)
    u = cams.fx[..., None, None] * cam_pts[..., 0] / cam_pts[..., 2] + 0.5
    v = cams.fy[..., None, None] * cam_pts[..., 1] / cam_pts[..., 2] + 0.5
    torch.testing.assert_close(u * 8, (torch.arange(8) + 0.5).expand_as(u), atol=1e-4, rtol=0)
    torch.testing.assert_close(v * 6, (torch.arange(6) + 0.5)[:, None].expand_as(v), atol=1e-4, rtol=0)
    pl = plucker_rays(cams, 6, 8)
    assert pl.shape == (2, 4, 6, 6, 8)
    d, m = pl[:, :, :3], pl[:, :, 3:]
    torch.testing.assert_close(d.norm(dim=2), torch.ones(2, 4, 6, 8))
    torch.testing.assert_close((d * m).sum(2), torch.zeros(2, 4, 6, 8), atol=1e-6, rtol=0)  # moment ⟂ direction
    torch.testing.assert_close(torch.cross(origins.movedim(-1, 2), d, dim=2), m)


@pytest.mark.parametrize("jitter", [CODE_JITTER, PAPER_JITTER])
def test_sampled_cameras_stay_in_the_jitter_ranges(jitter):
    cams = sample_orbit_cameras(64, 4, elevation_deg=10.0, radius=1.4, generator=torch.Generator().manual_seed(0), **jitter)
    c = cams.centers
    elev = torch.rad2deg(torch.asin(c[..., 1] / 1.4))
    azim = torch.rad2deg(torch.atan2(c[..., 0], c[..., 2]))
    assert (elev - 10).abs().max() <= jitter["elevation_jitter_deg"] + 1e-3
    assert torch.allclose(elev, elev[:, :1].expand_as(elev), atol=1e-3)  # one elevation per sample
    step = torch.remainder(azim[:, 1:] - azim[:, :-1], 360.0)
    torch.testing.assert_close(step, torch.full_like(step, 90.0), atol=1e-3, rtol=0)  # views stay 90° apart
    offset = torch.remainder(azim[:, 0] + 180, 360) - 180
    assert offset.abs().max() <= jitter["azimuth_jitter_deg"] + 1e-3
    assert offset.abs().max() > 0.5 * jitter["azimuth_jitter_deg"]  # the range is used, not just its centre


def test_quaternion_matrix_round_trip():
    q = torch.nn.functional.normalize(torch.randn(100, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64), dim=-1)
    q = torch.where(q[:, :1] < 0, -q, q)
    m = quaternion_to_matrix(q)
    torch.testing.assert_close(m @ m.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(100, 3, 3))
    torch.testing.assert_close(matrix_to_quaternion(m), q)
    # rotation about z by 90°: x → y
    rz = quaternion_to_matrix(torch.tensor([math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)], dtype=torch.float64))
    torch.testing.assert_close(rz @ torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0.0, 1, 0], dtype=torch.float64))


def test_splatter_decoding_follows_the_activation_ranges():
    cams = input_cameras(1, 4)
    splatter = torch.rand(1, 4, 12, 3, 5) * 2.4 - 1.2  # values beyond ±1 are clamped, as DiffSplat clamps
    g = splatter_to_gaussians(splatter, cams, depth_range=(0.5, 2.5), scale_range=(0.01, 0.1))
    x = splatter.clamp(-1, 1).movedim(2, -1).reshape(1, -1, 12)
    torch.testing.assert_close(g.colors, (x[..., :3] + 1) / 2)
    torch.testing.assert_close(g.scales, 0.01 + 0.09 * (x[..., 3:6] + 1) / 2)
    torch.testing.assert_close(g.opacities, (x[..., 10] + 1) / 2)
    torch.testing.assert_close(g.rotations.norm(dim=-1), torch.ones(1, 60))
    depth = 0.5 + 2.0 * (x[..., 11] + 1) / 2
    # each centre lies on its pixel's ray at that camera depth
    w2c = cams.world_to_cam[0].repeat_interleave(15, dim=0)
    cam_pts = (w2c[:, :3, :3] @ g.means[0].unsqueeze(-1)).squeeze(-1) + w2c[:, :3, 3]
    torch.testing.assert_close(cam_pts[:, 2], depth[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="12, H, W"):
        splatter_to_gaussians(torch.zeros(1, 4, 11, 3, 5), cams, depth_range=(0.5, 2.5))


def test_derived_splatter_of_a_plane_has_its_normal_and_pixel_footprint():
    # a fronto-parallel plane at camera depth 1.5 seen by one camera: normals = camera axis, tangent scale = k·z/f_px
    cams = orbit_cameras(torch.tensor([[0.0]]), torch.tensor([[0.0]]), 3.0, 1.2)
    near, far, z = 1.0, 2.0, 1.5
    depth = torch.full((1, 1, 1, 6, 6), (z - near) / (far - near) * 2 - 1)
    rgb, opacity = torch.zeros(1, 1, 3, 6, 6), torch.ones(1, 1, 1, 6, 6)
    sp = derive_splatter(rgb, opacity, depth, cams, depth_range=(near, far), scale_range=(0.001, 0.5), footprint=0.5, thickness=0.1)
    g = splatter_to_gaussians(sp, cams, depth_range=(near, far), scale_range=(0.001, 0.5))
    normals = g.normals()[0]
    torch.testing.assert_close(normals.abs(), torch.tensor([0.0, 0.0, 1.0]).expand(36, 3), atol=1e-5, rtol=0)
    pixel = z / (1.2 * 6)
    torch.testing.assert_close(g.scales[0].sort(dim=-1).values, torch.tensor([0.1 * 0.5 * pixel, 0.5 * pixel, 0.5 * pixel]).expand(36, 3), atol=1e-5, rtol=0)


def test_ply_round_trip(tmp_path):
    g = Gaussians(
        torch.randn(2, 50, 3), 0.01 + torch.rand(2, 50, 3) * 0.1,
        torch.nn.functional.normalize(torch.randn(2, 50, 4), dim=-1), 0.05 + 0.9 * torch.rand(2, 50), torch.rand(2, 50, 3),
    )
    path = save_ply(g, tmp_path / "scene.ply", index=1)
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    assert [line.split()[2] for line in header.splitlines() if line.startswith("property")] == PROPERTIES
    back = load_ply(path)
    for name in ("means", "scales", "rotations", "opacities", "colors"):
        torch.testing.assert_close(getattr(back, name)[0], getattr(g, name)[1], atol=1e-5, rtol=1e-5)
    # the stored values follow the 3DGS conventions (independent read with numpy)
    raw = np.frombuffer(path.read_bytes()[len(header) + len("end_header\n"):], dtype="<f4").reshape(50, 17)
    np.testing.assert_allclose(raw[:, 6:9], ((g.colors[1] - 0.5) / SH_C0).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(raw[:, 10:13], g.scales[1].log().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(1 / (1 + np.exp(-raw[:, 9])), g.opacities[1].numpy(), rtol=1e-5, atol=1e-5)
    (tmp_path / "bad.ply").write_bytes(b"not a ply")
    with pytest.raises(ValueError, match="not a PLY"):
        load_ply(tmp_path / "bad.ply")
