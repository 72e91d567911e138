"""Saving, publishing and loading releases: ``model.safetensors`` + ``config.yaml`` + ``README.md`` (model card).

``from_pretrained`` accepts a local folder, a registry name (``zoo models``), or a Hub repo id with an optional
revision (``org/name@<40-hex sha>`` or ``revision=``); Hub downloads fetch only the release files through
``huggingface_hub``'s cache, honour ``HF_HUB_OFFLINE`` (a cached pinned revision loads without any request) and
check every file against its content hash. ``push_release`` uploads a release folder as one Hub commit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from zoo.configurable import import_class, instantiate, to_config

if TYPE_CHECKING:
    from zoo.algorithms.base import AlignmentModule

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.yaml"
CARD_NAME = "README.md"
#: Files a release consists of; downloads fetch these and nothing else.
RELEASE_PATTERNS = ["*.safetensors", WEIGHTS_INDEX_NAME, CONFIG_NAME, CARD_NAME]


def save_pretrained(
    module: AlignmentModule,
    save_directory: str | Path,
    *,
    metrics: Mapping[str, float] | None = None,
    run_config: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write a release folder for ``module``; see :meth:`AlignmentModule.save_pretrained`.

    ``repo_id`` (where the release is going to be published) is only used in the card's usage snippet.
    """
    from huggingface_hub import save_torch_state_dict

    from zoo import __version__
    from zoo.cards import build_model_card

    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu") for k, v in module.state_dict_to_save().items()}
    save_torch_state_dict(
        state, directory, metadata={"format": "pt", "alignzoo_version": __version__}, max_shard_size="5GB"
    )
    config = {k: v for k, v in (run_config or {}).items() if k != "model"}
    config["model"] = to_config(module, _where="model")
    text = f"# alignzoo=={__version__}\n" + yaml.safe_dump(config, sort_keys=False)
    (directory / CONFIG_NAME).write_text(text)
    build_model_card(module, metrics=metrics, run_config=config, repo_id=repo_id).save(directory / CARD_NAME)
    return directory


def split_repo_revision(source: str, revision: str | None = None) -> tuple[str, str | None]:
    """``"org/name@rev"`` → ``("org/name", "rev")``; an explicit ``revision`` must not contradict the suffix."""
    repo_id, sep, suffix = source.partition("@")
    if sep:
        if revision is not None and revision != suffix:
            raise ValueError(f"{source!r} names revision {suffix!r} but revision={revision!r} was also given")
        revision = suffix
    return repo_id, revision


