"""The Stable Diffusion 1.5 presets through the real CLI, offline: Hub weights replaced on the command line by
random tiny components of the same architecture (the way a user overrides a preset), everything else as shipped."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from zoo.cli import main
from zoo.presets import presets

SD_PRESETS = sorted(
    name for name, path in presets().items()
    if path.parent.parent.name == "text_to_image" and "StableDiffusionGenerator" in path.read_text()
)

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


@pytest.fixture(autouse=True)
def _one_thread():
    """The shared CPU box is oversubscribed; intra-op threads make tiny models ~25x slower there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_sd15_presets_exist():
    assert "sd15-nabla-gflownet-aesthetic" in SD_PRESETS


@pytest.mark.parametrize("name", SD_PRESETS)
def test_sd15_preset_fast_dev_run_with_tiny_stand_ins(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load(presets()[name].read_text())["model"]["init_args"]
    gen = "--model.init_args.generator.init_args"
    args = [
        "fit", "--config", name, "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}",
        "--trainer.accelerator=cpu", f"{gen}.configs={json.dumps(TINY_SD)}", f"{gen}.dtype=float32",
        f"{gen}.resolution=16",
        "--model.init_args.num_steps=4", "--model.init_args.num_chunks=2", "--model.init_args.timestep_fraction=0.5",
        "--model.init_args.train_batch_size=2", "--model.init_args.grad_accum=1",
        "--model.init_args.lag_rollouts=false", "--data.init_args.batch_size=2",
    ]
    reward = {"class_path": config["reward"]["class_path"], "init_args": {"clip_config": TINY_CLIP_VISION, "head_weights": None}}
    args.append(f"--model.init_args.reward={json.dumps(reward)}")
    if config.get("flow_network"):
        flow = {"in_channels": 4, "sample_size": 8, "block_out_channels": [32, 32, 32, 32], "cross_attention_dim": 32}
        args.append(f"--model.init_args.flow_network={json.dumps({'class_path': config['flow_network']['class_path'], 'init_args': flow})}")
    assert main(args) == 0
