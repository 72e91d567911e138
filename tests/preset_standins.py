"""Command-line overrides that let presets naming real Hub checkpoints run ``--trainer.fast_dev_run`` offline.

Each entry maps a preset to the extra ``zoo fit`` arguments a user would pass to swap the Hub weights for random
tiny components of the same architecture; everything else in the preset runs as shipped. ``tests/test_cli.py``
applies them to every preset that names a Hub checkpoint.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

TINY_SD = {
    "unet": {
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": [32, 32], "layers_per_block": 1,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 32, "norm_num_groups": 8, "attention_head_dim": 4,
    },
    "vae": {
        "block_out_channels": [8, 8], "down_block_types": ["DownEncoderBlock2D"] * 2,
        "up_block_types": ["UpDecoderBlock2D"] * 2, "latent_channels": 4, "norm_num_groups": 8, "sample_size": 16,
    },
    "text_encoder": {
        "vocab_size": 256, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
        "num_attention_heads": 4, "max_position_embeddings": 77, "projection_dim": 32,
    },
}
TINY_CLIP_VISION = {
    "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4, "image_size": 32,
    "patch_size": 8, "projection_dim": 32,
}


def sd15(path: Path) -> list[str]:
    """Tiny SD-1.5-architecture generator, tiny CLIP reward head, short schedule."""
    config = yaml.safe_load(path.read_text())["model"]["init_args"]
    gen = "--model.init_args.generator.init_args"
    args = [
        f"{gen}.configs={json.dumps(TINY_SD)}", f"{gen}.dtype=float32", f"{gen}.resolution=16",
        "--model.init_args.num_steps=4", "--model.init_args.num_chunks=2", "--model.init_args.timestep_fraction=0.5",
        "--model.init_args.train_batch_size=2", "--model.init_args.grad_accum=1",
        "--model.init_args.lag_rollouts=false", "--data.init_args.batch_size=2",
    ]
    reward = {"class_path": config["reward"]["class_path"], "init_args": {"clip_config": TINY_CLIP_VISION, "head_weights": None}}
    args.append(f"--model.init_args.reward={json.dumps(reward)}")
    if config.get("flow_network"):
        flow = {"in_channels": 4, "sample_size": 8, "block_out_channels": [32, 32, 32, 32], "cross_attention_dim": 32}
        flow_config = {"class_path": config["flow_network"]["class_path"], "init_args": flow}
        args.append(f"--model.init_args.flow_network={json.dumps(flow_config)}")
    return args


TINY_DIFFSPLAT = {
    "transformer": {
        "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 10, "out_channels": 8, "num_layers": 1,
        "cross_attention_dim": 16, "caption_channels": 16, "sample_size": 4, "patch_size": 2,
        "norm_type": "ada_norm_single", "norm_elementwise_affine": False, "num_embeds_ada_norm": 1000,
        "use_additional_conditions": False,
    },
    "vae": {
        "in_channels": 12, "out_channels": 12, "latent_channels": 4, "block_out_channels": [8, 8],
        "layers_per_block": 1, "down_block_types": ["DownEncoderBlock2D"] * 2,
        "up_block_types": ["UpDecoderBlock2D"] * 2, "norm_num_groups": 8, "sample_size": 8,
    },
    "text_encoder": {"vocab_size": 64, "d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2},
}
TINY_CLIP_TEXT = {
    "vocab_size": 64, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4,
    "max_position_embeddings": 32, "projection_dim": 32,
}


def tiny_clip_tokenizer(folder: Path | None = None) -> str:
    """A character-level CLIP tokenizer written to ``folder`` (a new temporary one by default), for rewards whose
    tokenizer is a Hub id."""
    from transformers import CLIPTokenizer

    folder = Path(tempfile.mkdtemp(prefix="zoo-tokenizer-")) if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>").save_pretrained(folder)
    return str(folder)


def diffsplat(path: Path) -> list[str]:
    """Tiny DiffSplat-architecture generator (multi-view PixArt, 12-channel VAE, T5), tiny reward models, four
    sampler steps, two inline prompts instead of the caption file."""
    config = yaml.safe_load(path.read_text())["model"]
    algorithm = config["class_path"].rsplit(".", 1)[-1]
    gen = "--model.init_args.generator.init_args"
    args = [
        f"{gen}.configs={json.dumps(TINY_DIFFSPLAT)}", f"{gen}.dtype=float32", f"{gen}.render_size=16",
        f"{gen}.max_text_length=8", "--model.init_args.num_steps=4", "--model.init_args.train_batch_size=1",
        "--model.init_args.grad_accum=1", "--data.init_args.prompt_file=null",
        '--data.init_args.prompts=["a red chair", "a blue car"]', "--data.init_args.batch_size=2",
    ]
    args += {
        "NablaR2D3": ["--model.init_args.num_chunks=2", "--model.init_args.timestep_fraction=0.5",
                      "--model.init_args.lag_rollouts=false"],
        "ReFL": ["--model.init_args.first_step=2"],
    }.get(algorithm, [])
    reward = config["init_args"]["reward"]
    tiny = {
        "AestheticReward": {"clip_config": TINY_CLIP_VISION, "head_weights": None},
        "CLIPScoreReward": {
            "clip_config": {"vision_config": TINY_CLIP_VISION, "text_config": TINY_CLIP_TEXT, "projection_dim": 32},
            "tokenizer": tiny_clip_tokenizer(),
        },
    }.get(reward["class_path"].rsplit(".", 1)[-1])
    if tiny is not None:
        stand_in = {"class_path": reward["class_path"], "init_args": {**reward.get("init_args", {}), **tiny}}
        args.append(f"--model.init_args.reward={json.dumps(stand_in)}")
    return args


def vlm(path: Path) -> list[str]:
    """Tiny random Qwen2-VL of the same architecture (LoRA kept), a two-scene SynthVSI, fp32, short rollouts."""
    config = yaml.safe_load(path.read_text())

    def split(name: str) -> str:
        synth = {"split": name, "num_scenes": 2, "image_size": 56, "num_frames": 4}
        return json.dumps({"class_path": "zoo.tasks.spatial_vqa.SynthVSI", "init_args": synth})

    policy = "--model.init_args.policy.init_args"
    args = [
        f"--data.init_args.train={split('train')}", f"--data.init_args.val={split('eval')}",
        "--data.init_args.batch_size=2", "--data.init_args.eval_batch_size=2", "--trainer.precision=32-true",
        f"{policy}.model=tiny-random", f"{policy}.dtype=float32", f"{policy}.lora_rank=2",
    ]
    if config["model"]["class_path"].endswith("GRPO"):
        args += ["--model.init_args.num_generations=2", "--model.init_args.max_new_tokens=3",
                 "--model.init_args.micro_batch_size=2"]
    return args


def needs_standins(path: Path) -> Callable[[Path], list[str]] | None:
    """The stand-in rule for a preset file, if it names Hub checkpoints."""
    config = yaml.safe_load(path.read_text())
    init = config["model"]["init_args"]
    generator = str(init.get("generator", {}).get("class_path", ""))
    if "StableDiffusionGenerator" in generator:
        return sd15
    if "DiffSplatGenerator" in generator:
        return diffsplat
    if "/" in str(init.get("policy", {}).get("init_args", {}).get("model", "")):
        return vlm
    return None


def standin_args(path: Path) -> list[str]:
    """The overrides for the preset at ``path`` (none for presets that are tiny already)."""
    make = needs_standins(path)
    return make(path) if make is not None else []
