"""DiffSplat-PixArt-Σ (Lin et al. 2025) as a :class:`~zoo.diffusion.DiffusionGenerator`: the 3D-native base model of
Nabla-R2D3 (spec §2.1, §2.2, §2.5).

* **Denoiser** — PixArt-Σ XL-2 whose self-attention runs jointly over the tokens of the ``V = 4`` views of each
  object (DiffSplat's ``PixArtTransformerMV2DModel``: diffusers' ``PixArtTransformer2DModel`` with the
  :class:`MultiViewSelfAttention` processor on every block's ``attn1``; same parameters, same names). Input per
  view: 4 latent channels + 6 Plücker channels of the fixed input camera; output 8 channels, the first 4 are ε.
  Text: T5 embeddings (max 300 tokens) with their attention mask; the unconditional prompt is ``""``.
* **Decode** — the GS-VAE (SDXL fp16-fix VAE with 12-channel ``conv_in``/``conv_out``) turns each view latent
  (``z / scaling_factor + shift_factor``) into a 12 × 256 × 256 splatter image, clamped to ``[-1, 1]``; the pixels
  become 3D Gaussians along the input-camera rays (camera depth ``1.4 + d``, scales in ``[0.0005, 0.02]``, see
  :data:`~zoo.splat.gaussians.DIFFSPLAT_SCALE_RANGE`), rendered from ``num_views`` cameras on a white background
  (``gsplat`` on CUDA when installed, the tiled torch renderer otherwise).

Weights come from the Hub (``chenguolin/DiffSplat`` in the official layout ``<run>/checkpoints/<iter>/...``), or
``configs`` builds every part with random weights: tiny ones in tests, :data:`REAL_SIZE` for benchmarks.
The Hub text encoder's sentencepiece tokenizer needs ``pip install 'alignzoo[diffsplat]'``.

Both pixel grids of the official code are reproduced: splatter pixels are unprojected at ``j / (W − 1)`` as
``geo_util.unproject_depth`` does (not at pixel centres), and the Plücker conditioning, which the network was
trained on, keeps its off-centre quirk (:func:`diffsplat_plucker`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, PixArtTransformer2DModel
from diffusers.models.attention_processor import Attention

from zoo.diffusion.generator import byte_token_ids, torch_dtype
from zoo.rewards import Renders
from zoo.splat.cameras import (
    CODE_JITTER, DIFFSPLAT_ELEVATION_DEG, DIFFSPLAT_FOCAL, DIFFSPLAT_RADIUS, Cameras, input_cameras, pixel_rays,
    sample_orbit_cameras,
)
from zoo.splat.gaussians import DIFFSPLAT_SCALE_RANGE, Gaussians, splatter_to_gaussians
from zoo.tasks.text_to_3d.generators import SplatGenerator

#: PixArt-Σ's training noise schedule (``pixart_sigma_sdxlvae_T5_diffusers/scheduler``); the sampler (20-step
#: first-order SDE-DPM-Solver++ in the official runs) is chosen by the algorithm.
PIXART_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "timestep_spacing": "linspace",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
}
#: Architecture of the released DiffSplat-PixArt-Σ at 256 px with random weights (benchmarks): transformer
#: (``sample_size`` 32 = 256 / 8, 4 + 6 input channels), GS-VAE (SDXL VAE, 12 channels in and out) and a
#: one-layer T5 stand-in with T5-XXL's width (prompt encoding is not what a benchmark of the alignment step times).
REAL_SIZE: dict[str, dict[str, Any]] = {
    "transformer": {
        "num_attention_heads": 16, "attention_head_dim": 72, "in_channels": 10, "out_channels": 8, "num_layers": 28,
        "cross_attention_dim": 1152, "caption_channels": 4096, "sample_size": 32, "patch_size": 2,
        "norm_type": "ada_norm_single", "norm_elementwise_affine": False, "norm_eps": 1e-6, "attention_bias": True,
        "activation_fn": "gelu-approximate", "num_embeds_ada_norm": 1000, "use_additional_conditions": False,
    },
    "vae": {
        "in_channels": 12, "out_channels": 12, "latent_channels": 4, "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2, "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4, "norm_num_groups": 32, "scaling_factor": 0.13025,
        "sample_size": 256, "force_upcast": False,
    },
    "text_encoder": {"vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 1, "num_heads": 64,
                     "feed_forward_proj": "gated-gelu"},
}
#: LoRA targets of the official runs (spec §2.7): attention, FFN, caption projection, timestep embedding, output.
DIFFSPLAT_LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "proj", "linear",
    "linear_1", "linear_2",
)


class MultiViewSelfAttention:
    """diffusers attention processor: self-attention over the tokens of all ``num_views`` views of an object at
    once (DiffSplat's ``MVAttnProcessor2_0``). Hidden states arrive as ``[B·V, N, C]`` (views of one object
    consecutive) and attend as ``[B, V·N, C]``; projections are the module's own (LoRA adapters included)."""

    def __init__(self, num_views: int) -> None:
        self.num_views = num_views

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("MultiViewSelfAttention is a self-attention processor (no encoder states or mask)")
        bv, n, c = hidden_states.shape
        if bv % self.num_views:
            raise ValueError(f"batch {bv} is not a multiple of num_views={self.num_views}")
        x = hidden_states.reshape(bv // self.num_views, self.num_views * n, c)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (attn.heads, -1)).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(attn.to_q(x)), heads(attn.to_k(x)), heads(attn.to_v(x)))
        out = attn.to_out[1](attn.to_out[0](out.transpose(1, 2).flatten(2)))
        out = out.reshape(bv, n, -1)
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def multiview_transformer(transformer: PixArtTransformer2DModel, num_views: int) -> PixArtTransformer2DModel:
    """Turn a PixArt transformer into DiffSplat's multi-view one: :class:`MultiViewSelfAttention` on every
    block's self-attention (cross-attention to the text stays per view)."""
    for block in transformer.transformer_blocks:
        block.attn1.set_processor(MultiViewSelfAttention(num_views))
    return transformer


def diffsplat_plucker(cameras: Cameras, size: int, latent_size: int) -> torch.Tensor:
    """The Plücker conditioning DiffSplat was trained with, ``[*S, 6, latent_size, latent_size]``: moment
    ``o × d`` then direction ``d`` (unit), computed at ``size`` px and bilinearly resized to the latents.

    It reproduces ``geo_util.plucker_ray(bug=True)``: pixel ``j`` maps to ``x = (j / (size − 1) + 0.5 − cx) / fx``,
    so the rays span from the optical axis to one side instead of being centred (a known quirk of the official
    code, inherited from GRM). The released weights expect exactly these rays.
    """
    # the quirk is the corner-aligned grid j / (size − 1) read with the principal point moved by −0.5
    shifted = Cameras(cameras.cam_to_world, cameras.fx, cameras.fy, cameras.cx - 0.5, cameras.cy - 0.5)
    origins, dirs = pixel_rays(shifted, size, size, corner_aligned=True)
    dirs = F.normalize(dirs, dim=-1)
    plucker = torch.cat([torch.cross(origins, dirs, dim=-1), dirs], -1).movedim(-1, -3)
    flat = plucker.reshape(-1, 6, size, size)
    resized = F.interpolate(flat, size=(latent_size, latent_size), mode="bilinear", align_corners=False)
    return resized.reshape(*plucker.shape[:-2], latent_size, latent_size)


class DiffSplatGenerator(SplatGenerator):
    """DiffSplat-PixArt-Σ: text → 4 view latents ``[B, 4, 4, 32, 32]`` → splatter images → 3D Gaussians → renders.

    Args:
        repo: Hub repository (or local folder) holding the DiffSplat checkpoints in the official layout.
        transformer: sub-folder of ``repo`` with the multi-view transformer (diffusers layout: ``config.json`` and
            safetensors, possibly sharded); the EMA weights of iteration 13020, as Nabla-R2D3 uses.
        gsvae: file in ``repo`` with the GS-VAE state dict (keys ``vae.*``; ``tiny_decoder.*`` is ignored).
        vae_config: Hub id of the VAE whose config the GS-VAE was built from (SDXL fp16-fix).
        text_model: Hub id with ``text_encoder/`` (T5) and ``tokenizer/`` sub-folders.
        revision: Hub revision of ``repo`` (pin a commit sha).
        dtype: dtype of the frozen weights (LoRA adapters stay fp32).
        configs: ``{"transformer": ..., "vae": ..., "text_encoder": ...}`` constructor dicts
            (``PixArtTransformer2DModel``, ``AutoencoderKL``, ``T5Config``) to build random weights instead
            (:data:`REAL_SIZE`, or tiny ones in tests); prompts are then tokenized byte-wise.
        render_size: side of the rendered views in pixels (256 in the official runs).
        num_views: views rendered per sample by ``decode`` (4, one near each input view).
        azimuth_jitter_deg, elevation_jitter_deg: training-camera jitter (spec §2.3; the code's ±10° / ±5°
            by default, ``**PAPER_JITTER`` for the paper's).
        max_text_length: T5 tokens kept (300, as PixArt-Σ).
        image_noise_std: standard deviation of the Gaussian noise added to the clamped renders of the training
            cameras (``random_cameras=True``) before the reward; the official training code adds ``N(0, (2e-3)²)``.
        max_per_tile: Gaussians per 8 × 8 tile of the CPU renderer.
        gradient_checkpointing: recompute the transformer's and the GS-VAE decoder's activations in the backward
            pass instead of storing them (less memory for the reward gradient, more time; off in the official runs).
        lora_targets: denoiser modules that get LoRA adapters (official list by default).
    """

    input_views = 4

    def __init__(
        self,
        repo: str = "chenguolin/DiffSplat",
        transformer: str = "gsdiff_gobj83k_pas_fp16__render/checkpoints/013020/transformer_ema",
        gsvae: str = "gsvae_gobj265k_sdxl_fp16/checkpoints/039030/model.safetensors",
        vae_config: str = "madebyollin/sdxl-vae-fp16-fix",
        text_model: str = "PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers",
        revision: str | None = None,
        dtype: str = "bfloat16",
        configs: Mapping[str, Mapping[str, Any]] | None = None,
        render_size: int = 256,
        num_views: int = 4,
        azimuth_jitter_deg: float = CODE_JITTER["azimuth_jitter_deg"],
        elevation_jitter_deg: float = CODE_JITTER["elevation_jitter_deg"],
        max_text_length: int = 300,
        image_noise_std: float = 0.0,
        max_per_tile: int = 256,
        gradient_checkpointing: bool = False,
        lora_targets: Sequence[str] = DIFFSPLAT_LORA_TARGETS,
    ) -> None:
        super().__init__(lora_targets=lora_targets)
        from transformers import AutoTokenizer, T5Config, T5EncoderModel

        self.dtype = torch_dtype(dtype)
        self.render_size, self.num_views, self.max_text_length = render_size, num_views, max_text_length
        self.azimuth_jitter_deg, self.elevation_jitter_deg = azimuth_jitter_deg, elevation_jitter_deg
        self.image_noise_std, self.max_per_tile = image_noise_std, max_per_tile
        self.background = 1.0  # white, as the official renderer
        if configs is not None:
            denoiser = PixArtTransformer2DModel(**configs["transformer"])
            self.vae = AutoencoderKL(**configs["vae"])
            self.text_encoder = T5EncoderModel(T5Config(**configs["text_encoder"]))
            self.tokenizer = None
        else:
            denoiser = PixArtTransformer2DModel.from_pretrained(repo, subfolder=transformer, revision=revision)
            self.vae = load_gsvae(repo, gsvae, vae_config, revision)
            self.text_encoder = T5EncoderModel.from_pretrained(text_model, subfolder="text_encoder")
            require_sentencepiece()
            self.tokenizer = AutoTokenizer.from_pretrained(text_model, subfolder="tokenizer")
        if denoiser.config.in_channels != 4 + 6:
            raise ValueError(f"the DiffSplat transformer takes 4 latent + 6 Plücker channels; got in_channels={denoiser.config.in_channels}")
        self.denoiser = multiview_transformer(denoiser, self.input_views)
        for part in (self.denoiser, self.vae, self.text_encoder):
            part.requires_grad_(False).to(self.dtype).eval()
        if gradient_checkpointing:
            self.denoiser.enable_gradient_checkpointing()
            self.vae.enable_gradient_checkpointing()
        self.latent_size = self.denoiser.config.sample_size
        image_size = self.latent_size * 2 ** (len(self.vae.config.block_out_channels) - 1)
        plucker = diffsplat_plucker(self.input_cameras(1)[0], image_size, self.latent_size)
        self.register_buffer("plucker", plucker, persistent=False)  # [V_in, 6, h, w], fixed conditioning

    # ------------------------------------------------------------------ cameras
    @staticmethod
    def input_cameras(batch: int) -> Cameras:
        """The 4 fixed input cameras (elevation 10° above, azimuths 0/90/180/270°, radius 1.4) ``[batch, 4]``."""
        return input_cameras(batch, 4, DIFFSPLAT_ELEVATION_DEG, DIFFSPLAT_RADIUS, DIFFSPLAT_FOCAL)

    def cameras(self, batch: int, *, generator: torch.Generator | None = None, random_cameras: bool = True) -> Cameras:
        """Training cameras (spec §2.3, jittered) or the fixed evaluation views (the input cameras)."""
        if not random_cameras:
            return input_cameras(batch, self.num_views, DIFFSPLAT_ELEVATION_DEG, DIFFSPLAT_RADIUS, DIFFSPLAT_FOCAL)
        return sample_orbit_cameras(
            batch, self.num_views, elevation_deg=DIFFSPLAT_ELEVATION_DEG, radius=DIFFSPLAT_RADIUS,
            focal=DIFFSPLAT_FOCAL, azimuth_jitter_deg=self.azimuth_jitter_deg,
            elevation_jitter_deg=self.elevation_jitter_deg, generator=generator,
        )

    # ------------------------------------------------------------------ DiffusionGenerator
    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.input_views, self.vae.config.latent_channels, self.latent_size, self.latent_size)

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return dict(PIXART_SCHEDULE)

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """T5 embeddings ``[B, L, D]`` and attention mask ``[B, L]`` (PixArt-Σ: padded to ``max_text_length``)."""
        if self.tokenizer is not None:
            tokens = self.tokenizer(
                list(prompts), padding="max_length", max_length=self.max_text_length, truncation=True,
                add_special_tokens=True, return_tensors="pt",
            )
            ids, mask = tokens.input_ids, tokens.attention_mask
        else:  # random-weight construction
            config = self.text_encoder.config
            ids, mask = byte_token_ids(prompts, self.max_text_length, config.vocab_size, end_token=config.eos_token_id)
        device = self.text_encoder.device
        embeds = self.text_encoder(ids.to(device), attention_mask=mask.to(device))[0]
        return {"embeds": embeds, "mask": mask.to(device)}

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, condition: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """ε for ``[B, 4, 4, h, w]`` latents: views flattened into the batch, Plücker rays concatenated, the prompt
        repeated per view; the transformer's last 4 (variance) output channels are dropped."""
        b, v = latents.shape[:2]
        plucker = self.plucker.to(latents).repeat(b, 1, 1, 1)
        x = torch.cat([latents.flatten(0, 1), plucker], dim=1).to(self.dtype)
        out = self.denoiser(
            x,
            encoder_hidden_states=condition["embeds"].repeat_interleave(v, 0).to(self.dtype),
            encoder_attention_mask=condition["mask"].repeat_interleave(v, 0),
            timestep=timesteps.repeat_interleave(v),
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        ).sample
        return out[:, : latents.shape[2]].float().unflatten(0, (b, v))

    def splatter(self, latents: torch.Tensor) -> torch.Tensor:
        """GS-VAE decode: latents ``[B, 4, 4, h, w]`` → splatter images ``[B, 4, 12, 8h, 8w]`` in ``[-1, 1]``."""
        config = self.vae.config
        z = latents.flatten(0, 1) / config.scaling_factor + (config.shift_factor or 0.0)
        images = self.vae.decode(z.to(self.dtype)).sample.float().clamp(-1, 1)
        return images.unflatten(0, latents.shape[:2])

    def gaussians(self, latents: torch.Tensor) -> Gaussians:
        """Clean latents → ``B × (4·H·W)`` Gaussians (camera depth ``radius + d``, spec §2.1)."""
        splatter = self.splatter(latents)
        cams = self.input_cameras(latents.shape[0]).to(device=splatter.device)
        depth_range = (DIFFSPLAT_RADIUS - 1.0, DIFFSPLAT_RADIUS + 1.0)
        return splatter_to_gaussians(
            splatter, cams, depth_range=depth_range, scale_range=DIFFSPLAT_SCALE_RANGE, corner_aligned=True
        )

    def decode(self, latents: torch.Tensor, *, generator: torch.Generator | None = None, random_cameras: bool = True) -> Renders:
        renders = super().decode(latents, generator=generator, random_cameras=random_cameras)
        if random_cameras and self.image_noise_std > 0:
            noise = torch.randn(renders.images.shape, generator=generator).to(renders.images)
            renders.images = renders.images + self.image_noise_std * noise
        return renders