def resolve_release(
    source: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> Path:
    """Return a verified local folder holding the release ``source``.

    A local folder is used as is. A registry name resolves to its shipped folder (checked against the pinned
    content digest) or to its Hub repo at the pinned commit. A Hub id downloads only the release files into the
    cache (or finds them there: offline, a cached revision needs no request) and checks them with
    :func:`verify_snapshot`. The folder of a Hub release is ``.../snapshots/<commit sha>``.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    source = str(source)
    from zoo import registry

    release = registry.find(source)
    if release is not None:
        if release.local is not None:
            if revision is not None and revision != release.revision:
                raise ValueError(f"release {source!r} ships in the package at {release.revision}, not {revision}")
            return release.verified_local_path()
        repo_id, revision = release.repo_id, revision or release.revision
    else:
        if source.count("/") != 1 or source.startswith(("/", ".")):
            names = ", ".join(r.name for r in registry.releases()) or "(none yet)"
            raise FileNotFoundError(
                f"{source!r} is neither a local folder, a registry name ({names}) nor a Hub repo id 'org/name[@rev]'"
            )
        repo_id, revision = split_repo_revision(source, revision)
    from huggingface_hub import snapshot_download

    from zoo import __version__

    folder = Path(
        snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=RELEASE_PATTERNS,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            endpoint=endpoint,
            library_name="alignzoo",
            library_version=__version__,
        )
    )
    if revision is not None and registry.is_sha(revision) and folder.name != revision:
        raise registry.ReleaseVerificationError(f"{repo_id}: asked for commit {revision}, got snapshot {folder}")
    verify_snapshot(folder, repo_id=repo_id)
    return folder


def verify_snapshot(folder: Path, *, repo_id: str) -> None:
    """Check each release file of a Hub cache snapshot against its content hash.

    The cache stores a file under ``blobs/<etag>``, and the Hub's etag of a file is its content hash: the git blob
    sha1 for regular files, the sha256 for LFS files. A file whose bytes do not hash to its blob name was damaged
    after download (or by an interrupted one) and is refused.
    """
    from zoo.registry import ReleaseVerificationError, git_blob_sha1, release_files

    files = release_files(folder)
    if not any(f.name.endswith(".safetensors") for f in files):
        raise FileNotFoundError(f"{repo_id}: {folder} holds no *.safetensors weights; is {repo_id} an alignzoo release?")
    for file in files:
        if not file.is_symlink():  # the cache copies instead of linking where symlinks are unsupported
            warnings.warn(f"{file} is not a link into the Hub cache's blobs/; its content hash cannot be checked")
            continue
        expected = Path(os.path.realpath(file)).name
        data = file.read_bytes()
        actual = hashlib.sha256(data).hexdigest() if len(expected) == 64 else git_blob_sha1(data)
        if actual != expected:
            raise ReleaseVerificationError(
                f"{repo_id}: cached {file.name} is damaged (content hash {actual}, expected {expected}). Delete "
                f"{folder.parent.parent} and download the release again."
            )


@dataclass(frozen=True)
class PushResult:
    """Where a release was published."""

    repo_id: str
    commit_sha: str
    commit_url: str
    pr_url: str | None = None
    tag: str | None = None

    @property
    def pinned(self) -> str:
        """``org/name@<sha>``: what ``zoo.from_pretrained`` and the registry take."""
        return f"{self.repo_id}@{self.commit_sha}"


class PushError(RuntimeError):
    """Publishing a release failed; the local release folder is intact and can be pushed again."""


def push_command(folder: str | Path, repo_id: str, *, branch: str | None = None, tag: str | None = None) -> str:
    """The ``zoo push`` command line that publishes ``folder`` again."""
    return " ".join(
        ["zoo push", str(folder), repo_id, *(["--branch", branch] if branch else []), *(["--tag", tag] if tag else [])]
    )


def _is_transient(err: Exception) -> bool:
    """Server errors, rate limits and dropped connections are retried; anything else (auth, bad request) is not."""
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import httpx

    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else None
        return status is None or status >= 500 or status == 429
    return isinstance(err, (httpx.TransportError, ConnectionError, TimeoutError))


def push_release(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = True,
    branch: str | None = None,
    tag: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    retries: int = 3,
    retry_wait_s: float = 2.0,
) -> PushResult:
    """Publish a release folder to the Hub as ONE commit: ``create_repo(exist_ok=True)`` → (``create_branch``) →
    ``create_commit`` of the release files → (``create_tag`` on that commit).

    Transient failures are retried ``retries`` times, waiting ``retry_wait_s`` and doubling it each time. On final
    failure a :class:`PushError` names the repo and the ``zoo push`` command that retries; the folder is untouched.
    ``private`` only applies when the repo is created. ``branch`` (created from ``main`` if missing) receives the
    commit; ``create_pr`` opens a pull request instead of committing to the branch.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    from zoo import __version__
    from zoo.registry import release_files

    folder = Path(folder)
    read_config(folder)  # refuse anything that is not a release before talking to the Hub
    files = release_files(folder)
    if not any(f.name.endswith(".safetensors") for f in files):
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME}; write the release with save_pretrained first")
    api = HfApi(endpoint=endpoint, token=token, library_name="alignzoo", library_version=__version__)
    message = commit_message or f"Release {folder.name} (alignzoo {__version__})"
    wait, attempt = retry_wait_s, 0
    while True:
        attempt += 1
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if branch is not None:
                api.create_branch(repo_id, branch=branch, exist_ok=True)
            operations = [CommitOperationAdd(path_in_repo=f.name, path_or_fileobj=f) for f in files]
            info = api.create_commit(
                repo_id, operations=operations, commit_message=message, revision=branch, create_pr=create_pr
            )
            if tag is not None:
                api.create_tag(repo_id, tag=tag, revision=info.oid, tag_message=message)
            return PushResult(repo_id, info.oid, info.commit_url, info.pr_url, tag)
        except Exception as err:  # noqa: BLE001 - classified below; non-transient errors end the loop too
            if attempt > retries or not _is_transient(err):
                raise PushError(
                    f"publishing {folder} to the Hub repo {repo_id} failed after {attempt} attempt(s): "
                    f"{type(err).__name__}: {err}\nThe release is saved in {folder}. To retry, run:\n"
                    f"  {push_command(folder, repo_id, branch=branch, tag=tag)}"
                ) from err
            log.warning("publishing to %s failed (%s); retrying in %.1f s", repo_id, err, wait)
            time.sleep(wait)
            wait *= 2


def read_config(directory: Path) -> dict[str, Any]:
    """The ``model`` section of a release's ``config.yaml``."""
    file = directory / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"{directory} is not an alignzoo release: it has no {CONFIG_NAME}")
    config = yaml.safe_load(file.read_text()) or {}
    if not isinstance(config.get("model"), dict) or "class_path" not in config["model"]:
        raise ValueError(f"{file} has no 'model: {{class_path: ..., init_args: ...}}' section")
    return config["model"]


def from_pretrained(
    source: str | Path,
    *,
    revision: str | None = None,
    expected_class: type | None = None,
    map_location: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> AlignmentModule:
    """Rebuild a released module with its weights.

    ``source`` is a local release folder, a registry name (see ``zoo models``), or ``"org/name"`` /
    ``"org/name@<revision>"`` on the Hub, resolved and verified by :func:`resolve_release` (only the release files
    are downloaded; offline, the cache answers). The class named in ``config.yaml`` is constructed from its recorded
    init args (it must be importable: a user's subclass is found the same way LightningCLI finds it) and the
    safetensors weights are loaded into it; any tensor the release should carry but does not is an error.
    """
    from huggingface_hub import load_torch_model

    from zoo.algorithms.base import AlignmentModule

    directory = resolve_release(
        source,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
        endpoint=endpoint,
    )
    model_config = read_config(directory)
    cls = import_class(model_config["class_path"])
    required = expected_class or AlignmentModule
    if not (isinstance(cls, type) and issubclass(cls, required)):
        raise TypeError(f"{directory}: {model_config['class_path']} is not a {required.__module__}.{required.__name__}")
    module = instantiate(model_config)
    if not (directory / WEIGHTS_NAME).is_file() and not (directory / WEIGHTS_INDEX_NAME).is_file():
        raise FileNotFoundError(f"{directory} has no {WEIGHTS_NAME}")
    result = load_torch_model(module, directory, strict=False, map_location=map_location)
    if result.unexpected_keys:
        raise ValueError(f"{directory}: weights {sorted(result.unexpected_keys)[:5]}... do not belong to {cls.__name__}")
    missing = set(result.missing_keys) & set(module.state_dict_to_save())
    if missing:
        raise ValueError(f"{directory}: the release lacks weights {sorted(missing)[:5]} that {cls.__name__} saves")
    return module.to(map_location)

