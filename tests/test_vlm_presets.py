"""The VLM presets through the real CLI, offline: Hub models and SynthVSI splits replaced by tiny stand-ins on the
command line (the way a user overrides a preset), everything else as written.

The toy presets are shipped (``tasks/spatial_vqa/configs``); the real-recipe GPU presets wait in
``benchmarks/grpo_presets`` (see its README) and are exercised here by path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zoo.cli import main
from zoo.presets import presets

GPU_PRESET_DIR = Path(__file__).parents[1] / "benchmarks" / "grpo_presets"
PRESET_FILES = {
    **{name: path for name, path in presets().items() if path.parent.parent.name == "spatial_vqa"},
    **{path.stem: path for path in sorted(GPU_PRESET_DIR.glob("*.yaml"))},
}
VLM_PRESETS = sorted(PRESET_FILES)
#: Run by default: one preset per algorithm family; the other real-recipe presets differ only in values.
DEFAULT_RUN = {"toy-vsgrpo", "toy-sft-synthvsi", "vsgrpo-qwen2vl-2b", "dpo-qwen2vl-2b"}


def _tiny_data(tmp_path) -> list[str]:
    split = lambda name: json.dumps({  # noqa: E731
        "class_path": "zoo.tasks.spatial_vqa.SynthVSI",
        "init_args": {"split": name, "num_scenes": 2, "image_size": 56, "num_frames": 4, "cache_dir": str(tmp_path / "synthvsi")},
    })
    return [f"--data.init_args.train={split('train')}", f"--data.init_args.val={split('eval')}",
            "--data.init_args.batch_size=2", "--data.init_args.eval_batch_size=2"]


def _stand_ins(name: str, tmp_path) -> list[str]:
    config = yaml.safe_load(PRESET_FILES[name].read_text())
    args = _tiny_data(tmp_path) + ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto",
                                   "--trainer.precision=32-true"]
    policy = config["model"]["init_args"]["policy"]["init_args"]
    if "/" in policy["model"]:  # a Hub checkpoint: a tiny random model of the same architecture instead
        args += ["--model.init_args.policy.init_args.model=tiny-random", "--model.init_args.policy.init_args.dtype=float32",
                 "--model.init_args.policy.init_args.lora_rank=2"]
    if config["model"]["class_path"].endswith("GRPO"):
        args += ["--model.init_args.num_generations=2", "--model.init_args.max_new_tokens=3",
                 "--model.init_args.micro_batch_size=2"]
    return args


def test_every_vlm_preset_is_listed():
    assert {"toy-vsgrpo", "toy-sft-synthvsi", "vsgrpo-qwen2vl-2b", "vsgrpo-qwen2vl-7b", "sft-qwen2vl-2b",
            "dpo-qwen2vl-2b"} <= set(VLM_PRESETS)


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_vlm_preset_print_config(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(PRESET_FILES[name]), "--print_config"])
    assert exit_info.value.code == 0
    assert "class_path" in yaml.safe_load(capsys.readouterr().out)["model"]


@pytest.mark.parametrize("name", [n if n in DEFAULT_RUN else pytest.param(n, marks=pytest.mark.slow) for n in VLM_PRESETS])
def test_vlm_preset_fast_dev_run_with_tiny_stand_ins(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(PRESET_FILES[name]), "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}"]
    assert main(args + _stand_ins(name, tmp_path)) == 0


def test_real_recipe_values_are_the_papers():
    """vsGRPO (arXiv 2504.00883 §4): LoRA, lr 1e-5 (2B) / 5e-6 (7B), G = 14, temperature 1, β = 1e-4, vanilla."""
    for name, lr, model in (("vsgrpo-qwen2vl-2b", 1e-5, "Qwen/Qwen2-VL-2B-Instruct"),
                            ("vsgrpo-qwen2vl-7b", 5e-6, "Qwen/Qwen2-VL-7B-Instruct")):
        config = yaml.safe_load(PRESET_FILES[name].read_text())
        init = config["model"]["init_args"]
        assert init["policy"]["init_args"]["model"] == model and init["policy"]["init_args"]["lora_rank"] > 0
        assert (init["lr"], init["num_generations"], init["temperature"], init["beta"]) == (lr, 14, 1.0, 1e-4)
        assert init["reward_funcs"][0]["init_args"]["mode"] == "vanilla"
        assert config["data"]["init_args"]["train_prompt_mode"] == "vanilla"
        assert config["trainer"]["strategy"] in ("ddp", "fsdp")
