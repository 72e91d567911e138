"""Shared machinery of the diffusion alignment algorithms (Nabla-R2D3 / Nabla-GFlowNet, DDPO, ReFL, DRaFT-K):
the LoRA policy on a :class:`~zoo.diffusion.DiffusionGenerator`, the sampler, rollouts, the NaN-safe reward call,
optimizer stepping with per-group gradient clipping, evaluation metrics and checkpointed randomness."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import MeanMetric

from zoo.algorithms.base import AlignmentModule
from zoo.diffusion.generator import Condition, DiffusionGenerator
from zoo.diffusion.kernels import Sampler
from zoo.diffusion.lora import adapters_disabled, add_lora
from zoo.diffusion.rollout import Trajectories, sample_trajectories
from zoo.rewards import Reward


def pairwise_diversity(images: torch.Tensor) -> torch.Tensor:
    """Mean over pairs ``i < j`` of the root-mean-square pixel difference between samples ``[B, ...]`` (a scalar;
    0 for identical samples). A pixel-space diversity measure that needs no extra model."""
    flat = images.flatten(1).float()
    batch = flat.shape[0]
    if batch < 2:
        return flat.new_zeros(())
    dist = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    i, j = torch.triu_indices(batch, batch, offset=1)
    return dist[i, j].mean()


class DiffusionAlignmentModule(AlignmentModule):
    """Base class of the diffusion alignment algorithms (manual optimization).

    Args:
        generator: the model being finetuned; LoRA adapters are added to ``generator.denoiser``.
        reward: the reward the samples are aligned to (scores computed in fp32).
        sampler: ``"ddim"`` (η) or ``"sde-dpmsolver++"`` (first order), see :mod:`zoo.diffusion.kernels`.
        num_steps: denoising steps per trajectory.
        eta: DDIM's η (1 = DDPM-like ancestral sampling).
        guidance_scale: classifier-free guidance weight ``w`` (``ε_u + w(ε_c − ε_u)``).
        lora_rank, lora_alpha: LoRA rank and scale (alpha defaults to the rank, PEFT's default in the papers' code).
        lr, weight_decay, adam_betas, adam_eps: AdamW of the LoRA parameters.
        max_grad_norm: gradient-norm clip per parameter group before every optimizer step.
        train_batch_size: trajectories (or prompts) per backward pass.
        grad_accum: backward passes per optimizer step.
        seed: seed of the module's own random stream (sampling noise, prompt-free choices such as transition
            subsampling and camera draws); saved in checkpoints so that resumed runs continue identically.
    """

    def __init__(
        self,
        generator: DiffusionGenerator,
        reward: Reward,
        sampler: str = "ddim",
        num_steps: int = 50,
        eta: float = 1.0,
        guidance_scale: float = 5.0,
        lora_rank: int = 8,
        lora_alpha: float | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        adam_betas: Sequence[float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        max_grad_norm: float = 1.0,
        train_batch_size: int = 1,
        grad_accum: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator = generator
        self.reward = reward
        self.reward.requires_grad_(False)
        self.lora_parameters = add_lora(generator.denoiser, generator.lora_targets, lora_rank, lora_alpha)
        self.sampler = Sampler(generator.scheduler_config, sampler, num_steps, eta)
        self.guidance_scale = guidance_scale
        self.lr, self.weight_decay, self.adam_betas, self.adam_eps = lr, weight_decay, tuple(adam_betas), adam_eps
        self.max_grad_norm = max_grad_norm
        self.train_batch_size, self.grad_accum = train_batch_size, grad_accum
        self.seed = seed
        self.rng = torch.Generator().manual_seed(seed)
        #: samples whose reward (or reward gradient) was NaN/inf and were left out of a loss
        self.skipped_nonfinite = 0
        self.metrics = nn.ModuleDict(dict(self.configure_metrics()))

    # ------------------------------------------------------------------ policy / reference
    def policy_output(self, x: torch.Tensor, level: torch.Tensor, condition: Condition, null: Condition) -> torch.Tensor:
        """CFG-combined raw prediction of the finetuned policy (LoRA on) at ``level`` (``[B]``)."""
        t = self.sampler.timesteps.to(x.device)[level]
        return self.generator.guided_denoise(x, t, condition, null, self.guidance_scale)

    def reference_output(self, x: torch.Tensor, level: torch.Tensor, condition: Condition, null: Condition) -> torch.Tensor:
        """The same prediction by the base model (adapters disabled; no second copy of the weights)."""
        with adapters_disabled(self.generator.denoiser):
            return self.policy_output(x, level, condition, null)

    # ------------------------------------------------------------------ rewards
    def compute_rewards(self, samples: torch.Tensor, batch: Sequence[str], *, random_cameras: bool = True) -> torch.Tensor:
        """Reward hook: decode clean latents ``samples`` and score them for the prompts ``batch``; fp32 ``[B]``.

        Cameras (3D generators) are drawn from the module's random stream.
        """
        renders = self.generator.decode(samples, generator=self.rng, random_cameras=random_cameras)
        return self.reward.score(renders, batch)

    def finite_rows(self, *tensors: torch.Tensor) -> torch.Tensor:
        """Rows (samples) whose values are all finite in every tensor; the others are counted as skipped."""
        ok = torch.ones(tensors[0].shape[0], dtype=torch.bool, device=tensors[0].device)
        for t in tensors:
            ok &= torch.isfinite(t.detach().flatten(1) if t.dim() > 1 else t.detach().view(-1, 1)).all(1)
        self.skipped_nonfinite += int((~ok).sum())
        return ok

    def rollout(self, prompts: Sequence[str], rng: torch.Generator | None = None) -> Trajectories:
        """Sample trajectories with the current policy and score their final samples (NaN where not finite)."""
        trajs = sample_trajectories(
            self.generator, self.sampler, prompts, self.guidance_scale, self.rng if rng is None else rng, self.device
        )
        with torch.no_grad():
            rewards = self.compute_rewards(trajs.latents[:, -1].to(self.device), list(prompts))
        trajs.rewards = torch.where(torch.isfinite(rewards), rewards, torch.nan).cpu()
        return trajs

    # ------------------------------------------------------------------ optimization
    def parameter_groups(self) -> list[dict[str, Any]]:
        """AdamW parameter groups; each group is clipped separately. Subclasses append their own groups."""
        return [{"params": self.lora_parameters, "lr": self.lr, "weight_decay": self.weight_decay}]

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameter_groups(), betas=self.adam_betas, eps=self.adam_eps)

    def clip_and_step(self) -> dict[str, float]:
        """Clip each group's gradient norm to ``max_grad_norm``, take an AdamW step, zero the gradients."""
        opt = self.optimizers()
        norms = {}
        for i, group in enumerate(opt.param_groups):
            norms[f"grad_norm_{i}"] = float(torch.nn.utils.clip_grad_norm_(group["params"], self.max_grad_norm))
        opt.step()
        opt.zero_grad(set_to_none=True)
        return norms

    def minibatches(self, count: int) -> list[torch.Tensor]:
        """A shuffled split of ``range(count)`` into ``train_batch_size`` chunks (module random stream)."""
        if count % (self.train_batch_size * self.grad_accum):
            raise ValueError(
                f"a round of {count} samples cannot be split into optimizer steps of train_batch_size="
                f"{self.train_batch_size} × grad_accum={self.grad_accum}; make the prompt batch size a multiple"
            )
        return list(torch.randperm(count, generator=self.rng).split(self.train_batch_size))

    # ------------------------------------------------------------------ evaluation
    def configure_metrics(self) -> Mapping[str, Any]:
        """``reward``: mean reward; ``path_kl``: closed-form KL of the policy's path to the base model's,
        ``Σ_k ‖μ_θ − μ_ref‖²/(2σ_k²)`` along the policy's own trajectories (prior preservation, needs no extra
        model); ``diversity``: mean pairwise RMS image distance within a prompt batch."""
        return {"reward": MeanMetric(), "path_kl": MeanMetric(), "diversity": MeanMetric()}

    @torch.no_grad()
    def evaluate(self, prompts: Sequence[str], rng: torch.Generator) -> dict[str, torch.Tensor]:
        """Rewards ``[B]``, path KL ``[B]`` and images of fresh policy samples for ``prompts``."""
        trajs = sample_trajectories(self.generator, self.sampler, prompts, self.guidance_scale, rng, self.device)
        trajs = trajs.to(self.device)
        batch = len(prompts)
        kl = torch.zeros(batch, device=self.device)
        for k in range(self.sampler.n):
            step = torch.full((batch,), k, device=self.device, dtype=torch.long)
            x = trajs.latents[:, k]
            mean, _ = self.sampler.mean_std(self.policy_output(x, step, trajs.condition, trajs.null_condition), x, step)
            ref = self.reference_output(x, step, trajs.condition, trajs.null_condition)
            ref_mean, _ = self.sampler.mean_std(ref, x, step)
            kl += self.sampler.kl_to(mean, ref_mean, step)
        renders = self.generator.decode(trajs.latents[:, -1], generator=rng, random_cameras=False)
        return {"rewards": self.reward.score(renders, list(prompts)), "path_kl": kl, "images": renders.images}

    def validation_step(self, batch: Sequence[str], batch_idx: int) -> None:
        rng = torch.Generator().manual_seed(self.seed + 1 + batch_idx)  # same noise at every validation
        out = self.evaluate(batch, rng)
        finite = torch.isfinite(out["rewards"])
        self.metrics["reward"].update(out["rewards"][finite])
        self.metrics["path_kl"].update(out["path_kl"])
        self.metrics["diversity"].update(pairwise_diversity(out["images"]))

    def on_validation_epoch_end(self) -> None:
        self.log_metrics({name: metric.compute() for name, metric in self.metrics.items()}, prefix="val/")
        for metric in self.metrics.values():
            metric.reset()

    # ------------------------------------------------------------------ logging / checkpoints
    def log_round(self, metrics: Mapping[str, float | torch.Tensor]) -> None:
        """Log a training round's scalars, with the running count of skipped non-finite samples."""
        self.log_metrics({**metrics, "skipped_nonfinite": float(self.skipped_nonfinite)}, batch_size=1)

    def state_dict_to_save(self) -> dict[str, torch.Tensor]:
        """Only the trainable tensors (LoRA adapters and any trained networks); the generator's frozen weights
        are rebuilt from its own source."""
        trainable = {id(p) for p in self.parameters() if p.requires_grad} | {id(p) for p in self.lora_parameters}
        return {k: v for k, v in self.state_dict(keep_vars=True).items() if id(v) in trainable}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo_rng_state"] = self.rng.get_state()
        checkpoint["zoo_skipped_nonfinite"] = self.skipped_nonfinite

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.rng.set_state(checkpoint["zoo_rng_state"])
        self.skipped_nonfinite = checkpoint["zoo_skipped_nonfinite"]

    def card_metadata(self) -> dict[str, Any]:
        return {"tags": ["diffusion", "lora"]}

