"""DDPO (Black et al., 2024, "Training Diffusion Models with Reinforcement Learning"): PPO on the denoising MDP
with the clipped surrogate (DDPO_IS, their eq. 4 with the PPO clip), as the Nabla-R2D3 baseline (spec §3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from zoo import distributed
from zoo.algorithms.base import Paper
from zoo.algorithms.diffusion_base import DiffusionAlignmentModule
from zoo.diffusion.generator import DiffusionGenerator
from zoo.diffusion.kernels import gaussian_log_prob
from zoo.diffusion.rollout import Trajectories
from zoo.rewards import Reward

NORMALIZATIONS = ("prompt", "batch")


def normalized_advantages(rewards: torch.Tensor, prompts: Sequence[str], per_prompt: bool, clip: float) -> torch.Tensor:
    """``(R − mean)/(std + 1e-8)`` within each prompt's samples (``per_prompt``; prompts with a single sample
    use the batch statistics) or over the batch, then clipped to ``±clip``. Non-finite rewards get advantage 0
    and are left out of the statistics."""
    finite = torch.isfinite(rewards)
    adv = torch.zeros_like(rewards)
    batch_mean, batch_std = rewards[finite].mean(), rewards[finite].std(unbiased=False)
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        if finite[i]:
            groups.setdefault(prompt if per_prompt else "", []).append(i)
    for members in groups.values():
        idx = torch.tensor(members, device=rewards.device)
        group = rewards[idx]
        mean, std = (group.mean(), group.std(unbiased=False)) if len(members) > 1 else (batch_mean, batch_std)
        adv[idx] = (group - mean) / (std + 1e-8)
    return adv.clamp(-clip, clip)


def ppo_clip_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float) -> torch.Tensor:
    """``mean(max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)))`` with ``ρ = exp(log p_θ − log p_old)`` (PPO, Schulman et al. 2017)."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped).mean()


class DDPO(DiffusionAlignmentModule):
    """DDPO as a LightningModule: each training step samples the batch's prompts on-policy, normalises the
    rewards into advantages and takes ``num_inner_epochs`` passes of PPO-clip updates over a random
    ``timestep_fraction`` of each trajectory's steps (DDPO's own per-trajectory random permutation).

    Args (beyond :class:`DiffusionAlignmentModule`'s): ``clip_range`` (ε, 1e-4 as in the official config),
    ``adv_clip_max`` (5), ``advantage_normalization`` (``"prompt"``: per-prompt statistics, DDPO's stat tracker
    restricted to the round; ``"batch"``), ``timestep_fraction``, ``num_inner_epochs``.
    """

    paper = Paper(
        title="Training Diffusion Models with Reinforcement Learning",
        arxiv_id="2305.13301",
        bibtex=(
            "@inproceedings{black2024ddpo,\n  title={Training Diffusion Models with Reinforcement Learning},\n  "
            "author={Black, Kevin and Janner, Michael and Du, Yilun and Kostrikov, Ilya and Levine, Sergey},\n  "
            "booktitle={ICLR},\n  year={2024}\n}"
        ),
    )
    algorithm_name = "ddpo"
    tags = ("ppo", "policy-gradient")

    def __init__(
        self,
        generator: DiffusionGenerator,
        reward: Reward,
        clip_range: float = 1e-4,
        adv_clip_max: float = 5.0,
        advantage_normalization: str = "prompt",
        timestep_fraction: float = 1.0,
        num_inner_epochs: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(generator, reward, **kwargs)
        if advantage_normalization not in NORMALIZATIONS:
            raise ValueError(f"advantage_normalization must be one of {NORMALIZATIONS}, got {advantage_normalization!r}")
        self.clip_range, self.adv_clip_max = clip_range, adv_clip_max
        self.advantage_normalization = advantage_normalization
        self.timestep_fraction, self.num_inner_epochs = timestep_fraction, num_inner_epochs

    def step_loss(self, trajs: Trajectories, step: torch.Tensor, advantages: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """PPO-clip loss of one step per trajectory; also the approximate KL and the clipped fraction."""
        rows = torch.arange(len(trajs), device=step.device)
        x, x_next = trajs.latents[rows, step], trajs.latents[rows, step + 1]
        mean, std = self.sampler.mean_std(self.policy_output(x, step, trajs.condition, trajs.null_condition), x, step)
        log_prob = gaussian_log_prob(x_next, mean, std)
        old = trajs.log_probs[rows, step]
        loss = ppo_clip_loss(log_prob, old, advantages, self.clip_range)
        with torch.no_grad():
            stats = {
                "approx_kl": float(0.5 * ((log_prob - old) ** 2).mean()),
                "clipfrac": float(((torch.exp(log_prob - old) - 1).abs() > self.clip_range).float().mean()),
            }
        return loss, stats

    def training_step(self, batch: Sequence[str], batch_idx: int) -> None:
        trajs = self.rollout(batch).to(self.device)
        self.finite_rows(trajs.rewards)  # counts this rank's non-finite rewards
        # advantages are normalised over the whole batch of all ranks, as DDPO gathers its rewards
        rewards = distributed.gather_rows(trajs.rewards)
        metrics: dict[str, float] = {"reward": float(rewards.nanmean())}
        if torch.isfinite(rewards).sum() >= 2:
            # non-finite rewards get advantage 0: those trajectories add nothing to the loss
            per_prompt = self.advantage_normalization == "prompt"
            prompts = distributed.gather_objects(list(trajs.prompts)) if per_prompt else [""] * len(rewards)
            advantages = normalized_advantages(rewards, prompts, per_prompt, self.adv_clip_max)
            metrics.update(self.train_on(trajs, advantages[distributed.local_rows(len(trajs))]))
        self.log_round(metrics)

    def train_on(self, trajs: Trajectories, advantages: torch.Tensor) -> dict[str, float]:
        """``num_inner_epochs`` passes of minibatch PPO updates (one backward per sampled step)."""
        n_train = max(1, int(self.sampler.n * self.timestep_fraction))
        totals: dict[str, float] = {}
        norms: dict[str, float] = {}
        count = 0
        for _ in range(self.num_inner_epochs):
            for i, index in enumerate(self.minibatches(len(trajs))):
                index = index.to(self.device)
                mb = trajs.select(index)
                steps = torch.stack([torch.randperm(self.sampler.n, generator=self.rng)[:n_train] for _ in index])
                steps = steps.to(self.device)
                for j in range(n_train):
                    loss, stats = self.step_loss(mb, steps[:, j], advantages[index])
                    self.manual_backward(loss / (self.grad_accum * n_train))
                    stats["loss"] = float(loss.detach())
                    for k, v in stats.items():
                        totals[k] = totals.get(k, 0.0) + v
                    count += 1
                if (i + 1) % self.grad_accum == 0:
                    norms = self.clip_and_step()
        return {**{k: v / max(count, 1) for k, v in totals.items()}, **norms}
