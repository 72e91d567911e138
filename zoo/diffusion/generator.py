"""The generator interface: what the diffusion alignment algorithms (Nabla-R2D3, DDPO, ReFL, DRaFT-K) talk to.

A :class:`DiffusionGenerator` bundles

* a **denoiser** (``self.denoiser``, the ``nn.Module`` LoRA adapters are injected into) called through
  :meth:`~DiffusionGenerator.denoise`, which returns the raw prediction (ε, v or x₀, as ``scheduler_config``
  says) for latents at timesteps under a condition; :meth:`~DiffusionGenerator.guided_denoise` adds classifier-free
  guidance ``out_u + w (out_c − out_u)`` (linear in the output, so it is the same whether applied to ε or v);
* the **noise schedule** it was trained with (``scheduler_config``: a diffusers scheduler config dict); the
  sampler (DDIM-η or SDE-DPM-Solver++, number of steps) is chosen by the algorithm, see :mod:`zoo.diffusion.kernels`;
* **prompt encoding** (:meth:`~DiffusionGenerator.encode_prompts`, frozen, no gradient) and the unconditional
  condition used by classifier-free guidance (:meth:`~DiffusionGenerator.null_condition`);
* :meth:`~DiffusionGenerator.decode`: clean latents ``x₀`` → :class:`zoo.rewards.Renders` (images
  ``[B, V, 3, H, W]`` in ``[0, 1]``, ``V ≥ 1`` views, plus optional alpha / depth / normals), differentiable,
  with cameras sampled per call for 3D generators.

A 2D latent-diffusion model decodes with its VAE and returns ``V = 1``; a 3D-native splat model decodes to
splatter images and renders ``V`` views from randomly sampled cameras. Conditions are a tensor or a flat
``dict`` of tensors, batch first (e.g. text embeddings and an attention mask).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import nn

from zoo.configurable import Configurable
from zoo.rewards import Renders

#: A prompt condition: a tensor ``[B, ...]`` or a flat mapping of such tensors.
Condition = Union[torch.Tensor, Mapping[str, torch.Tensor]]


def map_condition(fn: Callable[[torch.Tensor], torch.Tensor], condition: Condition) -> Condition:
    """Apply ``fn`` to every tensor of a condition (tensor or mapping of tensors)."""
    if isinstance(condition, torch.Tensor):
        return fn(condition)
    return {k: fn(v) for k, v in condition.items()}


#: dtype names accepted for a generator's frozen weights.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a generator's ``dtype`` argument (``float32``, ``bfloat16``, ``float16``)."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def byte_token_ids(prompts: Sequence[str], length: int, vocab_size: int, end_token: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenizer-free ids for text encoders built with random weights (tests, benchmarks): each prompt's UTF-8
    bytes modulo ``vocab_size``, then ``end_token`` if given, zero-padded to ``length``. Returns ``ids`` and the
    attention ``mask`` (1 on real tokens), both ``[len(prompts), length]`` long."""
    ids = torch.zeros(len(prompts), length, dtype=torch.long)
    mask = torch.zeros(len(prompts), length, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        data = [b % vocab_size for b in prompt.encode()] + ([] if end_token is None else [end_token])
        data = data[:length]
        ids[i, : len(data)] = torch.tensor(data, dtype=torch.long)
        mask[i, : len(data)] = 1
    return ids, mask


def cat_conditions(conditions: Sequence[Condition]) -> Condition:
    """Concatenate conditions along the batch axis."""
    first = conditions[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(conditions))
    return {k: torch.cat([c[k] for c in conditions]) for k in first}


class DiffusionGenerator(Configurable, nn.Module):
    """Base class of the generators the diffusion alignment algorithms finetune.

    Subclasses assign ``self.denoiser`` in ``__init__`` and implement :attr:`latent_shape`,
    :attr:`scheduler_config`, :meth:`encode_prompts`, :meth:`denoise` and :meth:`decode`. ``lora_targets`` names
    the denoiser sub-modules LoRA adapters go into (peft ``target_modules`` semantics). Everything the generator
    owns other than LoRA stays frozen; the algorithms never update it.
    """

    denoiser: nn.Module

    def __init__(self, lora_targets: Sequence[str] = ("to_q", "to_k", "to_v", "to_out.0")) -> None:
        super().__init__()
        self.lora_targets = list(lora_targets)

    # ------------------------------------------------------------------ to implement
    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one sample's latent, without the batch axis (e.g. ``(4, 64, 64)``)."""
        raise NotImplementedError(f"{type(self).__name__} must define latent_shape")

    @property
    def scheduler_config(self) -> dict[str, Any]:
        """The diffusers scheduler config of the training noise schedule (``num_train_timesteps``, ``beta_*``,
        ``prediction_type`` ∈ {``epsilon``, ``v_prediction``, ``sample``}, ...)."""
        raise NotImplementedError(f"{type(self).__name__} must define scheduler_config")

    def encode_prompts(self, prompts: Sequence[str]) -> Condition:
        """Prompts → condition, batch first. Runs without gradient (the text encoder is frozen)."""
        raise NotImplementedError(f"{type(self).__name__} must implement encode_prompts(prompts)")

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, condition: Condition) -> torch.Tensor:
        """Raw denoiser prediction (``prediction_type``) for ``latents`` ``[B, *latent_shape]`` at integer
        ``timesteps`` ``[B]``; same shape as ``latents``."""
        raise NotImplementedError(f"{type(self).__name__} must implement denoise(latents, timesteps, condition)")

    def decode(self, latents: torch.Tensor, *, generator: torch.Generator | None = None, random_cameras: bool = True) -> Renders:
        """Clean latents ``x₀`` → :class:`Renders` (images ``[B, V, 3, H, W]`` in ``[0, 1]``), differentiable.

        3D generators sample a fresh camera set per call from ``generator`` when ``random_cameras`` is true (the
        training-time reward of Nabla-R2D3, spec §2.3) and use their fixed evaluation cameras otherwise.
        ``generator`` is the algorithm's CPU random stream (saved in checkpoints): draw on CPU, then move.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement decode(latents, ...)")

    # ------------------------------------------------------------------ provided
    @property
    def prediction_type(self) -> str:
        """``epsilon``, ``v_prediction`` or ``sample``, from :attr:`scheduler_config`."""
        return self.scheduler_config.get("prediction_type", "epsilon")

    def null_condition(self, batch_size: int) -> Condition:
        """The unconditional condition of classifier-free guidance: the encoding of the empty prompt."""
        return self.encode_prompts([""] * batch_size)

    def guided_denoise(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        condition: Condition,
        null_condition: Condition | None,
        guidance_scale: float,
    ) -> torch.Tensor:
        """Classifier-free-guided prediction ``out_u + w·(out_c − out_u)`` in one batched denoiser call.

        With ``guidance_scale == 1`` or ``null_condition is None`` it is the plain conditional prediction.
        """
        if null_condition is None or guidance_scale == 1.0:
            return self.denoise(latents, timesteps, condition)
        both = self.denoise(
            torch.cat([latents, latents]), torch.cat([timesteps, timesteps]), cat_conditions([null_condition, condition])
        )
        uncond, cond = both.chunk(2)
        return uncond + guidance_scale * (cond - uncond)
