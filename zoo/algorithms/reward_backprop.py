"""Reward backpropagation baselines (spec §3): ReFL (Xu et al., 2023, ImageReward) and DRaFT-K (Clark et al.,
2024). Both roll out without gradient, then differentiate the reward through a short, truncated end of the
sampling chain and maximise it directly: ``L = −mean R``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from zoo.algorithms.base import Paper
from zoo.algorithms.diffusion_base import DiffusionAlignmentModule
from zoo.diffusion.generator import Condition, DiffusionGenerator
from zoo.rewards import Reward


class RewardBackpropModule(DiffusionAlignmentModule):
    """Shared loop of ReFL and DRaFT-K: per minibatch of prompts, :meth:`differentiable_sample` returns the clean
    sample to score (with gradient through the truncated chain); the loss ``−mean R`` over finite rewards is
    backpropagated and an optimizer step is taken every ``grad_accum`` minibatches."""

    def __init__(self, generator: DiffusionGenerator, reward: Reward, **kwargs: Any) -> None:
        super().__init__(generator, reward, **kwargs)
        if not reward.differentiable:
            raise ValueError(f"{type(self).__name__} needs a differentiable reward; {type(reward).__name__} is not")

    def run_chain(
        self, x: torch.Tensor, start: int, stop: int, condition: Condition, null: Condition, grad_from: int
    ) -> torch.Tensor:
        """Sampler steps ``start … stop−1`` with the policy from level ``start``; gradient is kept from step
        ``grad_from`` on (earlier steps run under ``no_grad``). Noise comes from the module's random stream."""
        batch = x.shape[0]
        for k in range(start, stop):
            step = torch.full((batch,), k, device=x.device, dtype=torch.long)
            with torch.set_grad_enabled(k >= grad_from):
                out = self.policy_output(x, step, condition, null)
                mean, std = self.sampler.mean_std(out, x, step)
                noise = torch.randn(x.shape, generator=self.rng).to(device=x.device, dtype=x.dtype)
                x = mean + std.view(-1, *([1] * (x.dim() - 1))) * noise
        return x

    def differentiable_sample(self, prompts: Sequence[str]) -> torch.Tensor:
        """The clean sample (latent) whose reward is maximised, with gradient to the LoRA parameters."""
        raise NotImplementedError

    def training_step(self, batch: Sequence[str], batch_idx: int) -> None:
        totals = {"reward": 0.0, "loss": 0.0}
        norms: dict[str, float] = {}
        count = 0
        for i, index in enumerate(self.minibatches(len(batch))):
            prompts = [batch[j] for j in index.tolist()]
            rewards = self.compute_rewards(self.differentiable_sample(prompts), prompts)
            finite = self.finite_rows(rewards)
            if finite.any():
                loss = -rewards[finite].mean()
                self.manual_backward(loss / self.grad_accum)
                totals["reward"] += float(rewards[finite].detach().mean())
                totals["loss"] += float(loss.detach())
                count += 1
            if (i + 1) % self.grad_accum == 0:
                norms = self.clip_and_step()
        self.log_round({**{k: v / max(count, 1) for k, v in totals.items()}, **norms})

    def initial_noise(self, batch: int) -> torch.Tensor:
        return torch.randn(batch, *self.generator.latent_shape, generator=self.rng).to(self.device)


class ReFL(RewardBackpropModule):
    """ReFL: draw the
    stop step ``k`` uniformly from ``[first_step, n−1]`` (spec §3: steps 15–19 of 20), run steps ``< k`` without
    gradient, step ``k`` with gradient to x_{k+1}, and score ``x̂_θ(x_{k+1})`` (the policy's clean prediction;
    x_{k+1} itself at the final level)."""

    paper = Paper(
        title="ImageReward: Learning and Evaluating Human Preferences for Text-to-Image Generation",
        arxiv_id="2304.05977",
        bibtex=(
            "@inproceedings{xu2023imagereward,\n  title={ImageReward: Learning and Evaluating Human Preferences for "
            "Text-to-Image Generation},\n  author={Xu, Jiazheng and Liu, Xiao and Wu, Yuchen and Tong, Yuxuan and Li, "
            "Qinkai and Ding, Ming and Tang, Jie and Dong, Yuxiao},\n  booktitle={NeurIPS},\n  year={2023}\n}"
        ),
    )
    algorithm_name = "refl"
    tags = ("reward-backprop",)

    def __init__(self, generator: DiffusionGenerator, reward: Reward, first_step: int = 15, **kwargs: Any) -> None:
        super().__init__(generator, reward, **kwargs)
        if not 0 <= first_step < self.sampler.n:
            raise ValueError(f"first_step must be in [0, {self.sampler.n - 1}] for {self.sampler.n} steps, got {first_step}")
        self.first_step = first_step

    def differentiable_sample(self, prompts: Sequence[str]) -> torch.Tensor:
        batch = len(prompts)
        cond = self.generator.encode_prompts(list(prompts))
        null = self.generator.null_condition(batch)
        k = int(torch.randint(self.first_step, self.sampler.n, (1,), generator=self.rng))
        x = self.run_chain(self.initial_noise(batch), 0, k + 1, cond, null, grad_from=k)
        level = torch.full((batch,), k + 1, device=x.device, dtype=torch.long)
        return self.sampler.predict_x0(self.policy_output(x, level, cond, null), x, level)


class DRaFT(RewardBackpropModule):
    """DRaFT-K: sample without gradient to level ``n−K``, then the last ``K`` steps with gradient, and score the
    final sample (K = 1 in the Nabla-R2D3 comparison)."""

    paper = Paper(
        title="Directly Fine-Tuning Diffusion Models on Differentiable Rewards",
        arxiv_id="2309.17400",
        bibtex=(
            "@inproceedings{clark2024draft,\n  title={Directly Fine-Tuning Diffusion Models on Differentiable "
            "Rewards},\n  author={Clark, Kevin and Vicol, Paul and Swersky, Kevin and Fleet, David J.},\n  "
            "booktitle={ICLR},\n  year={2024}\n}"
        ),
    )
    algorithm_name = "draft-k"
    tags = ("reward-backprop",)

    def __init__(self, generator: DiffusionGenerator, reward: Reward, truncation: int = 1, **kwargs: Any) -> None:
        super().__init__(generator, reward, **kwargs)
        if not 1 <= truncation <= self.sampler.n:
            raise ValueError(f"truncation K must be in [1, {self.sampler.n}], got {truncation}")
        self.truncation = truncation

    def differentiable_sample(self, prompts: Sequence[str]) -> torch.Tensor:
        batch = len(prompts)
        cond = self.generator.encode_prompts(list(prompts))
        null = self.generator.null_condition(batch)
        n = self.sampler.n
        return self.run_chain(self.initial_noise(batch), 0, n, cond, null, grad_from=n - self.truncation)
