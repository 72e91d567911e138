"""Time of Nabla-R2D3's pieces on DiffSplat-PixArt-Σ at real size with random weights (no download needed).

    python benchmarks/diffsplat_step_time.py [--device cuda] [--dtype bfloat16] [--render-size 256] [--steps 20]
                                             [--gradient-checkpointing]

Builds ``DiffSplatGenerator(configs=REAL_SIZE)`` (0.61 B-parameter multi-view transformer, SDXL-size GS-VAE, a
one-layer T5 of T5-XXL's width), LoRA rank 8 on the official targets, the depth–normal-consistency reward (no reward
model to download), and times, for one prompt (4 views):

* one rollout: ``--steps`` SDE-DPM-Solver++ steps with classifier-free guidance (one batched transformer call each);
* one trained transition (spec §2.6): reference and policy forwards at z_t, policy x̂₀ at z_{t−1}, GS-VAE decode,
  rendering of 4 views, reward gradient, loss backward.

Prints seconds (best of ``--repeats``) and the transition / rollout-step ratio. Random weights make the samples
noise, so the times are what a real run costs per step, not what it produces.
"""

from __future__ import annotations

import argparse
import time

import torch

from zoo.algorithms.nabla_r2d3 import NablaR2D3
from zoo.tasks.text_to_3d.diffsplat import REAL_SIZE, DiffSplatGenerator
from zoo.tasks.text_to_3d.rewards import DepthNormalConsistency


def best_of(repeats: int, fn, device: str) -> float:
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--render-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gradient-checkpointing", action="store_true", help="trade time for activation memory")
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = DiffSplatGenerator(
        configs=REAL_SIZE, dtype=args.dtype, render_size=args.render_size, gradient_checkpointing=args.gradient_checkpointing
    )
    module = NablaR2D3(
        generator, DepthNormalConsistency(detach_depth=True), sampler="sde-dpmsolver++", num_steps=args.steps,
        guidance_scale=5.0, reward_scale=5e5, reg_scale=1e4, lag_rollouts=False,
    ).to(args.device)
    params = sum(p.numel() for p in generator.denoiser.parameters())
    lora = sum(p.numel() for p in module.lora_parameters)
    print(f"device {args.device}, dtype {args.dtype}, transformer {params / 1e6:.1f} M parameters, LoRA {lora / 1e6:.2f} M, "
          f"{4 * (generator.latent_size * 8) ** 2} Gaussians per object, renders {args.render_size} px")
    prompts = ["a wooden chair"]
    holder = {}

    def rollout() -> None:
        with torch.no_grad():
            holder["trajs"] = module.rollout(prompts).to(args.device)

    def transition() -> None:
        step = torch.full((1,), args.steps - 2, dtype=torch.long, device=args.device)
        loss, _ = module.transition_loss(holder["trajs"], step)
        loss.backward()
        module.zero_grad(set_to_none=True)

    t_rollout = best_of(args.repeats, rollout, args.device)
    t_transition = best_of(args.repeats, transition, args.device)
    print(f"rollout ({args.steps} steps, CFG): {t_rollout:.2f} s ({t_rollout / args.steps:.3f} s per step)")
    print(f"one trained transition: {t_transition:.2f} s ({t_transition / (t_rollout / args.steps):.1f}x a rollout step)")
    if args.device == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
