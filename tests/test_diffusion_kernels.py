"""Transition kernels, rollouts, subsampling, LoRA reference and the generator/reward interfaces."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from zoo.diffusion.kernels import Sampler, gaussian_log_prob, gaussian_score
from zoo.diffusion.lora import adapters_disabled, add_lora
from zoo.diffusion.rollout import RolloutBuffer, sample_trajectories, subsample_steps
from zoo.rewards import Renders, Reward
from zoo.tasks.text_to_image.tiny import ColourReward, TinyUNetGenerator

SD_SCHEDULE = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    clip_sample=False, set_alpha_to_one=False, steps_offset=1,
)


CASES = [(kind, pred) for kind in ("ddim", "sde-dpmsolver++") for pred in ("epsilon", "v_prediction")]


def _reference_scheduler(kind: str, config: dict, steps: int):
    if kind == "ddim":
        sched = DDIMScheduler.from_config(config)
    else:
        sched = DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="sde-dpmsolver++", solver_order=1, final_sigmas_type="sigma_min"
        )
    sched.set_timesteps(steps)
    return sched


@pytest.mark.parametrize("kind,prediction", CASES)
def test_kernel_reproduces_diffusers_step_with_the_same_noise(kind, prediction):
    config = dict(SD_SCHEDULE, prediction_type=prediction)
    sampler = Sampler(config, kind, num_steps=20, eta=1.0)
    ref = _reference_scheduler(kind, config, 20)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    for k, t in enumerate(ref.timesteps):
        out = torch.randn(x.shape, generator=gen)
        noise = torch.randn(x.shape, generator=gen)
        extra = {"eta": 1.0} if kind == "ddim" else {}
        expected = ref.step(out, t, x, variance_noise=noise, **extra)
        got = sampler.step(out, x, torch.full((2,), k), noise)
        # fp32 round-off only: the kernel folds the update into a·x + b·x̂₀ with float64 coefficients
        torch.testing.assert_close(got, expected.prev_sample, rtol=1e-5, atol=1e-5)
        if kind == "ddim":  # x̂₀ of level k is the scheduler's pred_original_sample at timesteps[k]
            torch.testing.assert_close(sampler.predict_x0(out, x, torch.full((2,), k)), expected.pred_original_sample)
        x = expected.prev_sample


def test_x0_convention_at_intermediate_and_final_levels():
    """Level k is queried at timesteps[k] with ᾱ of that timestep (one shift, not two); the final level is clean."""
    sampler = Sampler(dict(SD_SCHEDULE, prediction_type="epsilon"), "sde-dpmsolver++", num_steps=20)
    abar = DDIMScheduler.from_config(SD_SCHEDULE).alphas_cumprod
    x, eps = torch.randn(3, 4, 4, 4), torch.randn(3, 4, 4, 4)
    level = torch.tensor([1, 7, 19])
    t = sampler.timesteps[level]
    a = abar[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(sampler.predict_x0(eps, x, level), (x - (1 - a).sqrt() * eps) / a.sqrt(), rtol=1e-4, atol=1e-5)
    final = torch.full((3,), 20)
    torch.testing.assert_close(sampler.predict_x0(eps, x, final), x)
    torch.testing.assert_close(sampler.gamma(level), abar[t].float(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(sampler.gamma(final), torch.ones(3))


def test_score_and_log_prob_equal_the_gaussian_closed_forms():
    gen = torch.Generator().manual_seed(1)
    mean, x = torch.randn(3, 2, 4, 4, generator=gen), torch.randn(3, 2, 4, 4, generator=gen)
    std = torch.tensor([0.3, 0.05, 1.2])
    normal = torch.distributions.Normal(mean, std.view(-1, 1, 1, 1))
    torch.testing.assert_close(gaussian_log_prob(x, mean, std), normal.log_prob(x).flatten(1).mean(1))
    z = x.clone().requires_grad_(True)
    (autograd_score,) = torch.autograd.grad(normal.log_prob(z).sum(), z)
    torch.testing.assert_close(gaussian_score(x, mean, std), autograd_score)


def test_path_kl_equals_torch_kl_divergence():
    sampler = Sampler(dict(SD_SCHEDULE, prediction_type="epsilon"), "ddim", num_steps=10)
    mean, ref = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    step = torch.tensor([0, 9])
    std = sampler.std[step].view(-1, 1, 1, 1)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mean, std), torch.distributions.Normal(ref, std))
    torch.testing.assert_close(sampler.kl_to(mean, ref, step), kl.flatten(1).sum(1), rtol=1e-5, atol=1e-6)


def test_sampler_rejects_deterministic_and_clipping_configs():
    with pytest.raises(ValueError, match="eta > 0"):
        Sampler(SD_SCHEDULE, "ddim", 10, eta=0.0)
    with pytest.raises(ValueError, match="clip_sample"):
        Sampler(dict(SD_SCHEDULE, clip_sample=True), "ddim", 10)
    with pytest.raises(ValueError, match="sampler must be one of"):
        Sampler(SD_SCHEDULE, "euler", 10)


def test_low_variance_subsampling_matches_the_r2d3_scheme():
    for seed in range(20):
        steps = subsample_steps(20, 0.4, 4, torch.Generator().manual_seed(seed))
        assert len(steps) == 8 and steps[0] == 19
        chunks = (steps[1:] // 5).tolist()
        assert chunks == [0, 1, 2, 3, 0, 1, 2]


def test_rollout_stores_consistent_levels_eps_and_log_probs():
    gen = TinyUNetGenerator()
    add_lora(gen.denoiser, gen.lora_targets, rank=4)
    sampler = Sampler(gen.scheduler_config, "ddim", num_steps=5)
    prompts = ["red", "blue"]
    trajs = sample_trajectories(gen, sampler, prompts, 3.0, torch.Generator().manual_seed(0), "cpu")
    assert trajs.latents.shape == (2, 6, 3, 8, 8) and trajs.eps_old.shape == (2, 5, 3, 8, 8)
    cond, null = gen.encode_prompts(prompts), gen.null_condition(2)
    for k in range(5):
        step = torch.full((2,), k)
        x, x_next = trajs.latents[:, k], trajs.latents[:, k + 1]
        with torch.no_grad():
            out = gen.guided_denoise(x, sampler.timesteps[step], cond, null, 3.0)
        mean, std = sampler.mean_std(out, x, step)
        torch.testing.assert_close(trajs.log_probs[:, k], gaussian_log_prob(x_next, mean, std))
        torch.testing.assert_close(trajs.eps_old[:, k], out)
    # the same random stream reproduces the same trajectories
    again = sample_trajectories(gen, sampler, prompts, 3.0, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(again.latents, trajs.latents)


def test_rollout_buffer_lags_one_round_and_round_trips():
    gen = TinyUNetGenerator()
    sampler = Sampler(gen.scheduler_config, "ddim", num_steps=2)
    rounds = [sample_trajectories(gen, sampler, ["red"], 1.0, torch.Generator().manual_seed(i), "cpu") for i in range(3)]
    buffer = RolloutBuffer(lag=True)
    assert buffer.exchange(rounds[0]) is None
    assert buffer.exchange(rounds[1]) is rounds[0]
    restored = RolloutBuffer(lag=True)
    restored.load_state_dict(buffer.state_dict())
    assert torch.equal(restored.exchange(rounds[2]).latents, rounds[1].latents)
    assert RolloutBuffer(lag=False).exchange(rounds[2]) is rounds[2]


def test_guided_denoise_is_the_cfg_combination():
    gen = TinyUNetGenerator()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([500, 20])
    cond, null = gen.encode_prompts(["red", "green"]), gen.null_condition(2)
    with torch.no_grad():
        e_c, e_u = gen.denoise(x, t, cond), gen.denoise(x, t, null)
        torch.testing.assert_close(gen.guided_denoise(x, t, cond, null, 5.0), e_u + 5.0 * (e_c - e_u), rtol=1e-5, atol=1e-5)


def test_reference_is_the_base_model_with_adapters_disabled():
    base, policy = TinyUNetGenerator(seed=3), TinyUNetGenerator(seed=3)
    params = add_lora(policy.denoiser, policy.lora_targets, rank=4)
    with torch.no_grad():
        for p in params:
            p.add_(0.1 * torch.randn_like(p))  # make the adapters non-trivial (B starts at zero)
    x, t, c = torch.randn(2, 3, 8, 8), torch.tensor([900, 100]), torch.tensor([1, 2])
    with torch.no_grad():
        assert not torch.allclose(policy.denoise(x, t, c), base.denoise(x, t, c))
        with adapters_disabled(policy.denoiser):
            torch.testing.assert_close(policy.denoise(x, t, c), base.denoise(x, t, c))
        assert not torch.allclose(policy.denoise(x, t, c), base.denoise(x, t, c))
    assert all(p.requires_grad for p in params)
    assert not any(p.requires_grad for n, p in policy.denoiser.named_parameters() if "lora_" not in n)


def test_reward_protocol_checks_shapes_and_names_failing_rewards():
    images = torch.rand(2, 3, 3, 4, 4)
    scores = ColourReward().score(Renders(images=images), ["red", "blue"])
    target = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]).view(2, 1, 3, 1, 1)
    torch.testing.assert_close(scores, -((images - target) ** 2).sum(2).mean((1, 2, 3)))

    class Broken(Reward):
        def forward(self, images, prompts, **aux):
            raise KeyError("no such prompt")

    class WrongShape(Reward):
        def forward(self, images, prompts, **aux):
            return images.mean()

    with pytest.raises(RuntimeError, match="reward Broken raised KeyError"):
        Broken().score(Renders(images=images), ["a", "b"])
    with pytest.raises(RuntimeError, match=r"must return a tensor of shape \[2\]"):
        WrongShape().score(Renders(images=images), ["a", "b"])
    with pytest.raises(ValueError, match=r"\[B, V, 3, H, W\]"):
        Renders(images=torch.rand(2, 3, 4, 4))
