"""Optional pytorch3d interop: zoo :class:`~zoo.splat.cameras.Cameras` ↔ ``pytorch3d.renderer.PerspectiveCameras``.

pytorch3d has no Linux wheel on PyPI; these functions import it lazily and say how to get it when it is missing.
The conversion goes through pytorch3d's own OpenCV converters (``cameras_from_opencv_projection`` and
``opencv_from_cameras_projection``), as zoo cameras use the OpenCV convention (x right, y down, z forward).
"""

from __future__ import annotations

import torch

from zoo.splat.cameras import Cameras


def _pytorch3d_utils():
    try:
        from pytorch3d import utils
    except ImportError as err:
        raise ImportError(
            "pytorch3d is not installed: build it from source or conda (https://github.com/facebookresearch/pytorch3d/"
            "blob/main/INSTALL.md); zoo's own renderer and cameras do not need it"
        ) from err
    return utils


def _flat(cameras: Cameras) -> Cameras:
    return Cameras(*(t.reshape(-1, *t.shape[len(cameras.shape):]) for t in (cameras.cam_to_world, cameras.fx, cameras.fy, cameras.cx, cameras.cy)))


def to_pytorch3d(cameras: Cameras, height: int, width: int):
    """``PerspectiveCameras`` (screen space, ``image_size = (height, width)``) for ``cameras`` flattened to ``[N]``."""
    utils = _pytorch3d_utils()
    flat = _flat(cameras)
    w2c = flat.world_to_cam
    k = torch.zeros(w2c.shape[0], 3, 3, dtype=w2c.dtype, device=w2c.device)
    k[:, 0, 0], k[:, 1, 1] = flat.fx * width, flat.fy * height
    k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = flat.cx * width, flat.cy * height, 1.0
    size = torch.tensor([[height, width]], device=w2c.device).expand(w2c.shape[0], 2)
    return utils.cameras_from_opencv_projection(w2c[:, :3, :3], w2c[:, :3, 3], k, size)


def from_pytorch3d(cameras, height: int, width: int) -> Cameras:
    """Zoo cameras ``[N]`` (normalised intrinsics) from pytorch3d ``PerspectiveCameras`` rendering ``height × width``."""
    utils = _pytorch3d_utils()
    size = torch.tensor([[height, width]], device=cameras.device).expand(len(cameras), 2)
    rot, tvec, k = utils.opencv_from_cameras_projection(cameras, size)
    w2c = torch.eye(4, dtype=rot.dtype, device=rot.device).repeat(len(cameras), 1, 1)
    w2c[:, :3, :3], w2c[:, :3, 3] = rot, tvec
    return Cameras(torch.linalg.inv(w2c), k[:, 0, 0] / width, k[:, 1, 1] / height, k[:, 0, 2] / width, k[:, 1, 2] / height)
