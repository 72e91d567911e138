"""The ``zoo`` command: LightningCLI subcommands, presets by name, and zoo's own commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from preset_standins import standin_args

from zoo.cli import main
from zoo.presets import presets

TESTS = Path(__file__).parent
PRESETS = sorted(presets())

TINY_CONFIG = {
    "model": {
        "class_path": "factories.TinyRewardRegression",
        "init_args": {"net": {"class_path": "factories.TinyNet", "init_args": {"width": 8}}, "target": 0.3},
    },
    "data": {"class_path": "factories.RandomVectors", "init_args": {"n": 16}},
    "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False},
}


def _zoo(*args: str) -> subprocess.CompletedProcess:
    """Run the installed console script, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    exe = Path(sys.executable).with_name("zoo")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


def test_console_script_help_lists_subcommands_and_own_commands():
    out = _zoo("--help")
    assert out.returncode == 0, out.stderr
    for word in ("fit", "validate", "test", "predict", "zoo configs", "zoo models", "zoo pull"):
        assert word in out.stdout


def test_python_dash_m_zoo_version():
    out = subprocess.run([sys.executable, "-m", "zoo", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "alignzoo" in out.stdout


def test_configs_lists_every_preset_and_prints_one(capsys):
    assert main(["configs"]) == 0
    listing = capsys.readouterr().out
    for name in PRESETS:
        assert name in listing
    if PRESETS:
        assert main(["configs", PRESETS[0]]) == 0
        assert capsys.readouterr().out == presets()[PRESETS[0]].read_text()


def test_unknown_preset_is_a_clear_error(capsys):
    assert main(["fit", "--config", "no-such-preset"]) == 2
    err = capsys.readouterr().err
    assert "'no-such-preset' is neither a config file nor a preset" in err
    for name in PRESETS:
        assert name in err


def test_models_lists_registry(capsys):
    from zoo.registry import releases

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for release in releases():
        assert release.name in out


def test_fit_from_a_config_file_saves_resolved_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    assert main(["fit", "--config", str(config), "--trainer.max_steps=3", f"--trainer.default_root_dir={tmp_path}"]) == 0
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["seed_everything"] == 0
    assert saved["model"]["class_path"] == "factories.TinyRewardRegression"


def test_fit_fast_dev_run_from_the_shell(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    out = _zoo("fit", "--config", str(config), "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_print_config(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", name, "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert "class_path" in printed["model"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_fast_dev_run(name, tmp_path, monkeypatch):
    """Every preset trains one step through the real entry point; presets naming Hub checkpoints get the tiny
    stand-ins of ``preset_standins.py`` on the command line (nothing can be downloaded here)."""
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", name, "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}"]
    args += ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto"]  # GPU presets, here
    assert main([*args, *standin_args(presets()[name])]) == 0
