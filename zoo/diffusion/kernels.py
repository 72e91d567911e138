"""Transition kernels of the denoising MDP: one reverse-diffusion step as a Gaussian policy.

Every step ``k → k+1`` of a sampler is ``x_{k+1} ~ N(μ_θ(x_k), σ_k² I)`` with the mean linear in the current
sample and the clean-sample prediction, ``μ = a_k·x_k + b_k·x̂₀(x_k)``. :class:`Sampler` precomputes
``(a_k, b_k, σ_k)`` from a diffusers scheduler so that, for the same noise, ``μ + σ·noise`` equals the
scheduler's own ``step()`` (tested):

* ``ddim``: ``DDIMScheduler`` with η (Song et al. 2021, eq. 12; η = 1 is the DDPM-like ancestral sampler
  Nabla-GFlowNet uses, spec §1.4): ``μ = √ᾱ_prev x̂₀ + √(1−ᾱ_prev−σ²)·ε̂``,
  ``σ = η √((1−ᾱ_prev)/(1−ᾱ_t)·(1−ᾱ_t/ᾱ_prev))``.
* ``sde-dpmsolver++``: first-order SDE-DPM-Solver++ (``DPMSolverMultistepScheduler`` with
  ``algorithm_type="sde-dpmsolver++"``, ``solver_order=1``, ``final_sigmas_type="sigma_min"``; Lu et al. 2022,
  spec §2.2): ``h = λ_next − λ_cur``, ``μ = (σ_next/σ_cur) e^{−h} x + α_next (1 − e^{−2h}) x̂₀``,
  ``std = σ_next √(1 − e^{−2h})``.

**Levels and the x̂₀ timestep convention.** Level ``k ∈ [0, n]`` is the sample before step ``k`` (level ``n`` is
the final sample). Level ``k < n`` is queried at ``timesteps[k]`` with ``(α_k, σ_k) = (√ᾱ, √(1−ᾱ))`` of that
timestep (DPM: from the scheduler's ``sigmas[k]``, as its ``step()`` does). The final level is treated as clean:
``x̂₀(x_n) = x_n`` and ``γ_n = 1`` (the official code forces ᾱ = 1 there). The reward gradient at ``x_{k+1}``
therefore queries the network at level ``k+1``'s own timestep — the timestep shift is applied once, not twice
as in the official DPM path (spec §2.9).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

SAMPLERS = ("ddim", "sde-dpmsolver++")


def _expand(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample coefficients ``[B]`` broadcast against ``like`` ``[B, ...]``."""
    return coef.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


