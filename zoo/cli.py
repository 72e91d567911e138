"""The ``zoo`` command: LightningCLI (``fit``/``validate``/``test``/``predict``) plus ``configs``, ``models``,
``pull`` and ``push``.

``--config`` takes a file or the name of a preset shipped with the package (``zoo configs`` lists them)::

    zoo fit --config toy-nabla-r2d3
    zoo fit --config toy-vsgrpo --trainer.max_steps=50 --print_config
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI

from zoo import __version__
from zoo.algorithms.base import AlignmentModule
from zoo.presets import UnknownPresetError, description, presets, resolve_preset

EPILOG = (
    "zoo's own commands: `zoo configs [NAME]` lists the shipped presets or prints one, `zoo models` lists "
    "released checkpoints, `zoo pull NAME|ORG/REPO[@REV]` downloads one, `zoo push DIR ORG/REPO` publishes a release "
    "folder. --config accepts a preset name."
)


class ZooCLI(LightningCLI):
    """LightningCLI with the zoo's conventions: any ``AlignmentModule`` / ``LightningDataModule`` subclass by
    ``class_path``, seed 0 by default (written back into the saved config), ``config.yaml`` overwritten per run."""


def resolve_config_args(args: Sequence[str]) -> list[str]:
    """Replace preset names given to ``-c``/``--config`` by their packaged file paths."""
    out: list[str] = []
    expect_value = False
    for arg in args:
        if expect_value:
            out.append(str(resolve_preset(arg)))
            expect_value = False
        elif arg in ("-c", "--config"):
            out.append(arg)
            expect_value = True
        elif arg.startswith("--config="):
            out.append("--config=" + str(resolve_preset(arg.split("=", 1)[1])))
        else:
            out.append(arg)
    return out


def cli(args: Sequence[str] | None = None, *, run: bool = True) -> ZooCLI:
    """Build (and by default run) the LightningCLI on ``args`` (``sys.argv[1:]`` when ``None``)."""
    if args is None:  # run as a script: LightningCLI reads sys.argv itself (and warns if given both)
        sys.argv[1:] = resolve_config_args(sys.argv[1:])
    else:
        args = resolve_config_args(args)
    return ZooCLI(
        AlignmentModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"version": f"alignzoo {__version__}", "epilog": EPILOG},
        args=args,
        run=run,
    )


def _configs(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo configs", description="List the shipped presets, or print one.")
    parser.add_argument("name", nargs="?", help="preset to print")
    ns = parser.parse_args(argv)
    if ns.name:
        sys.stdout.write(resolve_preset(ns.name).read_text())
        return 0
    found = presets()
    if not found:
        print("no presets installed")
        return 0
    width = max(map(len, found))
    for name, path in found.items():
        task = path.parent.parent.name
        print(f"{name:<{width}}  {task:<12}  {description(path)}")
    return 0


def _models(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(prog="zoo models", description="List released checkpoints.").parse_args(argv)
    from zoo.registry import releases

    found = releases()
    if not found:
        print("no released checkpoints yet")
        return 0
    for r in found:
        where = f"shipped ({r.local})" if r.local else f"{r.repo_id}@{r.revision[:12]}"
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in r.metrics.items())
        print(f"{r.name}  {r.algorithm}  {r.task}  {where}  {metrics}")
    return 0


def _pull(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="zoo pull",
        description="Download a release (only its files) into the Hugging Face cache, verify it, print its folder. "
        "With HF_HUB_OFFLINE=1 or --offline the cache is used without any request.",
    )
    parser.add_argument("source", help="registry name (see `zoo models`), or ORG/REPO[@REVISION]")
    parser.add_argument("--revision", default=None, help="branch, tag or commit sha (default: the pinned one, or main)")
    parser.add_argument("--endpoint", default=None, help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--offline", action="store_true", help="use the local cache only")
    ns = parser.parse_args(argv)
    from zoo.hub import resolve_release

    folder = resolve_release(ns.source, revision=ns.revision, endpoint=ns.endpoint, local_files_only=ns.offline)
    print(folder)
    return 0


def _push(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="zoo push",
        description="Publish a release folder (written by save_pretrained or HubPublish) to a Hub repo as one "
        "commit, creating the repo if needed. Prints ORG/REPO@<commit sha>, the pinned id to load or register.",
    )
    parser.add_argument("folder", help="release folder: model.safetensors, config.yaml, README.md")
    parser.add_argument("repo_id", help="ORG/REPO")
    parser.add_argument("--branch", default=None, help="commit to this branch (created from main if missing)")
    parser.add_argument("--tag", default=None, help="tag the release commit")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--public", action="store_true", help="create the repo public (default: private)")
    parser.add_argument("--message", default=None, help="commit message")
    parser.add_argument("--endpoint", default=None, help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--retries", type=int, default=3, help="retries after transient failures (default 3)")
    ns = parser.parse_args(argv)
    from zoo.hub import PushError, push_release

    try:
        result = push_release(
            ns.folder,
            ns.repo_id,
            private=not ns.public,
            branch=ns.branch,
            tag=ns.tag,
            create_pr=ns.create_pr,
            commit_message=ns.message,
            endpoint=ns.endpoint,
            retries=ns.retries,
        )
    except PushError as err:
        print(f"zoo push: error: {err}", file=sys.stderr)
        return 1
    print(result.pinned)
    print(result.pr_url or result.commit_url)
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "configs": _configs,
    "models": _models,
    "pull": _pull,
    "push": _push,
}


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script and ``python -m zoo``."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in COMMANDS:
        try:
            return COMMANDS[argv[0]](argv[1:])
        except (OSError, ValueError) as err:  # missing files, Hub/HTTP errors (OSErrors), bad names or revisions
            print(f"zoo {argv[0]}: error: {err}", file=sys.stderr)
            return 2
    try:
        cli(args)
    except UnknownPresetError as err:
        print(f"zoo: error: {err}", file=sys.stderr)
        return 2
    return 0
