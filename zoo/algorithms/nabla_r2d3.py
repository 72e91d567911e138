"""Nabla-R2D3 (Liu et al., 2025) and full Nabla-GFlowNet (Liu et al., ICLR 2025): residual ∇-detailed-balance
finetuning of a diffusion model toward ``p_base · exp(β R)`` (spec §1.2, §2.6).

With ``flow_network=None`` (Nabla-R2D3, the official ``no_flow`` variant) the loss per transition x_t → x_{t-1} is

    L = ‖ s_θ − sg[ s_ref + β γ_t ∇_{x_{t-1}} R(decode(x̂_θ(x_{t-1}))) ] ‖² + λ ‖ε_θ(x_t) − ε_old(x_t)‖²,

with ``s = ∇_{x_{t-1}} log p(x_{t-1}|x_t)`` and ``γ_t ∈ {ᾱ, √ᾱ}`` of the level x_{t-1}. Given a flow network g_φ it
is full Nabla-GFlowNet: the target adds g_φ(x_{t-1}) (not detached), plus the reverse loss (trains φ only) and the
terminal loss ‖g_φ(x_0)‖², with g_φ in its own optimizer group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from zoo.algorithms.base import Paper
from zoo.algorithms.diffusion_base import DiffusionAlignmentModule
from zoo.configurable import Configurable
from zoo.diffusion.generator import Condition, DiffusionGenerator
from zoo.diffusion.kernels import gaussian_score
from zoo.diffusion.rollout import RolloutBuffer, Trajectories, subsample_steps
from zoo.rewards import Reward

GAMMA_MODES = ("squared", "sqrt")


class FlowNetwork(Configurable, nn.Module):
    """Residual flow score g_φ(x_t, t, c) of Nabla-GFlowNet: ``forward(latents, timesteps, condition)`` → a tensor
    shaped like ``latents``. The condition is whatever the generator's ``encode_prompts`` returns."""

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, condition: Condition) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(latents, timesteps, condition)")


class UNetFlowNetwork(FlowNetwork):
    """The official flow network for latent text-to-image models (spec §1.2): a ``UNet2DConditionModel`` with
    ``block_out_channels=(64, 128, 256, 256)``, one layer per block, cross-attention on the prompt embeddings,
    random init with only the ``conv_out`` bias zeroed. Runs in fp32."""

    def __init__(
        self,
        in_channels: int = 4,
        sample_size: int = 64,
        block_out_channels: Sequence[int] = (64, 128, 256, 256),
        cross_attention_dim: int = 768,
    ) -> None:
        super().__init__()
        self.net = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=in_channels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=1,
            cross_attention_dim=cross_attention_dim,
        )
        nn.init.zeros_(self.net.conv_out.bias)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, condition: Condition) -> torch.Tensor:
        hidden = condition if isinstance(condition, torch.Tensor) else condition["encoder_hidden_states"]
        return self.net(latents.float(), timesteps, encoder_hidden_states=hidden.float()).sample