def gaussian_score(x_next: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``∇_{x_next} log N(x_next; mean, std² I) = −(x_next − mean)/std²`` (spec §1.1)."""
    return -(x_next - mean) / _expand(std, mean) ** 2


def gaussian_log_prob(x_next: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``log N(x_next; mean, std² I)`` averaged over the non-batch dimensions (DDPO's convention), shape ``[B]``."""
    s = _expand(std, mean)
    per_dim = -((x_next - mean) ** 2) / (2 * s**2) - torch.log(s) - 0.5 * math.log(2 * math.pi)
    return per_dim.flatten(1).mean(1)


class Sampler:
    """A diffusers sampler turned into per-step Gaussian transition kernels (see the module docstring).

    Args:
        scheduler_config: the generator's noise-schedule config (``DiffusionGenerator.scheduler_config``).
        kind: ``"ddim"`` or ``"sde-dpmsolver++"``.
        num_steps: number of denoising steps ``n``.
        eta: DDIM's η (> 0: the policy must be stochastic to have a score and a log-probability).
    """

    def __init__(self, scheduler_config: dict[str, Any], kind: str = "ddim", num_steps: int = 50, eta: float = 1.0) -> None:
        if kind not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {kind!r}")
        config = dict(scheduler_config)
        if config.get("clip_sample") or config.get("thresholding"):
            raise ValueError(
                "the generator's scheduler_config clips or thresholds x̂₀ (clip_sample/thresholding), which makes the "
                "transition mean non-linear in the model output; set clip_sample: false and thresholding: false"
            )
        config["clip_sample"] = False
        self.kind, self.num_steps, self.eta = kind, num_steps, eta
        self.prediction_type = config.get("prediction_type", "epsilon")
        if kind == "ddim":
            if eta <= 0:
                raise ValueError("ddim needs eta > 0 for a stochastic policy (eta=1 is the DDPM-like sampler)")
            self.scheduler = DDIMScheduler.from_config(config)
        else:
            self.scheduler = DPMSolverMultistepScheduler.from_config(
                config, algorithm_type="sde-dpmsolver++", solver_order=1, final_sigmas_type="sigma_min"
            )
        self.scheduler.set_timesteps(num_steps)
        sched = self.scheduler
        timesteps = sched.timesteps.long()
        n = len(timesteps)
        alphas_cumprod = sched.alphas_cumprod.double()
        if kind == "ddim":
            abar = alphas_cumprod[timesteps]
            prev_t = timesteps - sched.config.num_train_timesteps // num_steps
            abar_prev = torch.where(
                prev_t >= 0, alphas_cumprod[prev_t.clamp(min=0)], torch.as_tensor(float(sched.final_alpha_cumprod)).double()
            )
            variance = (1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)
            std = eta * variance.sqrt()
            direction = (1 - abar_prev - std**2).clamp(min=0).sqrt()  # coefficient of ε̂
            alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
            # μ = √ᾱ_prev x̂₀ + c ε̂, ε̂ = (x − α x̂₀)/σ  ⇒  a = c/σ, b = √ᾱ_prev − c α/σ
            coef_x = direction / sigma
            coef_x0 = abar_prev.sqrt() - direction * alpha / sigma
        else:
            ve_sigmas = sched.sigmas.double()  # √((1−ᾱ)/ᾱ), n + 1 entries (the last is sigma_min)
            alpha_all = 1 / (ve_sigmas**2 + 1).sqrt()
            sigma_all = ve_sigmas * alpha_all
            lam = torch.log(alpha_all) - torch.log(sigma_all)
            h = lam[1:] - lam[:-1]
            alpha, sigma = alpha_all[:-1], sigma_all[:-1]
            coef_x = sigma_all[1:] / sigma * torch.exp(-h)
            coef_x0 = alpha_all[1:] * (1 - torch.exp(-2 * h))
            std = sigma_all[1:] * (1 - torch.exp(-2 * h)).sqrt()
        one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        #: query timestep of each level (the final, clean level's entry is 0 and never used by the network)
        self.timesteps = torch.cat([timesteps, torch.zeros(1, dtype=torch.long)])
        #: (α, σ) of each level for x̂₀ / ε̂ conversions; the final level is clean (α = 1, σ = 0)
        self.alpha = torch.cat([alpha, one]).float()
        self.sigma = torch.cat([sigma, zero]).float()
        #: per step k (k → k+1): μ = coef_x·x + coef_x0·x̂₀, standard deviation std
        self.coef_x, self.coef_x0, self.std = coef_x.float(), coef_x0.float(), std.float()
        if not bool((self.std > 0).all()):
            raise ValueError(f"{kind} with {num_steps} steps has a zero-variance step; the policy must be stochastic")
        self.n = n

    # ------------------------------------------------------------------ per-level conversions
    def gamma(self, level: torch.Tensor) -> torch.Tensor:
        """ᾱ of each level (``[B]``), 1 at the clean final level: γ_t of the forward-looking reward (spec §1.1)."""
        return self.alpha.to(level.device)[level] ** 2

    def predict_x0(self, model_output: torch.Tensor, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """x̂₀ of ``x`` at ``level`` (``[B]``) from the raw prediction; at the final level x̂₀ = x."""
        a = _expand(self.alpha.to(level.device)[level], x)
        s = _expand(self.sigma.to(level.device)[level], x)
        if self.prediction_type == "epsilon":
            x0 = (x - s * model_output) / a
        elif self.prediction_type == "v_prediction":
            x0 = a * x - s * model_output
        elif self.prediction_type == "sample":
            x0 = model_output
        else:
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")
        clean = _expand((level == self.n).to(x.dtype), x)
        return clean * x + (1 - clean) * x0

    def predict_eps(self, model_output: torch.Tensor, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """ε̂ of ``x`` at a noisy ``level`` (< n) from the raw prediction."""
        if self.prediction_type == "epsilon":
            return model_output
        a = _expand(self.alpha.to(level.device)[level], x)
        s = _expand(self.sigma.to(level.device)[level], x)
        return (x - a * self.predict_x0(model_output, x, level)) / s

    # ------------------------------------------------------------------ the kernel
    def mean_std(self, model_output: torch.Tensor, x: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``μ`` (like ``x``) and standard deviation ``σ`` (``[B]``) of ``p(x_{k+1} | x_k)`` at ``step`` k."""
        x0 = self.predict_x0(model_output, x, step)
        dev = step.device
        mean = _expand(self.coef_x.to(dev)[step], x) * x + _expand(self.coef_x0.to(dev)[step], x) * x0
        return mean, self.std.to(dev)[step].to(x.dtype)

    def step(self, model_output: torch.Tensor, x: torch.Tensor, step: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_{k+1} = μ + σ·noise``."""
        mean, std = self.mean_std(model_output, x, step)
        return mean + _expand(std, mean) * noise

    def kl_to(self, mean: torch.Tensor, ref_mean: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Closed-form ``KL(N(μ,σ²I) ‖ N(μ_ref,σ²I)) = ‖μ − μ_ref‖²/(2σ²)`` per sample (``[B]``), shared σ."""
        std = self.std.to(step.device)[step].to(mean.dtype)
        return ((mean - ref_mean) ** 2).flatten(1).sum(1) / (2 * std**2)
