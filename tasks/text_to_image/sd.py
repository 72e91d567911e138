"""Stable Diffusion 1.5 as a :class:`~zoo.diffusion.DiffusionGenerator`: the 2D configuration of Nabla-GFlowNet
(spec §1.4). Loads the UNet, VAE, CLIP text encoder, tokenizer and scheduler config from a Hub id or folder;
``configs`` instead builds the same architecture with random weights (tests, benchmarks), offline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from zoo.diffusion.generator import DiffusionGenerator, byte_token_ids, torch_dtype
from zoo.rewards import Renders

#: SD-1.5's scheduler config (used with random-weight construction; loaded from the model otherwise).
SD15_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


class StableDiffusionGenerator(DiffusionGenerator):
    """Latent text-to-image diffusion (SD-1.5 layout): ε-prediction UNet with cross-attention on CLIP text
    embeddings; ``decode`` runs the VAE and returns one view in ``[0, 1]``.

    Args:
        model: Hub id or local folder in the diffusers layout.
        revision: Hub revision (pin a commit sha for reproducibility).
        dtype: dtype of the frozen weights (``bfloat16`` as in the official runs); LoRA adapters stay fp32.
        resolution: image size in pixels (latents are ``resolution / 8``).
        configs: ``{"unet": ..., "vae": ..., "text_encoder": ...}`` config dicts to build random weights instead of
            loading ``model``; prompts are then tokenized byte-wise (no tokenizer files needed).
        lora_targets: denoiser modules that get LoRA adapters (official: attention projections).
    """

    def __init__(
        self,
        model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5",
        revision: str | None = None,
        dtype: str = "bfloat16",
        resolution: int = 512,
        configs: dict[str, dict[str, Any]] | None = None,
        lora_targets: Sequence[str] = ("to_q", "to_k", "to_v", "to_out.0"),
    ) -> None:
        super().__init__(lora_targets=lora_targets)
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        self.dtype = torch_dtype(dtype)
        if configs is not None:
            self.denoiser = UNet2DConditionModel(**configs["unet"])
            self.vae = AutoencoderKL(**configs["vae"])
            self.text_encoder = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))
            self.tokenizer = None
            self._schedule = dict(SD15_SCHEDULE)
        else:
            where = {"revision": revision}
            self.denoiser = UNet2DConditionModel.from_pretrained(model, subfolder="unet", **where)
            self.vae = AutoencoderKL.from_pretrained(model, subfolder="vae", **where)
            self.text_encoder = CLIPTextModel.from_pretrained(model, subfolder="text_encoder", **where)
            self.tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer", **where)
            self._schedule = dict(DDIMScheduler.load_config(model, subfolder="scheduler", **where))
        for part in (self.denoiser, self.vae, self.text_encoder):
            part.requires_grad_(False).to(self.dtype)
        self.latent_size = resolution // 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.denoiser.config.in_channels, self.latent_size, self.latent_size)

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return self._schedule

    def _token_ids(self, prompts: Sequence[str]) -> torch.Tensor:
        if self.tokenizer is not None:
            ids = self.tokenizer(
                list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
                return_tensors="pt",
            ).input_ids
        else:  # random-weight construction: byte-level ids within the encoder's vocabulary
            config = self.text_encoder.config
            ids, _ = byte_token_ids(prompts, config.max_position_embeddings, config.vocab_size)
        return ids.to(self.text_encoder.device)

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.text_encoder(self._token_ids(prompts))[0]

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        out = self.denoiser(latents.to(self.dtype), timesteps, encoder_hidden_states=condition.to(self.dtype)).sample
        return out.float()

    def decode(self, latents: torch.Tensor, *, generator: torch.Generator | None = None, random_cameras: bool = True) -> Renders:
        images = self.vae.decode(latents.to(self.dtype) / self.vae.config.scaling_factor).sample.float()
        return Renders(images=(images / 2 + 0.5).clamp(0, 1).unsqueeze(1))