def require_sentencepiece() -> None:
    """The T5 tokenizer of PixArt-Σ is a sentencepiece model; without ``sentencepiece`` and ``protobuf`` transformers
    fails with an unrelated-looking ``tiktoken`` error, so say what to install instead."""
    missing = [name for name in ("sentencepiece", "google.protobuf") if _find_spec(name) is None]
    if missing:
        raise ImportError(
            f"DiffSplat's T5 tokenizer needs {' and '.join(missing)}: pip install 'alignzoo[diffsplat]'"
        )


def _find_spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:  # parent package (google) missing
        return None


def load_gsvae(repo: str, filename: str, vae_config: str, revision: str | None = None) -> AutoencoderKL:
    """The GS-VAE: ``vae_config``'s architecture with 12 channels in and out, weights from ``filename`` in
    ``repo`` (a folder or Hub repository; the official ``GSAutoencoderKL`` state dict, keys ``vae.*``)."""
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file

    local = Path(repo) / filename
    path = local if local.is_file() else hf_hub_download(repo, filename, revision=revision)
    state = {k.removeprefix("vae."): v for k, v in load_file(str(path)).items() if k.startswith("vae.")}
    config = dict(AutoencoderKL.load_config(vae_config))
    vae = AutoencoderKL.from_config({**config, "in_channels": 12, "out_channels": 12})
    vae.load_state_dict(state, strict=True)
    return vae

