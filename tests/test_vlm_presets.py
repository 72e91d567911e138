"""The real-recipe VLM presets carry the paper's values. (Every preset's ``--print_config`` and one-step
``fast_dev_run`` through the real CLI, with tiny stand-ins for Hub models, are in ``tests/test_cli.py``.)"""

from __future__ import annotations

import yaml

from zoo.presets import presets


def test_every_vlm_preset_is_shipped():
    assert {"toy-vsgrpo", "toy-sft-synthvsi", "vsgrpo-qwen2vl-2b", "vsgrpo-qwen2vl-7b", "sft-qwen2vl-2b",
            "dpo-qwen2vl-2b"} <= set(presets())


def test_real_recipe_values_are_the_papers():
    """vsGRPO (arXiv 2504.00883 §4): LoRA, lr 1e-5 (2B) / 5e-6 (7B), G = 14, temperature 1, β = 1e-4, vanilla."""
    for name, lr, model in (("vsgrpo-qwen2vl-2b", 1e-5, "Qwen/Qwen2-VL-2B-Instruct"),
                            ("vsgrpo-qwen2vl-7b", 5e-6, "Qwen/Qwen2-VL-7B-Instruct")):
        config = yaml.safe_load(presets()[name].read_text())
        init = config["model"]["init_args"]
        assert init["policy"]["init_args"]["model"] == model and init["policy"]["init_args"]["lora_rank"] > 0
        assert (init["lr"], init["num_generations"], init["temperature"], init["beta"]) == (lr, 14, 1.0, 1e-4)
        assert init["reward_funcs"][0]["init_args"]["mode"] == "vanilla"
        assert config["data"]["init_args"]["train_prompt_mode"] == "vanilla"
        assert config["trainer"]["strategy"] in ("ddp", "fsdp")
