"""GRPO loss parity with TRL 1.16: TRL's own ``GRPOTrainer._compute_loss`` runs on the same per-token tensors.

TRL is the independent reference: its method is called unbound on a minimal stand-in trainer whose
``_get_per_token_logps_and_entropies`` hands back our log-prob tensor (so both sides differentiate the same leaf),
and the loss values, the gradients w.r.t. the log-probs and the logged kl / clip ratios are compared.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from zoo.algorithms.grpo import aggregate_loss, group_advantages, masked_mean, per_token_grpo_terms

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")
trl_utils = pytest.importorskip("trl.trainer.utils")

# Both sides do the same float64 operations in possibly different orders: agreement to 1e-12 relative.
RTOL, ATOL = 1e-10, 1e-12


class _Accelerator:
    """One process: reduce/gather are identities (what accelerate does with num_processes=1)."""

    def __init__(self, num_processes: int = 1) -> None:
        self.num_processes = num_processes
        self.sync_gradients = True

    def reduce(self, tensor, reduction="sum"):
        return tensor

    def gather(self, tensor):
        return tensor


def _trl_stand_in(logps, entropies, *, loss_type, beta, eps_low, eps_high, ga, max_len, world, steps_per_gen):
    stand_in = SimpleNamespace(
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=ga,
        max_completion_length=max_len,
        accelerator=_Accelerator(world),
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=steps_per_gen),
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    stand_in._get_per_token_logps_and_entropies = lambda *a, **k: (logps, entropies, None)
    return stand_in


def _batch(seed: int, B: int = 6, T: int = 5, off_policy: bool = True):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, 11, generator=g, dtype=torch.float64)
    tokens = torch.randint(0, 11, (B, T), generator=g)
    logps = torch.log_softmax(logits / 0.7, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    lengths = torch.tensor([5, 3, 1, 4, 5, 2][:B])
    mask = (torch.arange(T) < lengths[:, None]).long()
    # old/ref differ from logp by up to ±0.5 nats so that both clip regions and the KL are exercised
    old = logps + 0.5 * (2 * torch.rand(B, T, generator=g, dtype=torch.float64) - 1) if off_policy else None
    ref = logps + 0.4 * (2 * torch.rand(B, T, generator=g, dtype=torch.float64) - 1)
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.25, 0.0, 1.0][:B], dtype=torch.float64)
    return logps.detach(), mask, old, ref.detach(), rewards


CASES = list(
    itertools.product(["grpo", "bnpo", "dr_grpo", "dapo"], [False, True], [0.0, 0.04], [(0.2, None), (0.2, 0.28)], [1, 3])
)


@pytest.mark.parametrize("loss_type,off_policy,beta,eps,ga", CASES)
def test_loss_and_gradient_match_trl(loss_type, off_policy, beta, eps, ga):
    eps_low, eps_high = eps
    base, mask, old, ref, rewards = _batch(seed=len(loss_type) + 7 * ga, off_policy=off_policy)
    advantages, _ = group_advantages(rewards, group_size=3, scale_rewards="group")
    # dapo: the generation batch spans GA micro-batches; pretend the others hold 17 more completion tokens
    n_items = mask.sum() + 17
    max_len = 8

    ours_logps = base.clone().requires_grad_(True)
    terms = per_token_grpo_terms(
        ours_logps, advantages, old_logps=old, ref_logps=ref if beta else None, beta=beta,
        epsilon_low=eps_low, epsilon_high=eps_high,
    )
    ours = aggregate_loss(
        terms.loss, mask, loss_type, grad_accum_steps=ga, max_completion_length=max_len,
        num_items_in_batch=n_items, world_size=1, steps_per_generation=ga,
    )
    ours.backward()

    trl_logps = base.clone().requires_grad_(True)
    stand_in = _trl_stand_in(
        trl_logps, torch.zeros_like(base), loss_type=loss_type, beta=beta, eps_low=eps_low,
        eps_high=eps_high if eps_high is not None else eps_low, ga=ga, max_len=max_len, world=1, steps_per_gen=ga,
    )
    inputs = {
        "prompt_ids": torch.zeros(6, 2, dtype=torch.long),
        "prompt_mask": torch.ones(6, 2, dtype=torch.long),
        "completion_ids": torch.zeros(6, 5, dtype=torch.long),
        "completion_mask": mask,
        "advantages": advantages,
        "num_items_in_batch": n_items,
    }
    if off_policy:
        inputs["old_per_token_logps"] = old
    if beta:
        inputs["ref_per_token_logps"] = ref
    theirs = trl_grpo.GRPOTrainer._compute_loss(stand_in, None, inputs)
    theirs.backward()

    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(ours_logps.grad, trl_logps.grad, rtol=RTOL, atol=ATOL)
    assert ours_logps.grad.abs().sum() > 0  # the loss is not a constant of the log-probs
    logged = stand_in._metrics["train"]
    torch.testing.assert_close(masked_mean(terms.low_clipped.double(), mask).item(), logged["clip_ratio/low_mean"][0])
    torch.testing.assert_close(masked_mean(terms.high_clipped.double(), mask).item(), logged["clip_ratio/high_mean"][0])
    if beta:
        torch.testing.assert_close(masked_mean(terms.kl, mask).item(), logged["kl"][0])
    else:
        assert terms.kl is None and "kl" not in logged
    if off_policy:
        assert (terms.low_clipped | terms.high_clipped).any()  # the case really exercises clipping


def test_dapo_over_ranks_and_micro_batches_is_the_global_token_mean():
    """dapo with world=2, GA=2: summing the micro-batch losses and averaging over ranks (DDP) gives Σℓ/N_tok."""
    g = torch.Generator().manual_seed(3)
    losses = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(4)]
    masks = [(torch.rand(3, 4, generator=g) > 0.3).long() for _ in range(4)]
    n_tok = sum(m.sum() for m in masks)
    per_rank = [
        sum(aggregate_loss(losses[r * 2 + k], masks[r * 2 + k], "dapo", grad_accum_steps=2, num_items_in_batch=n_tok,
                           world_size=2, steps_per_generation=2) for k in range(2))
        for r in range(2)
    ]
    ddp_mean = (per_rank[0] + per_rank[1]) / 2
    direct = sum((l * m).sum() for l, m in zip(losses, masks)) / n_tok
    torch.testing.assert_close(ddp_mean, direct, rtol=1e-12, atol=0)


def test_advantages_match_the_spec_hand_case_and_trl_nanstd():
    """Spec §3.6: rewards [1, 0, 0.5, 0] in one group → [1.30531, −0.783186, 0.261062, −0.783186]."""
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0], dtype=torch.float64)
    adv, zero_std = group_advantages(rewards, 4, "group")
    torch.testing.assert_close(adv, torch.tensor([1.30531, -0.783186, 0.261062, -0.783186], dtype=torch.float64),
                               rtol=0, atol=5e-6)  # the spec prints 6 significant digits
    assert not zero_std.any()
    # two groups, one with zero spread; "batch" uses TRL's nanstd over everything, "none" only centres
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.3, 0.3, 0.3], dtype=torch.float64)
    adv, zero_std = group_advantages(rewards, 3, "group")
    assert zero_std.tolist() == [False] * 3 + [True] * 3
    torch.testing.assert_close(adv[3:], torch.zeros(3, dtype=torch.float64))
    centred = rewards - rewards.view(2, 3).mean(1).repeat_interleave(3)
    torch.testing.assert_close(group_advantages(rewards, 3, "none")[0], centred)
    batch_std = trl_utils.nanstd(rewards)
    torch.testing.assert_close(group_advantages(rewards, 3, "batch")[0], centred / (batch_std + 1e-4))
    torch.testing.assert_close(adv[:3], centred[:3] / (trl_utils.nanstd(rewards[:3]) + 1e-4))


def test_on_policy_grpo_value_is_zero_but_gradient_is_not():
    """Spec §3.4 / trl#2703: on-policy, β = 0, equal lengths → the grpo loss value is 0, the gradient is not."""
    logps = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    adv, _ = group_advantages(torch.tensor([1.0, 0.0, 0.5, 0.0], dtype=torch.float64), 4)
    loss = aggregate_loss(per_token_grpo_terms(logps, adv).loss, torch.ones(4, 3), "grpo")
    loss.backward()
    assert abs(loss.item()) < 1e-12 and logps.grad.abs().sum() > 0.1
