"""Publishing and pulling releases end to end against the loopback hub, with the real ``huggingface_hub`` client:
``zoo fit`` with ``HubPublish`` → Hub commit → ``zoo.from_pretrained("org/name@<sha>")`` into a fresh cache."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from factories import TinyNet, TinyRewardRegression
from lightning.pytorch import Callback
from loopback_hub import loopback_hub  # noqa: F401  (fixture)

import zoo
from zoo.cli import main
from zoo.hub import push_release
from zoo.registry import Release, ReleaseVerificationError, git_blob_sha1

SECRET = "hf_token_that_must_not_be_published"


class KeepTrainer(Callback):
    """Keeps the trainer of a CLI run, so the test can compare with the module exactly as training left it."""

    last = None

    def on_fit_end(self, trainer, pl_module):
        KeepTrainer.last = trainer


def _fit(tmp_path: Path, hub_publish: dict, *extra: str) -> int:
    config = {
        "model": {
            "class_path": "factories.TinyRewardRegression",
            "init_args": {"net": {"class_path": "factories.TinyNet", "init_args": {"width": 8}}, "target": 0.3},
        },
        "data": {"class_path": "factories.RandomVectors", "init_args": {"n": 16}},
        "trainer": {
            "accelerator": "cpu",
            "logger": False,
            "enable_progress_bar": False,
            "enable_checkpointing": False,
            "default_root_dir": str(tmp_path / "run"),
            "callbacks": [
                {"class_path": "zoo.callbacks.HubPublish", "init_args": hub_publish},
                {"class_path": "test_hub_loopback.KeepTrainer"},
            ],
        },
    }
    file = tmp_path / "fit.yaml"
    file.write_text(yaml.safe_dump(config))
    return main(["fit", "--config", str(file), *extra])


def _publisher(trainer):
    from zoo.callbacks import HubPublish

    return next(cb for cb in trainer.callbacks if isinstance(cb, HubPublish))


def test_fit_publishes_and_pinned_pull_reproduces_outputs(loopback_hub, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    monkeypatch.chdir(tmp_path)
    publish = {"repo_id": "org/tiny", "endpoint": loopback_hub.endpoint, "token": SECRET, "retry_wait_s": 0.0}
    assert _fit(tmp_path, publish, "--trainer.max_steps=4") == 0
    trainer = KeepTrainer.last
    trained = trainer.lightning_module
    (release,) = _publisher(trainer).releases
    assert release.error is None
    sha = release.result.commit_sha
    assert loopback_hub.repos["org/tiny"].branches["main"] == sha  # the commit the server recorded
    assert loopback_hub.repos["org/tiny"].private  # HubPublish creates private repos unless told otherwise
    assert ("POST", "/api/validate-yaml") in loopback_hub.requests  # the card went through the Hub's validation

    # a fresh cache: everything below comes from the hub, nothing from the training process
    cache = tmp_path / "fresh-cache"
    loaded = zoo.from_pretrained(f"org/tiny@{sha}", cache_dir=cache, endpoint=loopback_hub.endpoint)
    assert type(loaded) is TinyRewardRegression and loaded is not trained
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(loaded(x), trained(x))  # bit for bit
    snapshot = cache / "models--org--tiny" / "snapshots" / sha
    assert sorted(p.name for p in snapshot.iterdir()) == ["README.md", "config.yaml", "model.safetensors"]

    card = ModelCard.load(snapshot / "README.md")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == pytest.approx({"train/reward": float(trainer.callback_metrics["train/reward"])}, abs=0)
    assert {"alignzoo", "tiny-regression", "arxiv:0000.00000"} <= set(card.data.tags)
    assert card.data.library_name == "alignzoo" and card.data.model_name == "tiny"
    assert "target: 0.3" in card.text and "max_steps: 4" in card.text  # hyperparameters of this run

    config_text = (snapshot / "config.yaml").read_text()
    config = yaml.safe_load(config_text)
    assert config["seed_everything"] == 0 and config["trainer"]["max_steps"] == 4  # LightningCLI's resolved config
    assert config["data"]["class_path"] == "factories.RandomVectors"
    assert SECRET not in config_text and SECRET not in card.text

    # the card's usage snippet works as written (the default endpoint is the loopback hub here)
    snippet = re.search(r"```python\n(.*?)```", card.text, flags=re.S).group(1)
    namespace: dict = {}
    exec(snippet, namespace)
    assert torch.equal(namespace["model"](x), trained(x))


def test_hub_outage_keeps_release_and_says_how_to_retry(loopback_hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loopback_hub.fail_status = 500
    publish = {"repo_id": "org/tiny", "endpoint": loopback_hub.endpoint, "retries": 1, "retry_wait_s": 0.0}
    with pytest.warns(UserWarning, match=r"org/tiny") as warned:
        assert _fit(tmp_path, publish, "--trainer.max_steps=3") == 0  # training completes
    trainer = KeepTrainer.last
    (release,) = _publisher(trainer).releases
    assert release.result is None
    message = next(str(w.message) for w in warned if "HubPublish" in str(w.message))
    assert "failed after 2 attempt(s)" in message and "500" in message
    assert f"zoo push {release.folder} org/tiny" in message
    assert loopback_hub.requests.count(("POST", "/api/repos/create")) == 2  # one retry

    # the local release is intact and complete
    assert sorted(p.name for p in release.folder.iterdir()) == ["README.md", "config.yaml", "model.safetensors"]
    x = torch.randn(3, 8)
    assert torch.equal(zoo.from_pretrained(release.folder)(x), trainer.lightning_module(x))

    # the printed command works once the hub is back
    loopback_hub.fail_status = None
    assert main(["push", str(release.folder), "org/tiny", "--endpoint", loopback_hub.endpoint]) == 0
    sha = loopback_hub.repos["org/tiny"].branches["main"]
    pulled = zoo.from_pretrained(f"org/tiny@{sha}", endpoint=loopback_hub.endpoint)
    assert torch.equal(pulled(x), trainer.lightning_module(x))


def test_zoo_push_failure_exit_code_and_message(loopback_hub, tmp_path, capsys):
    TinyRewardRegression(TinyNet()).save_pretrained(tmp_path / "rel")
    loopback_hub.fail_status = 503
    assert main(["push", str(tmp_path / "rel"), "org/down", "--retries", "0", "--endpoint", loopback_hub.endpoint]) == 1
    err = capsys.readouterr().err
    assert "org/down" in err and f"zoo push {tmp_path / 'rel'} org/down" in err


def test_non_blocking_every_epoch_with_branch_and_tags(loopback_hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    publish = {
        "repo_id": "org/epochs",
        "endpoint": loopback_hub.endpoint,
        "when": "every_n_epochs",
        "branch": "releases",
        "tag": "epoch-{epoch}",
        "blocking": False,
    }
    assert _fit(tmp_path, publish, "--trainer.max_epochs=2", "--trainer.limit_train_batches=1") == 0
    releases = _publisher(KeepTrainer.last).releases
    assert [r.folder.name for r in releases] == ["epoch=0-step=1", "epoch=1-step=2"]
    repo = loopback_hub.repos["org/epochs"]
    assert repo.tags == {"epoch-0": releases[0].result.commit_sha, "epoch-1": releases[1].result.commit_sha}
    assert repo.branches["releases"] == releases[1].result.commit_sha
    assert repo.commits[repo.branches["main"]].files == {}  # main untouched
    x = torch.randn(2, 8)
    by_tag = zoo.from_pretrained("org/epochs@epoch-1", endpoint=loopback_hub.endpoint)
    assert torch.equal(by_tag(x), KeepTrainer.last.lightning_module(x))


def test_push_as_pull_request(loopback_hub, tmp_path):
    TinyRewardRegression(TinyNet()).save_pretrained(tmp_path / "rel")
    first = push_release(tmp_path / "rel", "org/pr", endpoint=loopback_hub.endpoint)
    proposed = push_release(tmp_path / "rel", "org/pr", create_pr=True, endpoint=loopback_hub.endpoint)
    repo = loopback_hub.repos["org/pr"]
    assert proposed.pr_url.endswith("/org/pr/discussions/1")
    assert repo.branches["refs/pr/1"] == proposed.commit_sha and repo.branches["main"] == first.commit_sha


def _published(tmp_path, hub) -> tuple[TinyRewardRegression, str]:
    module = TinyRewardRegression(TinyNet(width=8), target=0.1)
    module.save_pretrained(tmp_path / "rel", metrics={"reward": 0.5})
    return module, push_release(tmp_path / "rel", "org/cached", endpoint=hub.endpoint).commit_sha


def test_cached_pinned_release_loads_without_any_request(loopback_hub, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    module, sha = _published(tmp_path, loopback_hub)
    zoo.from_pretrained("org/cached", endpoint=loopback_hub.endpoint)  # fills the cache and records refs/main
    loopback_hub.requests.clear()
    x = torch.randn(3, 8)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert torch.equal(zoo.from_pretrained(f"org/cached@{sha}", endpoint=loopback_hub.endpoint)(x), module(x))
    assert torch.equal(zoo.from_pretrained("org/cached", endpoint=loopback_hub.endpoint)(x), module(x))  # refs/main
    assert main(["pull", f"org/cached@{sha}", "--endpoint", loopback_hub.endpoint]) == 0
    assert capsys.readouterr().out.strip().endswith(f"snapshots/{sha}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert torch.equal(zoo.from_pretrained(f"org/cached@{sha}", endpoint=loopback_hub.endpoint)(x), module(x))
    assert main(["pull", f"org/cached@{sha}", "--offline", "--endpoint", loopback_hub.endpoint]) == 0
    assert loopback_hub.requests == []  # offline, and online with a pinned cached revision: no request at all


def test_pull_fetches_only_the_release_files(loopback_hub, tmp_path):
    from huggingface_hub import HfApi

    _published(tmp_path, loopback_hub)
    api = HfApi(endpoint=loopback_hub.endpoint)
    extra = api.upload_file(path_or_fileobj=b"x" * 1000, path_in_repo="logs/events.bin", repo_id="org/cached")
    loopback_hub.requests.clear()
    folder = zoo.hub.resolve_release(f"org/cached@{extra.oid}", endpoint=loopback_hub.endpoint)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.yaml", "model.safetensors"]
    fetched = {path.rsplit("/", 1)[-1] for method, path in loopback_hub.requests if method == "GET" and "/resolve/" in path}
    assert fetched == {"README.md", "config.yaml", "model.safetensors"}


def test_offline_without_cache_is_a_clear_error(loopback_hub, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    _, sha = _published(tmp_path, loopback_hub)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["pull", f"org/cached@{sha}"]) == 2
    assert "zoo pull: error:" in capsys.readouterr().err


def test_damaged_cache_is_refused(loopback_hub, tmp_path):
    _, sha = _published(tmp_path, loopback_hub)
    folder = zoo.hub.resolve_release(f"org/cached@{sha}", endpoint=loopback_hub.endpoint)
    blob = (folder / "model.safetensors").resolve()
    assert blob.name == git_blob_sha1(blob.read_bytes())  # the loopback hub's etag is the git blob sha1
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    with pytest.raises(ReleaseVerificationError, match=r"org/cached: cached model.safetensors is damaged"):
        zoo.from_pretrained(f"org/cached@{sha}", endpoint=loopback_hub.endpoint)


def test_registry_hub_entry_pull_and_list(loopback_hub, tmp_path, monkeypatch, capsys):
    module, sha = _published(tmp_path, loopback_hub)
    entry = Release(name="tiny-hub", repo_id="org/cached", revision=sha, algorithm="tiny-regression", task="toy")
    monkeypatch.setattr("zoo.registry.releases", lambda: [entry])
    assert main(["models"]) == 0
    assert f"org/cached@{sha[:12]}" in capsys.readouterr().out
    assert main(["pull", "tiny-hub", "--endpoint", loopback_hub.endpoint]) == 0
    assert capsys.readouterr().out.strip().endswith(f"snapshots/{sha}")
    x = torch.randn(2, 8)
    assert torch.equal(zoo.from_pretrained("tiny-hub", endpoint=loopback_hub.endpoint)(x), module(x))


def test_hub_publish_is_visible_to_the_cli(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--trainer.callbacks.help", "zoo.callbacks.HubPublish"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for arg in ("repo_id", "monitor", "every_n_epochs", "branch", "tag", "endpoint", "token", "local_dir", "retries"):
        assert f"--trainer.callbacks.{arg} {arg.upper()}" in out, arg
    for arg in ("private", "create_pr", "blocking"):
        assert f"--trainer.callbacks.{arg} {{true,false}}" in out, arg
    assert "--trainer.callbacks.when {fit_end,best,every_n_epochs}" in out


def test_hub_publish_print_config_shows_typed_defaults(tmp_path, capsys):
    config = {
        "model": {"class_path": "factories.TinyRewardRegression", "init_args": {"net": {"class_path": "factories.TinyNet"}}},
        "data": {"class_path": "factories.RandomVectors"},
        "trainer": {"callbacks": [{"class_path": "zoo.callbacks.HubPublish", "init_args": {"repo_id": "org/x"}}]},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(tmp_path / "c.yaml"), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    (callback,) = printed["trainer"]["callbacks"]
    assert callback["class_path"] == "zoo.callbacks.HubPublish"
    assert callback["init_args"]["when"] == "fit_end" and callback["init_args"]["retries"] == 3


def test_best_mode_publishes_only_on_improvement():
    from types import SimpleNamespace

    from zoo.callbacks import HubPublish

    callback = HubPublish("org/x", when="best", monitor="val/loss", mode="min")
    seen = []
    for value in [3.0, 2.0, 2.5, float("nan"), 1.0, 1.0]:
        seen.append(callback._improved(SimpleNamespace(callback_metrics={"val/loss": torch.tensor(value)})))
    assert seen == [True, True, False, False, True, False]
    with pytest.raises(KeyError, match=r"available: \['other'\]"):
        callback._improved(SimpleNamespace(callback_metrics={"other": torch.tensor(0.0)}))
    with pytest.raises(ValueError, match="needs monitor"):
        HubPublish("org/x", when="best")