class NablaR2D3(DiffusionAlignmentModule):
    """Nabla-R2D3 / Nabla-GFlowNet as a LightningModule (manual optimization, one backward per transition).

    Each training step is one collection round: the prompts of the batch are sampled with the current policy;
    with ``lag_rollouts`` (the official scheme, default) the module trains on the *previous* round's
    trajectories, each once, on ``timestep_fraction`` of its transitions chosen by chunked low-variance
    subsampling.

    Args (beyond :class:`DiffusionAlignmentModule`'s):
        reward_scale: β of the target ``p_base exp(βR)``.
        reg_scale: λ of the ε trust region ``‖ε_θ − ε_old‖²``.
        gamma_mode: γ_t = ᾱ (``"squared"``, official default) or √ᾱ (``"sqrt"``).
        timestep_fraction, num_chunks: transitions per trajectory and chunks of the low-variance subsampling.
        lag_rollouts: train on the previous round (official) instead of the current one.
        flow_network: g_φ; given, the module is full Nabla-GFlowNet (forward + reverse + terminal losses).
        reverse_loss_scale: w_B of the reverse loss (flow network only).
        flow_lr, flow_weight_decay: AdamW group of g_φ (official 1e-3, 1e-2).
    """

    paper = Paper(
        title="Nabla-R2D3: Effective and Efficient 3D Diffusion Alignment with 2D Rewards",
        arxiv_id="2506.15684",
        bibtex=(
            "@article{liu2025nablar2d3,\n  title={Nabla-R2D3: Effective and Efficient 3D Diffusion Alignment with 2D "
            "Rewards},\n  author={Liu, Qingming and Liu, Zhen and Zhang, Dinghuai and Jia, Kui},\n  journal={arXiv "
            "preprint arXiv:2506.15684},\n  year={2025}\n}"
        ),
    )
    algorithm_name = "nabla-r2d3"
    tags = ("gflownet", "score-matching")

    def __init__(
        self,
        generator: DiffusionGenerator,
        reward: Reward,
        reward_scale: float = 1e3,
        reg_scale: float = 1e3,
        gamma_mode: str = "squared",
        timestep_fraction: float = 0.4,
        num_chunks: int = 4,
        lag_rollouts: bool = True,
        flow_network: FlowNetwork | None = None,
        reverse_loss_scale: float = 1.0,
        flow_lr: float = 1e-3,
        flow_weight_decay: float = 1e-2,
        **kwargs: Any,
    ) -> None:
        super().__init__(generator, reward, **kwargs)
        if gamma_mode not in GAMMA_MODES:
            raise ValueError(f"gamma_mode must be one of {GAMMA_MODES}, got {gamma_mode!r}")
        if not reward.differentiable:
            raise ValueError(f"NablaR2D3 needs a differentiable reward; {type(reward).__name__} is not")
        self.reward_scale, self.reg_scale, self.gamma_mode = reward_scale, reg_scale, gamma_mode
        self.timestep_fraction, self.num_chunks = timestep_fraction, num_chunks
        self.flow_network = flow_network
        self.reverse_loss_scale = reverse_loss_scale
        self.flow_lr, self.flow_weight_decay = flow_lr, flow_weight_decay
        self.buffer = RolloutBuffer(lag=lag_rollouts)

    # ------------------------------------------------------------------ pieces of the loss
    def gamma(self, level: torch.Tensor) -> torch.Tensor:
        """γ_t of the forward-looking reward: ᾱ or √ᾱ of ``level`` (1 at the clean final level)."""
        abar = self.sampler.gamma(level)
        return abar if self.gamma_mode == "squared" else abar.sqrt()

    def reward_gradient(
        self, x: torch.Tensor, level: torch.Tensor, condition: Condition, null: Condition, prompts: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G(x) = β γ ∇_x R(decode(x̂_θ(x))) (detached; x̂ by the finetuned policy) and the reward values ``[B]``.

        Rows whose reward is not finite get G = 0 (their reward is returned as is, for the caller's mask).
        """
        z = x.detach().requires_grad_(True)
        with torch.enable_grad():
            x0 = self.sampler.predict_x0(self.policy_output(z, level, condition, null), z, level)
            rewards = self.compute_rewards(x0, prompts)
            finite = torch.isfinite(rewards)
            if finite.any():
                (grad,) = torch.autograd.grad(rewards[finite].sum(), z)
            else:
                grad = torch.zeros_like(z)
        scale = self.reward_scale * self.gamma(level)
        return (scale.view(-1, *([1] * (x.dim() - 1))) * grad).detach(), rewards.detach()

    def log_prob_grad_wrt_current(
        self, x: torch.Tensor, x_next: torch.Tensor, step: torch.Tensor, condition: Condition, null: Condition, reference: bool
    ) -> torch.Tensor:
        """r = ∇_{x_t} log p(x_{t-1}|x_t) through the transition mean (detached: the reverse loss trains φ only)."""
        z = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = (self.reference_output if reference else self.policy_output)(z, step, condition, null)
            mean, std = self.sampler.mean_std(out, z, step)
            log_p = -((x_next - mean) ** 2).flatten(1).sum(1) / (2 * std**2)
            (grad,) = torch.autograd.grad(log_p.sum(), z)
        return grad.detach()

    def transition_loss(self, trajs: Trajectories, step: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, float]]:
        """The loss of one transition per trajectory (``step`` ``[B]``), averaged over the finite rows; ``None``
        when no row is finite. See the module docstring; per-row terms are means over latent dimensions."""
        rows = torch.arange(len(trajs), device=step.device)
        x, x_next = trajs.latents[rows, step], trajs.latents[rows, step + 1]
        cond, null, prompts = trajs.condition, trajs.null_condition, trajs.prompts
        end = step + 1 == self.sampler.n
        with torch.no_grad():
            ref_mean, std = self.sampler.mean_std(self.reference_output(x, step, cond, null), x, step)
            ref_score = gaussian_score(x_next, ref_mean, std)
        out = self.policy_output(x, step, cond, null)
        reg = ((self.sampler.predict_eps(out, x, step) - trajs.eps_old[rows, step]) ** 2).flatten(1).mean(1)
        mean, std = self.sampler.mean_std(out, x, step)
        score = gaussian_score(x_next, mean, std)
        guess, rewards = self.reward_gradient(x_next, step + 1, cond, null, prompts)
        target = ref_score + guess
        per_row = {"reg": reg}
        if self.flow_network is not None:
            t_next = self.sampler.timesteps.to(x.device)[step + 1]
            flow_next = self.flow_network(x_next, t_next, cond)
            keep = (~end).to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
            target = target + keep * flow_next
            # reverse: r_θ − [r_ref − g_φ(x_t) − G(x_t)], zero on end rows; r_θ, r_ref, G constant → trains φ only
            r_policy = self.log_prob_grad_wrt_current(x, x_next, step, cond, null, reference=False)
            r_ref = self.log_prob_grad_wrt_current(x, x_next, step, cond, null, reference=True)
            guess_now, rewards_now = self.reward_gradient(x, step, cond, null, prompts)
            flow_now = self.flow_network(x, self.sampler.timesteps.to(x.device)[step], cond)
            reverse = ((r_policy - (r_ref - flow_now - guess_now)) ** 2).flatten(1).mean(1) * (~end)
            terminal = (flow_next**2).flatten(1).mean(1) * end
            per_row.update(reverse=reverse, terminal=terminal)
            rewards = torch.stack([rewards, rewards_now], 1)
        forward = ((score - target) ** 2).flatten(1).mean(1)
        per_row["forward"] = forward
        finite = self.finite_rows(rewards, guess, *per_row.values())
        if not finite.any():
            return None, {}
        stats = {name: value[finite].mean() for name, value in per_row.items()}
        gfn = stats["forward"]
        if self.flow_network is not None:
            gfn = gfn + self.reverse_loss_scale * stats["reverse"] + stats["terminal"]
        loss = gfn + self.reg_scale * stats["reg"]
        return loss, {k: float(v.detach()) for k, v in stats.items()}

    # ------------------------------------------------------------------ training
    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = super().parameter_groups()
        if self.flow_network is not None:
            groups.append(
                {"params": list(self.flow_network.parameters()), "lr": self.flow_lr, "weight_decay": self.flow_weight_decay}
            )
        return groups

    def training_step(self, batch: Sequence[str], batch_idx: int) -> None:
        current = self.rollout(batch)
        metrics: dict[str, float] = {"reward": float(current.rewards.nanmean())}
        trajs = self.buffer.exchange(current)
        if trajs is not None:
            metrics.update(self.train_on(trajs.to(self.device)))
        self.log_round(metrics)

    def train_on(self, trajs: Trajectories) -> dict[str, float]:
        """One pass over ``trajs``: minibatches × subsampled transitions, one backward per transition, an
        optimizer step every ``grad_accum`` minibatches (loss scaled by 1/(grad_accum × transitions))."""
        totals: dict[str, float] = {}
        norms: dict[str, float] = {}
        count = 0
        for i, index in enumerate(self.minibatches(len(trajs))):
            mb = trajs.select(index.to(trajs.latents.device))
            steps = torch.stack(
                [subsample_steps(self.sampler.n, self.timestep_fraction, self.num_chunks, self.rng) for _ in index]
            ).to(self.device)
            for j in range(steps.shape[1]):
                loss, stats = self.transition_loss(mb, steps[:, j])
                if loss is None:
                    continue
                self.manual_backward(loss / (self.grad_accum * steps.shape[1]))
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
                count += 1
            if (i + 1) % self.grad_accum == 0:
                norms = self.clip_and_step()
        return {**{f"loss_{k}": v / max(count, 1) for k, v in totals.items()}, **norms}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["zoo_rollout_buffer"] = self.buffer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.buffer.load_state_dict(checkpoint["zoo_rollout_buffer"])

    def card_metadata(self) -> dict[str, Any]:
        meta = super().card_metadata()
        meta["tags"] = meta["tags"] + (["nabla-gflownet"] if self.flow_network is not None else [])
        return meta
