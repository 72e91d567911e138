"""The GRPO objective on per-token tensors: group advantages, clipped surrogate, k3 KL and the loss aggregations.

Shao et al. 2024 (DeepSeekMath, arXiv 2402.03300) eq. 3 with the variants TRL's ``GRPOTrainer`` ships
(``loss_type`` grpo / bnpo / dr_grpo / dapo). The semantics follow TRL 1.16 ``_compute_loss`` exactly, so that
the same per-token tensors give the same loss and gradients (``tests/test_grpo_trl_parity.py`` drives TRL's own
code on them). Kept free of models and Lightning so that it can be tested and reused on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
ScaleRewards = Literal["group", "batch", "none"]
LOSS_TYPES: tuple[str, ...] = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALE_REWARDS: tuple[str, ...] = ("group", "batch", "none")

#: Added to the reward standard deviation before dividing (DeepSeekMath's implementation, TRL, R1-V).
STD_EPS = 1e-4


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale_rewards: ScaleRewards = "group"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative advantages (DeepSeekMath §4.1.2): ``A = (r − mean_group r) / (std + 1e-4)``.

    ``rewards`` holds every completion of the generation batch, gathered over all ranks, G consecutive entries per
    prompt. ``std`` is the unbiased (N−1) standard deviation of the group (``"group"``) or of the whole batch
    (``"batch"``); ``"none"`` (Dr. GRPO) skips the division. Returns the advantages and, per completion, whether its
    group had zero reward spread (no learning signal; logged as ``frac_reward_zero_std``).
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"expected a flat reward vector whose length is a multiple of G={group_size}, got {tuple(rewards.shape)}")
    grouped = rewards.view(-1, group_size)
    mean = grouped.mean(dim=1).repeat_interleave(group_size)
    if scale_rewards == "batch":
        std = rewards.std().expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    else:
        std = grouped.std(dim=1).repeat_interleave(group_size) if group_size > 1 else torch.zeros_like(rewards)
    advantages = rewards - mean
    if scale_rewards != "none":
        advantages = advantages / (std + STD_EPS)
    return advantages, torch.isclose(std, torch.zeros_like(std))


@dataclass
class PerTokenTerms:
    """The per-token quantities of one micro-batch, shape ``[B, T]`` (``kl`` is ``None`` when β = 0)."""

    loss: torch.Tensor
    kl: torch.Tensor | None
    ratio: torch.Tensor
    low_clipped: torch.Tensor
    high_clipped: torch.Tensor


def per_token_grpo_terms(
    logps: torch.Tensor,
    advantages: torch.Tensor,
    *,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon_low: float = 0.2,
    epsilon_high: float | None = None,
) -> PerTokenTerms:
    """Clipped surrogate plus k3 KL per token (DeepSeekMath eq. 3–4; DAPO's decoupled ε_low/ε_high).

    ``ℓ = −min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A) + β·(exp(ref − logp) − (ref − logp) − 1)`` with
    ``ρ = exp(logp − old)``. Without stored ``old_logps`` (one update per generation) ``old = logp.detach()``, so
    ``ρ ≡ 1`` but the gradient is the policy gradient. ``advantages`` is one value per sequence ``[B]``.
    """
    if epsilon_high is None:
        epsilon_high = epsilon_low
    if beta != 0.0 and ref_logps is None:
        raise ValueError("beta != 0 needs the reference model's per-token log-probs (ref_logps)")
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    old = logps.detach() if old_logps is None else old_logps
    ratio = torch.exp(logps - old)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    loss = -torch.min(ratio * adv, clipped * adv)
    kl = None
    if beta != 0.0:
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1
        loss = loss + beta * kl
    return PerTokenTerms(
        loss=loss,
        kl=kl,
        ratio=ratio,
        low_clipped=(ratio < 1 - epsilon_low) & (adv < 0),
        high_clipped=(ratio > 1 + epsilon_high) & (adv > 0),
    )


def aggregate_loss(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    loss_type: LossType,
    *,
    grad_accum_steps: int = 1,
    max_completion_length: int | None = None,
    num_items_in_batch: torch.Tensor | float | None = None,
    world_size: int = 1,
    steps_per_generation: int | None = None,
) -> torch.Tensor:
    """Reduce ``[B, T]`` per-token losses to the micro-batch loss exactly as TRL 1.16 does (spec §3.4).

    * ``grpo``: mean over sequences of the per-sequence token mean, ÷ GA;
    * ``bnpo``: token mean over the local micro-batch, ÷ GA;
    * ``dr_grpo``: token sum ÷ (B · ``max_completion_length``), ÷ GA;
    * ``dapo``: token sum ÷ (N_tok / world · GA / steps_per_generation), where ``num_items_in_batch`` = N_tok is the
      completion-token count of the whole generation batch over all ranks; after DDP's gradient averaging and
      accumulation this is the global token mean.
    """
    mask = mask.to(per_token_loss.dtype)
    masked = per_token_loss * mask
    if loss_type == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / grad_accum_steps
    if loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0) / grad_accum_steps
    if loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("loss_type='dr_grpo' divides by max_completion_length; pass it")
        return masked.sum() / (per_token_loss.size(0) * max_completion_length) / grad_accum_steps
    if loss_type == "dapo":
        if num_items_in_batch is None:
            raise ValueError("loss_type='dapo' needs num_items_in_batch (completion tokens of the generation batch)")
        n_tok = torch.as_tensor(num_items_in_batch, dtype=per_token_loss.dtype, device=per_token_loss.device)
        normalizer = n_tok.clamp(min=1.0) / world_size
        normalizer = normalizer * grad_accum_steps / (steps_per_generation or grad_accum_steps)
        return masked.sum() / normalizer
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1 (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)
