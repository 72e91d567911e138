"""The ``zoo`` command: LightningCLI (``fit``/``validate``/``test``/``predict``) plus ``configs``, ``models`` and
``pull``.

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
    "released checkpoints, `zoo pull NAME|ORG/REPO[@REV]` downloads one. --config accepts a preset name."
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
    parser = argparse.ArgumentParser(prog="zoo pull", description="Download a release into the Hub cache.")
    parser.add_argument("source", help="registry name, or ORG/REPO[@REVISION]")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--endpoint", default=None, help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    ns = parser.parse_args(argv)
    from zoo.hub import resolve_release

    print(resolve_release(ns.source, revision=ns.revision, endpoint=ns.endpoint))
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"configs": _configs, "models": _models, "pull": _pull}


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script and ``python -m zoo``."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in COMMANDS:
        try:
            return COMMANDS[argv[0]](argv[1:])
        except (FileNotFoundError, ValueError) as err:
            print(f"zoo {argv[0]}: error: {err}", file=sys.stderr)
            return 2
    try:
        cli(args)
    except UnknownPresetError as err:
        print(f"zoo: error: {err}", file=sys.stderr)
        return 2
    return 0
