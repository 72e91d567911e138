"""Presets: YAML configs shipped as package data under ``zoo.tasks.<task>/configs/<name>.yaml``.

``zoo fit --config <name>`` accepts a preset name wherever a config path is accepted.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


class UnknownPresetError(FileNotFoundError):
    """A ``--config`` value that is neither a file nor a preset name."""


def presets() -> dict[str, Path]:
    """Preset name → file, over every task package."""
    found: dict[str, Path] = {}
    root = resources.files("zoo.tasks")
    for task in sorted(root.iterdir(), key=lambda p: p.name):
        configs = task.joinpath("configs")
        if not configs.is_dir():
            continue
        for file in sorted(configs.iterdir(), key=lambda p: p.name):
            if file.name.endswith(".yaml"):
                name = file.name[: -len(".yaml")]
                if name in found:
                    raise RuntimeError(f"preset name {name!r} is defined twice: {found[name]} and {file}")
                found[name] = Path(str(file))
    return found


def resolve_preset(name_or_path: str) -> Path:
    """A config path as given if it exists, else the preset of that name; unknown names list the presets."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    available = presets()
    key = name_or_path[: -len(".yaml")] if name_or_path.endswith(".yaml") else name_or_path
    if key in available:
        return available[key]
    listing = "\n  ".join(available) or "(none)"
    raise UnknownPresetError(f"{name_or_path!r} is neither a config file nor a preset. Available presets:\n  {listing}")


def description(path: Path) -> str:
    """The first comment line of a preset: its one-line summary."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""
