"""A tiny class-conditioned 2D pixel diffusion model and an analytic colour reward: the CPU test bed of the
diffusion alignment algorithms (toy presets, tests). Prompts are colour words; the reward is differentiable in
closed form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import UNet2DModel
from torch import nn

from zoo.algorithms.nabla_r2d3 import FlowNetwork
from zoo.diffusion.generator import DiffusionGenerator
from zoo.rewards import Renders, Reward

#: Prompt vocabulary of the tiny model and the RGB target each word names (class id = index + 1; 0 = no prompt).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
}


def colour_of(prompt: str) -> str | None:
    """The first colour word in ``prompt`` (``None`` if there is none)."""
    for word in prompt.lower().replace(",", " ").split():
        if word in COLOURS:
            return word
    return None


class TinyUNetGenerator(DiffusionGenerator):
    """A ~60 k-parameter class-conditioned ``UNet2DModel`` on ``3 × size × size`` pixels (random weights drawn from
    ``seed``, so it is rebuilt identically from its config). ``decode`` maps x₀ to an image with
    ``(tanh(x₀) + 1)/2`` (smooth, so reward gradients never vanish at a clamp) and returns one view."""

    def __init__(
        self,
        size: int = 8,
        width: int = 16,
        prediction_type: str = "epsilon",
        seed: int = 0,
        lora_targets: Sequence[str] = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "conv_out"),
    ) -> None:
        super().__init__(lora_targets=lora_targets)
        self.size, self._prediction_type = size, prediction_type
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.denoiser = UNet2DModel(
                sample_size=size,
                in_channels=3,
                out_channels=3,
                block_out_channels=(width, 2 * width),
                layers_per_block=1,
                down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                norm_num_groups=8,
                attention_head_dim=8,
                num_class_embeds=len(COLOURS) + 1,
            )
        self.denoiser.requires_grad_(False)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (3, self.size, self.size)

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return {
            "num_train_timesteps": 1000,
            "beta_schedule": "squaredcos_cap_v2",
            "prediction_type": self._prediction_type,
            "clip_sample": False,
            "set_alpha_to_one": False,
            "timestep_spacing": "leading",
            "steps_offset": 1,
        }

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        names = list(COLOURS)
        ids = [0 if colour_of(p) is None else names.index(colour_of(p)) + 1 for p in prompts]
        return torch.tensor(ids, dtype=torch.long, device=self.denoiser.device)

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.denoiser(latents, timesteps, class_labels=condition).sample

    def decode(self, latents: torch.Tensor, *, generator: torch.Generator | None = None, random_cameras: bool = True) -> Renders:
        return Renders(images=((torch.tanh(latents) + 1) / 2).unsqueeze(1))


class ColourReward(Reward):
    """``R = −mean_{views, pixels} ‖image − c(prompt)‖²``: negative squared distance to the RGB colour the prompt
    names (prompts without a colour word target mid-grey). Differentiable, in ``[−3, 0]``."""

    def forward(self, images: torch.Tensor, prompts: Sequence[str], **aux: Any) -> torch.Tensor:
        targets = torch.tensor(
            [COLOURS.get(colour_of(p) or "", (0.5, 0.5, 0.5)) for p in prompts], device=images.device, dtype=images.dtype
        )
        return -((images - targets.view(-1, 1, 3, 1, 1)) ** 2).sum(2).mean((1, 2, 3))


class TinyFlowNetwork(FlowNetwork):
    """Residual flow-score network g_φ(x_t, t, c) of full Nabla-GFlowNet for the tiny generator: a small
    class-conditioned ``UNet2DModel`` whose output convolution starts at zero (spec §1.2 zeroes its bias)."""

    def __init__(self, size: int = 8, width: int = 16, seed: int = 1) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = UNet2DModel(
                sample_size=size,
                in_channels=3,
                out_channels=3,
                block_out_channels=(width, width),
                layers_per_block=1,
                down_block_types=("DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D"),
                norm_num_groups=8,
                num_class_embeds=len(COLOURS) + 1,
            )
        nn.init.zeros_(self.net.conv_out.bias)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.net(latents, timesteps, class_labels=condition).sample
