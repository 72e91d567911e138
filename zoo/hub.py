"""Saving and loading releases: ``model.safetensors`` + ``config.yaml`` + ``README.md`` (model card).

``from_pretrained`` accepts a local folder, a registry name (``zoo models``), or a Hub repo id with an optional
revision (``org/name@<40-hex sha>`` or ``revision=``); Hub downloads go through ``huggingface_hub``'s cache and
honour ``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from zoo.configurable import import_class, instantiate, to_config

if TYPE_CHECKING:
    from zoo.algorithms.base import AlignmentModule

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
) -> Path:
    """Write a release folder for ``module``; see :meth:`AlignmentModule.save_pretrained`."""
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
    build_model_card(module, metrics=metrics).save(directory / CARD_NAME)
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
    """Return a local folder holding the release ``source`` (downloading only the release files if needed)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    source = str(source)
    from zoo import registry

    release = registry.find(source)
    if release is not None:
        if release.local is not None:
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

    folder = snapshot_download(
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
    return Path(folder)


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
    ``"org/name@<revision>"`` on the Hub. The class named in ``config.yaml`` is constructed from its recorded
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

