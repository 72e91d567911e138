"""The GRPO objective on per-token tensors: group advantages, clipped surrogate, k3 KL and the loss aggregations.

Shao et al. 2024 (DeepSeekMath, arXiv 2402.03300) eq. 3 with the variants TRL's ``GRPOTrainer`` ships
(``loss_type`` grpo / bnpo / dr_grpo / dapo). The semantics follow TRL 1.16 ``_compute_loss`` exactly, so that
the same per-token tensors give the same loss and gradients (``tests/test_grpo_trl_parity.py`` drives TRL's own
code on them). Kept free of models and Lightning so that it can be tested and reused on its own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from zoo import distributed
from zoo.algorithms.base import Paper
from zoo.algorithms.vlm_base import VSIBENCH_METRIC, VLMAlignmentModule
from zoo.vlm.policy import QwenVLPolicy, Rollout

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


# ---------------------------------------------------------------------------------------------------------------
# The LightningModule
# ---------------------------------------------------------------------------------------------------------------

VSGRPO_PAPER = Paper(
    title="Improved Visual-Spatial Reasoning via R1-Zero-Like Training",
    arxiv_id="2504.00883",
    bibtex=(
        "@article{liao2025vsgrpo,\n  title={Improved Visual-Spatial Reasoning via R1-Zero-Like Training},\n"
        "  author={Liao, Zhenyi and Xie, Qingsong and Zhang, Yanhao and Kong, Zijian and Lu, Haonan and Yang, "
        "Zhenheng and Deng, Zhijie},\n  journal={arXiv preprint arXiv:2504.00883},\n  year={2025}\n}"
    ),
)


@dataclass
class GroupBatch:
    """A scored generation batch (this rank's share): prompts repeated G times, completions and their targets."""

    inputs: dict[str, torch.Tensor]
    rollout: Rollout
    advantages: torch.Tensor
    old_logps: torch.Tensor | None
    ref_logps: torch.Tensor | None
    num_items_in_batch: torch.Tensor


class GRPO(VLMAlignmentModule):
    """Group Relative Policy Optimization for video QA (vsGRPO, arXiv 2504.00883; DeepSeekMath eq. 3).

    Per training step (one batch of B questions on each rank): sample ``num_generations`` (G) completions per
    question at ``temperature`` from the same frames; score them with every reward function (a completion that hits
    ``max_new_tokens`` without EOS, or whose reward is not finite, gets 0 and is counted); gather the rewards of
    all ranks and compute group advantages; then ``num_iterations`` optimizer steps over the B·G completions, each
    accumulated over micro-batches of ``micro_batch_size`` completions, with the TRL-exact loss of ``loss_type``.
    With β > 0 the k3 KL is taken against the reference: the adapters-disabled base under LoRA, else a frozen copy
    of the initial policy (kept in checkpoints so a resumed run keeps the same reference). β = 0 skips the
    reference forward entirely.

    Defaults follow the vsGRPO paper where it states them (G = 14, temperature 1, β = 1e-4, LoRA lr 1e-5 for 2B)
    and TRL 1.16 otherwise (ε = 0.2, ``scale_rewards="group"``). ``loss_type`` defaults to ``"grpo"`` (the
    per-sequence mean of R1-V's trainer, which vsGRPO builds on) rather than TRL's ``"dapo"``.
    """

    paper = VSGRPO_PAPER
    algorithm_name = "vsgrpo"

    def __init__(
        self,
        policy: QwenVLPolicy,
        reward_funcs: Sequence[Callable],
        *,
        reward_weights: Sequence[float] | None = None,
        num_generations: int = 14,
        temperature: float = 1.0,
        max_new_tokens: int = 16,
        beta: float = 1e-4,
        epsilon: float = 0.2,
        epsilon_high: float | None = None,
        num_iterations: int = 1,
        loss_type: LossType = "grpo",
        scale_rewards: ScaleRewards = "group",
        micro_batch_size: int | None = None,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        max_grad_norm: float | None = 1.0,
        eval_metric: str | None = VSIBENCH_METRIC,
        seed: int = 0,
    ) -> None:
        super().__init__(policy, lr=lr, weight_decay=weight_decay, max_new_tokens=max_new_tokens, eval_metric=eval_metric)
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        if scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
        if num_generations < 2:
            raise ValueError("num_generations must be >= 2: group advantages need at least two completions per prompt")
        if not reward_funcs:
            raise ValueError("GRPO needs at least one reward function")
        self.reward_funcs = list(reward_funcs)
        weights = [1.0] * len(self.reward_funcs) if reward_weights is None else list(reward_weights)
        if len(weights) != len(self.reward_funcs):
            raise ValueError(f"{len(weights)} reward_weights for {len(self.reward_funcs)} reward functions")
        self.reward_weights = weights
        self.num_generations = num_generations
        self.temperature = temperature
        self.beta = beta
        self.epsilon_low = epsilon
        self.epsilon_high = epsilon if epsilon_high is None else epsilon_high
        self.num_iterations = num_iterations
        self.loss_type = loss_type
        self.scale_rewards = scale_rewards
        self.micro_batch_size = micro_batch_size
        self.max_grad_norm = max_grad_norm
        self.seed = seed
        self.automatic_optimization = False
        self.reference = None
        if beta != 0.0 and not policy.uses_lora:
            self.reference = copy.deepcopy(policy.model).requires_grad_(False).eval()

    # ------------------------------------------------------------------ rollout
    def reward_names(self) -> list[str]:
        """One log name per reward function (its class name, numbered when repeated)."""
        names = [type(f).__name__ for f in self.reward_funcs]
        return [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]

    def compute_rewards(self, samples: Rollout, batch: Mapping[str, Any]) -> torch.Tensor:
        """``[N, K]`` rewards of every completion under every reward function (malformed completions → 0)."""
        G = self.num_generations
        truths = [t for t in batch["ground_truth"] for _ in range(G)]
        types = [t for t in batch["question_type"] for _ in range(G)]
        columns = [torch.as_tensor(f(samples.texts, truths, types), dtype=torch.float32) for f in self.reward_funcs]
        rewards = torch.stack(columns, dim=1).to(self.device)
        rewards = torch.nan_to_num(rewards, nan=0.0, posinf=0.0, neginf=0.0)
        return rewards.masked_fill(samples.truncated.to(self.device)[:, None], 0.0)

    @torch.no_grad()
    def make_group_batch(self, batch: Mapping[str, Any]) -> tuple[GroupBatch, dict[str, torch.Tensor]]:
        """Sample, score, normalise (rewards gathered over ranks first) and precompute old/ref log-probs."""
        inputs = self.policy.repeat(self.prompt_inputs(batch), self.num_generations)
        rollout = self.policy.generate(inputs, max_new_tokens=self.max_new_tokens, temperature=self.temperature)
        per_func = self.compute_rewards(rollout, batch)
        weights = torch.tensor(self.reward_weights, device=per_func.device)
        rewards = (per_func * weights).sum(1)
        all_rewards = distributed.gather_rows(rewards)
        advantages, zero_std = group_advantages(all_rewards, self.num_generations, self.scale_rewards)
        advantages = advantages[distributed.local_rows(rewards.numel())]
        mask = rollout.completion_mask
        old_logps = ref_logps = None
        if self.num_iterations > 1:
            old_logps = self._logps_in_chunks(inputs, rollout, self.policy.completion_logps)
        if self.beta != 0.0:
            ref_logps = self._logps_in_chunks(inputs, rollout, self._reference_logps)
        num_items = distributed.gather_rows(mask.sum().reshape(1)).sum()
        all_per_func = distributed.gather_rows(per_func)
        stats = {
            "reward": all_rewards.mean(),
            "reward_std": all_rewards.std(),
            "frac_reward_zero_std": zero_std.float().mean(),
            "completion_length": distributed.gather_rows(mask.sum(1).float()).mean(),
            "truncated_frac": distributed.gather_rows(rollout.truncated.float().to(self.device)).mean(),
            **{f"rewards/{n}": all_per_func[:, i].mean() for i, n in enumerate(self.reward_names())},
        }
        return GroupBatch(inputs, rollout, advantages, old_logps, ref_logps, num_items), stats

    def _reference_logps(self, inputs, completion_ids, completion_mask, *, temperature):
        if self.policy.uses_lora:
            with self.policy.adapters_disabled():
                return self.policy.completion_logps(inputs, completion_ids, completion_mask, temperature=temperature)
        return self.policy.completion_logps(
            inputs, completion_ids, completion_mask, temperature=temperature, model=self.reference
        )

    def _micro_batches(self, n: int) -> list[slice]:
        size = self.micro_batch_size or n
        return [slice(i, min(i + size, n)) for i in range(0, n, size)]

    def _logps_in_chunks(self, inputs, rollout: Rollout, fn) -> torch.Tensor:
        chunks = []
        for s in self._micro_batches(rollout.completion_ids.shape[0]):
            logps, _ = fn(slice_inputs(inputs, s), rollout.completion_ids[s], rollout.completion_mask[s], temperature=self.temperature)
            chunks.append(logps)
        return torch.cat(chunks)

    # ------------------------------------------------------------------ loss
    def micro_batch_loss(self, group: GroupBatch, rows: slice, grad_accum_steps: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The TRL-exact loss of one micro-batch of completions, and its per-token statistics."""
        ids, mask = group.rollout.completion_ids[rows], group.rollout.completion_mask[rows]
        logps, entropy = self.policy.completion_logps(
            slice_inputs(group.inputs, rows), ids, mask, temperature=self.temperature, with_entropy=True
        )
        terms = per_token_grpo_terms(
            logps,
            group.advantages[rows],
            old_logps=None if group.old_logps is None else group.old_logps[rows],
            ref_logps=None if group.ref_logps is None else group.ref_logps[rows],
            beta=self.beta,
            epsilon_low=self.epsilon_low,
            epsilon_high=self.epsilon_high,
        )
        loss = aggregate_loss(
            terms.loss, mask, self.loss_type, grad_accum_steps=grad_accum_steps,
            max_completion_length=self.max_new_tokens, num_items_in_batch=group.num_items_in_batch,
            world_size=distributed.world_size(), steps_per_generation=grad_accum_steps,
        )
        stats = {
            "entropy": masked_mean(entropy.detach(), mask),
            "clip_ratio/low_mean": masked_mean(terms.low_clipped.float(), mask),
            "clip_ratio/high_mean": masked_mean(terms.high_clipped.float(), mask),
            "clip_ratio/region_mean": masked_mean((terms.low_clipped | terms.high_clipped).float(), mask),
        }
        if terms.kl is not None:
            stats["kl"] = masked_mean(terms.kl.detach(), mask)
        return loss, stats

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        # Sampling noise depends only on (seed, step, rank): a resumed run draws the same completions.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed + 1_000_003 * self.global_step + 7919 * self.global_rank)
            group, stats = self.make_group_batch(batch)
        optimizer = self.optimizers()
        slices = self._micro_batches(group.rollout.completion_ids.shape[0])
        step_stats: list[dict[str, torch.Tensor]] = []
        total = torch.zeros((), device=self.device)
        for _ in range(self.num_iterations):
            for rows in slices:
                loss, mb_stats = self.micro_batch_loss(group, rows, grad_accum_steps=len(slices))
                self.manual_backward(loss)
                total = total + loss.detach()
                step_stats.append(mb_stats)
            if self.max_grad_norm is not None:
                self.clip_gradients(optimizer, gradient_clip_val=self.max_grad_norm, gradient_clip_algorithm="norm")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for key in step_stats[0]:
            stats[key] = torch.stack([s[key] for s in step_stats]).mean()
        stats["loss"] = total / self.num_iterations
        self.log_metrics(stats, batch_size=len(batch["prompt"]), sync_dist=True)
        return stats["loss"]


def slice_inputs(inputs: dict[str, torch.Tensor], rows: slice) -> dict[str, torch.Tensor]:
    """The prepared model inputs of a contiguous range of rows (video patches sliced with them)."""
    patches = inputs["video_grid_thw"].prod(-1)
    offsets = torch.cat([patches.new_zeros(1), patches.cumsum(0)])
    start, stop, _ = rows.indices(inputs["input_ids"].shape[0])
    out = {k: inputs[k][rows] for k in ("input_ids", "attention_mask", "mm_token_type_ids", "video_grid_thw")}
    out["pixel_values_videos"] = inputs["pixel_values_videos"][offsets[start]:offsets[stop]]
    return out
