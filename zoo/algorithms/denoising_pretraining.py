"""Denoising-diffusion pretraining of a class-conditional prior (DDPM, Ho et al. 2020; v-prediction, Salimans & Ho
2022 §4), with label dropout for classifier-free guidance (Ho & Salimans 2022).

Given clean ``x0`` and labels, draw ``t ~ U{0..T-1}`` and ``ε ~ N(0, I)``, form ``x_t = α_t x0 + σ_t ε`` with
``α_t = √ᾱ_t``, ``σ_t = √(1-ᾱ_t)``, and regress the denoiser output on the target of ``prediction_type``:
``epsilon`` → ε, ``v_prediction`` → ``v = α_t ε − σ_t x0``, ``sample`` → x0 (mean squared error).
"""

from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler
from torch import nn

from zoo.algorithms.base import AlignmentModule, Paper

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def diffusion_target(x0: torch.Tensor, noise: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The regression target of ``prediction_type`` (``alpha``/``sigma`` broadcast to ``x0``)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return alpha * noise - sigma * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


class DenoisingPretraining(AlignmentModule):
    """Pretrains ``denoiser(x_t, t, labels)`` (any module with a ``null_label`` attribute) as a diffusion prior.

    The noise schedule is diffusers' ``DDPMScheduler(num_train_timesteps, beta_schedule)``, which the samplers
    rebuild from the same two values. AdamW with linear warm-up then cosine decay to 0 at ``trainer.max_steps``.
    """

    paper = Paper(
        title="Denoising Diffusion Probabilistic Models",
        arxiv_id="2006.11239",
        bibtex=(
            "@inproceedings{ho2020ddpm, title={Denoising Diffusion Probabilistic Models}, author={Ho, Jonathan and "
            "Jain, Ajay and Abbeel, Pieter}, booktitle={NeurIPS}, year={2020}}"
        ),
    )
    algorithm_name = "denoising-pretraining"
    tags = ("diffusion-prior",)

    def __init__(
        self,
        denoiser: nn.Module,
        prediction_type: str = "v_prediction",
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        label_dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 200,
    ) -> None:
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.denoiser = denoiser
        self.prediction_type = prediction_type
        self.num_train_timesteps, self.beta_schedule = num_train_timesteps, beta_schedule
        self.label_dropout, self.lr, self.weight_decay, self.warmup_steps = label_dropout, lr, weight_decay, warmup_steps
        scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.clone().float(), persistent=False)

    def loss(self, x0: torch.Tensor, labels: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """MSE between the denoiser output at ``x_t`` and the target of :attr:`prediction_type`."""
        abar = self.alphas_cumprod[timesteps].view(-1, *([1] * (x0.dim() - 1)))
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        x_t = alpha * x0 + sigma * noise
        prediction = self.denoiser(x_t, timesteps, labels)
        return torch.nn.functional.mse_loss(prediction, diffusion_target(x0, noise, alpha, sigma, self.prediction_type))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x0, labels = batch
        drop = torch.rand(labels.shape, device=labels.device) < self.label_dropout
        labels = torch.where(drop, torch.full_like(labels, self.denoiser.null_label), labels)
        timesteps = torch.randint(0, self.num_train_timesteps, labels.shape, device=x0.device)
        loss = self.loss(x0, labels, timesteps, torch.randn_like(x0))
        self.log_metrics({"loss": loss}, prog_bar=True)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = self.trainer.max_steps if self.trainer is not None and self.trainer.max_steps > 0 else None

        def schedule(step: int) -> float:
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            if total is None:
                return 1.0
            progress = min(1.0, (step - self.warmup_steps) / max(1, total - self.warmup_steps))
            return 0.5 * (1 + math.cos(math.pi * progress))

        lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "interval": "step"}}

    def card_metadata(self) -> dict:
        return {"tags": [f"prediction-{self.prediction_type}"]}
