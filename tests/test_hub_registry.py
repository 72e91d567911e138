"""The registry of released checkpoints: entry validation, the content digest that pins shipped releases (checked
against git itself), and offline, verified loading of shipped entries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from factories import TinyNet, TinyRewardRegression

import zoo
from zoo.cli import main
from zoo.registry import Release, ReleaseVerificationError, parse_registry, release_digest, releases

SHA = "0123456789abcdef0123456789abcdef01234567"
SHIPPED = [r for r in releases() if r.local is not None]


def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def test_digest_is_the_git_tree_sha_of_the_release(tmp_path):
    TinyRewardRegression(TinyNet(width=4)).save_pretrained(tmp_path / "repo" / "rel", metrics={"reward": 1.0})
    _git(tmp_path / "repo", "init", "-q")
    _git(tmp_path / "repo", "add", "rel")
    _git(tmp_path / "repo", "commit", "-qm", "release")
    assert release_digest(tmp_path / "repo" / "rel") == _git(tmp_path / "repo", "rev-parse", "HEAD:rel")


def test_digest_ignores_other_files_and_sees_every_release_byte(tmp_path):
    TinyRewardRegression(TinyNet(width=4)).save_pretrained(tmp_path)
    digest = release_digest(tmp_path)
    (tmp_path / "notes.txt").write_text("not part of the release")
    assert release_digest(tmp_path) == digest
    card = tmp_path / "README.md"
    card.write_text(card.read_text() + " ")
    assert release_digest(tmp_path) != digest


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"revision": "main"}, "40-hex sha"),
        ({"revision": SHA.upper()}, "40-hex sha"),
        ({"repo_id": None}, "give a Hub `repo_id`, a shipped `local` folder"),
        ({"repo_id": "just-a-name"}, "repo_id must be 'org/name'"),
    ],
)
def test_invalid_entries_are_refused(entry, message):
    fields = {"name": "x", "revision": SHA, "algorithm": "a", "task": "t", "repo_id": "org/x", **entry}
    with pytest.raises(ValueError, match=message):
        Release(**fields)


def test_duplicate_names_are_refused():
    entry = f"- {{name: a, repo_id: o/a, revision: {SHA}, algorithm: x, task: t}}\n"
    assert [r.name for r in parse_registry("releases:\n" + entry)] == ["a"]
    with pytest.raises(ValueError, match=r"names \['a'\] more than once"):
        parse_registry("releases:\n" + entry * 2)


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A release folder standing in for zoo/pretrained/<folder>, and a registry listing it."""
    module = TinyRewardRegression(TinyNet(width=8), target=0.2)
    folder = tmp_path / "pretrained" / "tiny-shipped"
    module.save_pretrained(folder, metrics={"train/reward": -0.1})
    entry = Release(
        name="tiny-shipped", local="tiny-shipped", revision=release_digest(folder), algorithm="tiny", task="toy"
    )
    monkeypatch.setattr(Release, "local_path", property(lambda self: tmp_path / "pretrained" / self.local))
    monkeypatch.setattr("zoo.registry.releases", lambda: [entry])
    return module, folder


def test_shipped_entry_loads_offline_and_verified(shipped, capsys):
    module, folder = shipped
    x = torch.randn(3, 8)
    assert torch.equal(zoo.from_pretrained("tiny-shipped")(x), module(x))  # HF_HUB_OFFLINE=1, network guarded
    assert main(["pull", "tiny-shipped"]) == 0
    assert capsys.readouterr().out.strip() == str(folder)
    assert main(["models"]) == 0
    assert "tiny-shipped  tiny  toy  shipped (tiny-shipped)" in capsys.readouterr().out


def test_modified_shipped_release_is_refused(shipped, capsys):
    _, folder = shipped
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    weights["net.body.0.bias"] = weights["net.body.0.bias"] + 1e-3
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ReleaseVerificationError, match=rf"have digest {release_digest(folder)}, but .* pins"):
        zoo.from_pretrained("tiny-shipped")
    assert main(["pull", "tiny-shipped"]) == 2
    assert "modified or damaged" in capsys.readouterr().err


def test_shipped_entry_refuses_another_revision(shipped):
    with pytest.raises(ValueError, match="ships in the package at"):
        zoo.from_pretrained("tiny-shipped", revision=SHA)


@pytest.mark.parametrize("release", SHIPPED, ids=[r.name for r in SHIPPED])
def test_every_shipped_release_matches_its_pinned_digest(release):
    assert release_digest(release.local_path) == release.revision
    module = zoo.from_pretrained(release.name)
    assert module.algorithm_name == release.algorithm


def test_registry_file_parses():
    names = [r.name for r in releases()]
    assert len(names) == len(set(names))


def test_module_cli_prints_digest(tmp_path):
    import sys

    TinyRewardRegression(TinyNet()).save_pretrained(tmp_path / "rel")
    out = subprocess.run([sys.executable, "-m", "zoo.registry", str(tmp_path / "rel")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split() == [release_digest(tmp_path / "rel"), str(tmp_path / "rel")]
