"""Reward vs prior preservation of the diffusion alignment algorithms on the tiny 2D model (CPU, a few minutes).

Every algorithm starts from the same tiny generator and trains for the same number of collection rounds on the
analytic colour reward; the table reports, on fixed prompts and noise, the mean reward, the closed-form path KL
to the base model and the pixel diversity, plus the wall time. Usage::

    python benchmarks/diffusion_toy_study.py [--rounds 16] [--samples 16]
"""

from __future__ import annotations

import argparse
import time

import torch
from tqdm import tqdm

from zoo.algorithms.ddpo import DDPO
from zoo.algorithms.diffusion_base import pairwise_diversity
from zoo.algorithms.nabla_r2d3 import NablaR2D3
from zoo.algorithms.reward_backprop import DRaFT, ReFL
from zoo.tasks.text_to_image.tiny import ColourReward, TinyFlowNetwork, TinyUNetGenerator

PROMPTS = ["red", "green", "blue", "yellow"]
COMMON = {"num_steps": 10, "guidance_scale": 5.0}
ALGORITHMS = {
    "nabla-r2d3": lambda: NablaR2D3(
        TinyUNetGenerator(), ColourReward(), reward_scale=1e5, reg_scale=1.0, num_chunks=2, train_batch_size=8,
        lr=1e-2, **COMMON,
    ),
    "nabla-gflownet": lambda: NablaR2D3(
        TinyUNetGenerator(), ColourReward(), reward_scale=1e5, reg_scale=1.0, num_chunks=2, train_batch_size=8,
        lr=1e-2, flow_network=TinyFlowNetwork(), **COMMON,
    ),
    "ddpo": lambda: DDPO(
        TinyUNetGenerator(), ColourReward(), clip_range=0.2, timestep_fraction=0.5, train_batch_size=32, lr=3e-3,
        **COMMON,
    ),
    "refl": lambda: ReFL(TinyUNetGenerator(), ColourReward(), first_step=7, train_batch_size=8, lr=1e-2, **COMMON),
    "draft-1": lambda: DRaFT(TinyUNetGenerator(), ColourReward(), truncation=1, train_batch_size=8, lr=1e-2, **COMMON),
}
#: prompts per round (DDPO, a policy-gradient method, gets 4x the samples of the gradient-based methods)
BATCH = {"ddpo": 32}


def evaluate(module, samples: int) -> dict[str, float]:
    out = module.evaluate((PROMPTS * samples)[:samples], torch.Generator().manual_seed(123))
    return {
        "reward": float(out["rewards"].mean()),
        "path_kl": float(out["path_kl"].mean()),
        "diversity": float(pairwise_diversity(out["images"])),
    }


def run(name: str, rounds: int, samples: int) -> dict[str, float]:
    torch.manual_seed(0)
    module = ALGORITHMS[name]()
    optimizer = module.configure_optimizers()
    module.optimizers = lambda: optimizer  # outside a Trainer: plain optimizer and backward
    module.manual_backward = lambda loss: loss.backward()
    module.log_round = lambda metrics: None
    batch = BATCH.get(name, 8)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for i in tqdm(range(rounds), desc=name, leave=False):
        prompts = [PROMPTS[j] for j in torch.randint(0, len(PROMPTS), (batch,), generator=gen).tolist()]
        module.training_step(prompts, i)
    return {**evaluate(module, samples), "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = evaluate(ALGORITHMS["draft-1"](), args.samples)
    print(f"{'method':<16}{'reward':>9}{'path KL':>12}{'diversity':>11}{'seconds':>9}")
    print(f"{'base':<16}{base['reward']:>9.3f}{base['path_kl']:>12.3f}{base['diversity']:>11.3f}{'-':>9}")
    for name in ALGORITHMS:
        r = run(name, args.rounds, args.samples)
        print(f"{name:<16}{r['reward']:>9.3f}{r['path_kl']:>12.1f}{r['diversity']:>11.3f}{r['seconds']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
