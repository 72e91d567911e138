"""The wheel holds one import root, ``zoo``, plus its package data — no top-level ``tasks`` or ``callbacks``."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_wheel_contains_only_the_zoo_root(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("alignzoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"zoo", next(t for t in tops if t.endswith(".dist-info"))}
    for package in ("zoo/tasks/__init__.py", "zoo/callbacks/__init__.py", "zoo/model_cards/__init__.py"):
        assert package in names
    assert "zoo/model_cards/templates/model_card.md" in names
    assert "zoo/model_cards/registry.yaml" in names
    # every preset and every shipped checkpoint file of the source tree travels as package data
    sources = [*ROOT.glob("tasks/*/configs/*.yaml"), *(p for p in ROOT.glob("zoo/pretrained/**/*") if p.is_file())]
    for source in sources:
        relative = source.relative_to(ROOT)
        if relative.parts[0] == "tasks":
            relative = Path("zoo", *relative.parts)
        if "__pycache__" not in relative.parts:
            assert str(relative) in names, relative
    assert not any(n.endswith((".pyc", ".ckpt", ".pt", ".pth", ".bin")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "zoo = zoo.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
