"""The 3D alignment demo pieces: Nabla-R2D3 on the splat generator with the turntable media callback, and the
shipped toy prior."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from zoo.algorithms.nabla_r2d3 import NablaR2D3
from zoo.tasks.text_to_3d.generators import ToySplatGenerator
from zoo.tasks.text_to_3d.rewards import TargetColourReward
from zoo.tasks.text_to_image.data import PromptDataModule
from zoo.callbacks.media import TurntableMedia, turntable_grid


def test_turntable_grid_layout():
    images = torch.arange(2 * 3 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 3, 2, 2)
    grid = turntable_grid(images)
    assert grid.shape == (4, 6, 3)
    torch.testing.assert_close(grid[2:, 4:].permute(2, 0, 1), images[1, 2])


@pytest.mark.slow  # ~1-2 minutes on a shared CPU; the toy-nabla-r2d3 preset's fast_dev_run (test_cli) covers the wiring
def test_nabla_r2d3_on_the_splat_generator_writes_the_media_and_release(tmp_path):
    torch.manual_seed(0)
    generator = ToySplatGenerator(prior=None, render_size=16, num_views=2)
    module = NablaR2D3(generator, TargetColourReward(), num_steps=4, guidance_scale=2.0, timestep_fraction=0.5,
                       train_batch_size=2, reward_scale=100.0, reg_scale=10.0)
    media = TurntableMedia(output_dir=str(tmp_path / "out"), prompts=["a red box", "a blue torus"], turntable_views=3, size=16)
    data = PromptDataModule(prompts=["a red box", "a blue torus"], batch_size=2, rounds_per_epoch=3)
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      callbacks=[media], default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    out = tmp_path / "out"
    for name in ("reward_curve.png", "turntable_before.png", "turntable_after.png", "rewards.csv"):
        assert (out / name).stat().st_size > 0
    assert len(media.rewards) == 3
    # grids: 2 samples × 16 px high, 3 views × 16 px wide
    import matplotlib.image

    assert matplotlib.image.imread(out / "turntable_after.png").shape[:2] == (32, 48)
    reloaded = NablaR2D3.from_pretrained(out / "aligned")
    lora = {k: v for k, v in module.state_dict().items() if "lora_" in k}
    assert lora and all(torch.equal(reloaded.state_dict()[k], v) for k, v in lora.items())
    card = (out / "aligned" / "README.md").read_text()
    assert "eval/reward_after" in card and "eval/reward_before" in card


SHIPPED = Path(__file__).resolve().parents[1] / "zoo" / "pretrained" / "toy-splat-prior"


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="the toy prior is not shipped in this checkout")
def test_shipped_toy_prior_loads_by_name():
    generator = ToySplatGenerator()  # prior="toy-splat-prior": the folder in zoo/pretrained
    assert generator.prediction_type == "v_prediction"
    assert sum(p.numel() for p in generator.denoiser.parameters()) > 1_000_000
    assert (SHIPPED / "model.safetensors").stat().st_size < 8_000_000
    assert "Toy splat prior" in (SHIPPED / "README.md").read_text()
