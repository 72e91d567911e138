"""Mixed precision on CUDA: bf16 frozen weights, fp32 LoRA adapters and flow network, fp32 rewards (spec §7).
Skipped where no CUDA GPU is present."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from zoo.algorithms.nabla_r2d3 import NablaR2D3, UNetFlowNetwork
from zoo.tasks.text_to_image.data import PromptDataModule
from zoo.tasks.text_to_image.sd import StableDiffusionGenerator
from zoo.tasks.text_to_image.tiny import ColourReward

from preset_standins import TINY_SD


@pytest.mark.gpu
def test_bf16_generator_trains_fp32_adapters_on_cuda(tmp_path):
    torch.manual_seed(0)
    generator = StableDiffusionGenerator(dtype="bfloat16", resolution=16, configs=TINY_SD)
    flow = UNetFlowNetwork(in_channels=4, sample_size=8, block_out_channels=(32, 32, 32, 32), cross_attention_dim=32)
    module = NablaR2D3(
        generator, ColourReward(), num_steps=4, num_chunks=2, timestep_fraction=0.5, train_batch_size=2,
        lag_rollouts=False, flow_network=flow, reward_scale=1e3,
    )
    before = [p.detach().clone() for p in module.lora_parameters]
    trainer = pl.Trainer(
        max_epochs=1, accelerator="gpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, limit_val_batches=0, default_root_dir=tmp_path,
    )
    trainer.fit(module, PromptDataModule(prompts=["red", "blue"], batch_size=2, rounds_per_epoch=2))
    assert all(p.dtype == torch.float32 and p.is_cuda and torch.isfinite(p).all() for p in module.lora_parameters)
    assert any(not torch.equal(a.cpu(), b.cpu()) for a, b in zip(before, module.lora_parameters))
    frozen = [p for n, p in module.generator.denoiser.named_parameters() if "lora_" not in n]
    assert all(p.dtype == torch.bfloat16 for p in frozen)
    assert module.skipped_nonfinite == 0
