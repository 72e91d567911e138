"""The registry of released checkpoints: ``model_cards/registry.yaml`` (package data of ``zoo.model_cards``).

Every entry is pinned to a 40-hex sha (``revision``):

* a release on the Hub (``repo_id``) pins the Hub **commit** sha that is downloaded;
* a release shipped inside the wheel (``local``: a folder under ``zoo/pretrained/``) pins the **content digest**
  of its files, :func:`release_digest` — the git tree sha of the folder — so loading it offline also verifies it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

REGISTRY_FILE = "registry.yaml"
_SHA = re.compile(r"^[0-9a-f]{40}$")


def is_sha(revision: str) -> bool:
    """Whether ``revision`` is a full 40-hex commit sha (immutable), not a branch or tag name."""
    return bool(_SHA.match(revision))


class ReleaseVerificationError(ValueError):
    """A release's files do not match the sha that pins them."""


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file's content (``git hash-object``), which the Hub also uses for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def release_files(directory: str | Path) -> list[Path]:
    """The files of a release folder: its safetensors (shards and index included), ``config.yaml`` and card."""
    from zoo.hub import CARD_NAME, CONFIG_NAME, WEIGHTS_INDEX_NAME

    names = {CONFIG_NAME, CARD_NAME, WEIGHTS_INDEX_NAME}
    folder = Path(directory)
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and (p.name in names or p.name.endswith(".safetensors"))),
        key=lambda p: p.name,
    )


def release_digest(directory: str | Path) -> str:
    """Content digest of a release folder: the git tree sha1 of its :func:`release_files`.

    It equals ``git rev-parse HEAD:<folder>`` for a committed folder that holds only release files, so a shipped
    entry's ``revision`` can be checked with git alone. Any change to any release file changes it.
    """
    entries = b"".join(
        b"100644 " + p.name.encode() + b"\0" + bytes.fromhex(git_blob_sha1(p.read_bytes()))
        for p in release_files(directory)  # git orders tree entries by name; all entries here are plain files
    )
    if not entries:
        raise FileNotFoundError(f"{directory} holds no release files (model.safetensors, config.yaml, README.md)")
    return hashlib.sha1(b"tree %d\0" % len(entries) + entries).hexdigest()


@dataclass(frozen=True)
class Release:
    """One released checkpoint (one entry of ``registry.yaml``)."""

    name: str
    revision: str
    algorithm: str
    task: str
    repo_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    local: str | None = None

    def __post_init__(self) -> None:
        if not is_sha(self.revision):
            raise ValueError(f"release {self.name!r}: revision must be a 40-hex sha, got {self.revision!r}")
        if self.repo_id is None and self.local is None:
            raise ValueError(f"release {self.name!r}: give a Hub `repo_id`, a shipped `local` folder, or both")
        if self.repo_id is not None and self.repo_id.count("/") != 1:
            raise ValueError(f"release {self.name!r}: repo_id must be 'org/name', got {self.repo_id!r}")

    @property
    def local_path(self) -> Path | None:
        """The shipped folder under ``zoo/pretrained/`` if this release travels with the package."""
        if self.local is None:
            return None
        return Path(str(resources.files("zoo.pretrained").joinpath(self.local)))

    def verified_local_path(self) -> Path:
        """The shipped folder, after checking that its content digest is the pinned ``revision``."""
        path = self.local_path
        if path is None or not path.is_dir():
            raise FileNotFoundError(f"release {self.name!r}: shipped folder zoo/pretrained/{self.local} is missing")
        digest = release_digest(path)
        if digest != self.revision:
            raise ReleaseVerificationError(
                f"release {self.name!r}: the files in {path} have digest {digest}, but model_cards/registry.yaml "
                f"pins {self.revision}. The shipped checkpoint was modified or damaged; reinstall alignzoo, or, if "
                "the change is intended, set that entry's revision to the new digest."
            )
        return path


def parse_registry(text: str) -> list[Release]:
    """The entries of a ``registry.yaml`` text, in order; names must be unique."""
    found = [Release(**entry) for entry in (yaml.safe_load(text) or {}).get("releases") or []]
    names = [r.name for r in found]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"model_cards/registry.yaml names {duplicated} more than once")
    return found


def releases() -> list[Release]:
    """All entries of the installed ``model_cards/registry.yaml``, in file order."""
    return parse_registry(resources.files("zoo.model_cards").joinpath(REGISTRY_FILE).read_text())


def find(name: str) -> Release | None:
    """The release called ``name``, or ``None``."""
    return next((r for r in releases() if r.name == name), None)


if __name__ == "__main__":  # python -m zoo.registry FOLDER: the revision to write for a shipped folder
    import sys

    for folder in sys.argv[1:] or ["."]:
        print(release_digest(folder), folder)
