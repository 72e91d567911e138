"""3D-Gaussian-splatting PLY files (the layout of Kerbl et al.'s reference code, read by common splat viewers).

Binary little-endian vertices with float properties ``x y z nx ny nz f_dc_0..2 opacity scale_0..2 rot_0..3``:
colour stored as degree-0 spherical-harmonic coefficients ``(c − 0.5) / C0``, opacity as a logit, scales as
logs, rotation as a ``wxyz`` quaternion. ``normals`` are written as zeros, as the reference code does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from zoo.splat.gaussians import Gaussians

SH_C0 = 0.28209479177387814
PROPERTIES = (
    ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)


def save_ply(gaussians: Gaussians, path: str | Path, *, index: int = 0) -> Path:
    """Write scene ``index`` of ``gaussians`` to ``path``."""
    eps = 1e-6
    means = gaussians.means[index].detach().float().cpu()
    columns = torch.cat(
        [
            means,
            torch.zeros_like(means),
            (gaussians.colors[index].detach().float().cpu() - 0.5) / SH_C0,
            torch.logit(gaussians.opacities[index].detach().float().cpu().clamp(eps, 1 - eps))[:, None],
            gaussians.scales[index].detach().float().cpu().clamp(min=1e-12).log(),
            torch.nn.functional.normalize(gaussians.rotations[index].detach().float().cpu(), dim=-1),
        ],
        dim=1,
    ).numpy().astype("<f4")
    header = "\n".join(
        ["ply", "format binary_little_endian 1.0", f"element vertex {len(columns)}"]
        + [f"property float {name}" for name in PROPERTIES]
        + ["end_header"]
    )
    path = Path(path)
    with path.open("wb") as f:
        f.write((header + "\n").encode("ascii"))
        f.write(np.ascontiguousarray(columns).tobytes())
    return path


def load_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS PLY (degree-0 colour; higher SH bands, if present, are ignored) as a batch of one scene."""
    data = Path(path).read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError(f"{path} is not a PLY file")
    lines = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise ValueError(f"{path}: only binary little-endian PLY files are supported")
    count = next(int(line.split()[2]) for line in lines if line.startswith("element vertex"))
    names = [line.split()[2] for line in lines if line.startswith("property")]
    types = [line.split()[1] for line in lines if line.startswith("property")]
    if set(types) != {"float"}:
        raise ValueError(f"{path}: expected float properties only, got {sorted(set(types))}")
    missing = set(PROPERTIES) - set(names) - {"nx", "ny", "nz"}
    if missing:
        raise ValueError(f"{path} lacks the 3DGS properties {sorted(missing)}")
    table = np.frombuffer(data, dtype="<f4", count=count * len(names), offset=end + len(b"end_header\n"))
    table = torch.from_numpy(table.reshape(count, len(names)).copy())

    def col(*keys: str) -> torch.Tensor:
        return table[:, [names.index(k) for k in keys]]

    return Gaussians(
        means=col("x", "y", "z")[None],
        scales=col("scale_0", "scale_1", "scale_2").exp()[None],
        rotations=torch.nn.functional.normalize(col("rot_0", "rot_1", "rot_2", "rot_3"), dim=-1)[None],
        opacities=torch.sigmoid(col("opacity")[:, 0])[None],
        colors=(col("f_dc_0", "f_dc_1", "f_dc_2") * SH_C0 + 0.5)[None],
    )
