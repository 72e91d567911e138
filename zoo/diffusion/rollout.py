"""Rollouts of the denoising MDP: trajectory sampling, the one-round-lag rollout buffer and low-variance
transition subsampling (spec §1.3, §2.6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from zoo.diffusion.generator import Condition, DiffusionGenerator, map_condition
from zoo.diffusion.kernels import Sampler, gaussian_log_prob


@dataclass
class Trajectories:
    """A batch of sampled denoising trajectories (all on CPU between rounds).

    ``latents``: ``[B, n+1, *latent]`` levels x_T … x_0; ``eps_old``: ``[B, n, *latent]`` the CFG-combined ε of
    the sampling policy at each step (the trust-region target of Nabla-GFlowNet's ``L_reg``); ``log_probs``:
    ``[B, n]`` log p_old(x_{k+1}|x_k) (mean over dimensions, DDPO); ``rewards``: ``[B]`` fp32 reward of x_0
    (NaN where the reward was not finite); ``condition``/``null_condition``: encoded prompts.
    """

    latents: torch.Tensor
    eps_old: torch.Tensor
    log_probs: torch.Tensor
    rewards: torch.Tensor
    condition: Condition
    null_condition: Condition
    prompts: list[str]

    def __len__(self) -> int:
        return self.latents.shape[0]

    def select(self, index: torch.Tensor) -> Trajectories:
        """The trajectories at ``index`` (a 1-D long tensor)."""
        pick = lambda t: t[index]  # noqa: E731
        return Trajectories(
            latents=self.latents[index],
            eps_old=self.eps_old[index],
            log_probs=self.log_probs[index],
            rewards=self.rewards[index],
            condition=map_condition(pick, self.condition),
            null_condition=map_condition(pick, self.null_condition),
            prompts=[self.prompts[i] for i in index.tolist()],
        )

    def to(self, device: torch.device | str) -> Trajectories:
        move = lambda t: t.to(device)  # noqa: E731
        return Trajectories(
            latents=move(self.latents),
            eps_old=move(self.eps_old),
            log_probs=move(self.log_probs),
            rewards=move(self.rewards),
            condition=map_condition(move, self.condition),
            null_condition=map_condition(move, self.null_condition),
            prompts=list(self.prompts),
        )

    def state(self) -> dict:
        """Plain dict for checkpoints."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@torch.no_grad()
def sample_trajectories(
    generator: DiffusionGenerator,
    sampler: Sampler,
    prompts: Sequence[str],
    guidance_scale: float,
    rng: torch.Generator,
    device: torch.device | str,
) -> Trajectories:
    """Sample one trajectory per prompt with the current policy (classifier-free guided), storing every level,
    the guided ε and the per-step log-probabilities. Noise comes from ``rng`` (CPU) so runs are reproducible."""
    batch = len(prompts)
    condition = generator.encode_prompts(list(prompts))
    null = generator.null_condition(batch)
    x = torch.randn(batch, *generator.latent_shape, generator=rng).to(device)
    levels, eps_all, log_probs = [x], [], []
    for k in range(sampler.n):
        step = torch.full((batch,), k, device=device, dtype=torch.long)
        t = sampler.timesteps.to(device)[step]
        out = generator.guided_denoise(x, t, condition, null, guidance_scale)
        mean, std = sampler.mean_std(out, x, step)
        noise = torch.randn(x.shape, generator=rng).to(device=device, dtype=x.dtype)
        x_next = mean + std.view(-1, *([1] * (x.dim() - 1))) * noise
        eps_all.append(sampler.predict_eps(out, x, step))
        log_probs.append(gaussian_log_prob(x_next, mean, std))
        levels.append(x_next)
        x = x_next
    cpu = lambda t: t.detach().cpu()  # noqa: E731
    return Trajectories(
        latents=torch.stack(levels, 1).cpu(),
        eps_old=torch.stack(eps_all, 1).cpu(),
        log_probs=torch.stack(log_probs, 1).cpu(),
        rewards=torch.full((batch,), float("nan")),
        condition=map_condition(cpu, condition),
        null_condition=map_condition(cpu, null),
        prompts=list(prompts),
    )


class RolloutBuffer:
    """Holds the trajectories of the previous collection round (Nabla-GFlowNet's one-round lag, spec §1.3).

    With ``lag=True``, :meth:`exchange` stores the new round and returns the previous one (``None`` on the first
    round, which only collects); with ``lag=False`` it returns the new round itself (on-policy).
    """

    def __init__(self, lag: bool = True) -> None:
        self.lag = lag
        self.previous: Trajectories | None = None

    def exchange(self, current: Trajectories) -> Trajectories | None:
        if not self.lag:
            return current
        previous, self.previous = self.previous, current
        return previous

    def state_dict(self) -> dict:
        return {"previous": None if self.previous is None else self.previous.state()}

    def load_state_dict(self, state: dict) -> None:
        self.previous = None if state["previous"] is None else Trajectories(**state["previous"])


def subsample_steps(num_steps: int, timestep_fraction: float, num_chunks: int, rng: torch.Generator) -> torch.Tensor:
    """Low-variance transition subsampling (official ``low_var_subsampling``, spec §1.3/§2.6).

    ``K = max(1, int(num_steps·timestep_fraction))`` steps: the last step first, then ``K−1`` draws that cycle over
    ``num_chunks`` equal chunks of ``[0, num_steps)`` (one uniform step per chunk per cycle). With 20 steps,
    fraction 0.4 and 4 chunks this is R2D3's scheme: step 19, one step from each chunk of 5, one more from each of
    the first three chunks. Repeats are possible, as in the official code.
    """
    if num_steps % num_chunks:
        raise ValueError(f"num_steps={num_steps} must be divisible by num_chunks={num_chunks}")
    count = max(1, int(num_steps * timestep_fraction))
    size = num_steps // num_chunks
    chunk = torch.arange(count - 1) % num_chunks
    offsets = torch.randint(0, size, (count - 1,), generator=rng)
    return torch.cat([torch.tensor([num_steps - 1]), chunk * size + offsets])
