"""The registry of released checkpoints: ``model_cards/registry.yaml`` (package data of ``zoo.model_cards``).

Every release is pinned to a 40-hex commit sha; releases that ship inside the wheel (``zoo/pretrained/<folder>``)
resolve offline through ``local``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

REGISTRY_FILE = "registry.yaml"
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Release:
    """One released checkpoint."""

    name: str
    repo_id: str
    revision: str
    algorithm: str
    task: str
    metrics: dict[str, float] = field(default_factory=dict)
    local: str | None = None

    def __post_init__(self) -> None:
        if not _SHA.match(self.revision):
            raise ValueError(f"release {self.name!r}: revision must be a 40-hex commit sha, got {self.revision!r}")

    @property
    def local_path(self) -> Path | None:
        """The shipped folder under ``zoo/pretrained/`` if this release travels with the package."""
        if self.local is None:
            return None
        return Path(str(resources.files("zoo.pretrained").joinpath(self.local)))


def releases() -> list[Release]:
    """All registry entries, in file order."""
    text = resources.files("zoo.model_cards").joinpath(REGISTRY_FILE).read_text()
    return [Release(**entry) for entry in (yaml.safe_load(text) or {}).get("releases") or []]


def find(name: str) -> Release | None:
    """The release called ``name``, or ``None``."""
    return next((r for r in releases() if r.name == name), None)
