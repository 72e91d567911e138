"""Recognisability of the toy splat prior's samples from novel views (see zoo.tasks.text_to_3d.metrics).

    python benchmarks/splat_prior_eval.py PRIOR [--per-class 4] [--steps 50] [--guidance 3] [--grid out.png]

PRIOR is a release folder (or a Lightning checkpoint of `zoo fit --config toy-splat-prior`, whose weights are
loaded into the preset's model). Prints primitive and colour accuracy of the samples, and of jittered ground-truth
shapes through the same pipeline (the ceiling), over 4 novel views (azimuths 45/135/225/315°, elevation 20°).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from zoo.diffusion.kernels import Sampler
from zoo.diffusion.rollout import sample_trajectories
from zoo.tasks.text_to_3d.generators import ToySplatGenerator
from zoo.tasks.text_to_3d.metrics import classify, template_alphas
from zoo.tasks.text_to_3d.prior import TOY_DEPTH_RANGE, TOY_RESOLUTION, toy_input_cameras
from zoo.tasks.text_to_3d.shapes import COLOURS, prompts_for, sample_shapes, shape_splatter


def load_generator(prior: str) -> ToySplatGenerator:
    if prior.endswith(".ckpt"):
        generator = ToySplatGenerator(prior=None)
        state = torch.load(prior, map_location="cpu", weights_only=True)["state_dict"]
        generator.denoiser.load_state_dict({k.removeprefix("denoiser."): v for k, v in state.items()})
        return generator
    return ToySplatGenerator(prior=prior)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prior")
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--grid", type=Path, default=None, help="write a PNG grid: rows = samples, columns = novel views")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = load_generator(args.prior).eval()
    labels = torch.arange(16).repeat_interleave(args.per_class)
    prompts = prompts_for(labels)
    sampler = Sampler(generator.scheduler_config, "ddim", args.steps, 1.0)
    with torch.no_grad():
        trajs = sample_trajectories(generator, sampler, prompts, args.guidance, torch.Generator().manual_seed(0), "cpu")
        x0 = trajs.latents[:, -1]
        cams = generator.cameras(len(labels), random_cameras=False)
        samples = generator.render_views(x0, cams, args.size)
        templates = template_alphas(generator, cams, args.size)
        shapes = sample_shapes(len(labels), labels=labels, generator=torch.Generator().manual_seed(1))
        truth = generator.render_views(
            shape_splatter(shapes, toy_input_cameras(len(labels)), TOY_RESOLUTION, depth_range=TOY_DEPTH_RANGE), cams, args.size
        )
    primitive, colour = labels // len(COLOURS), labels % len(COLOURS)
    for name, renders in (("prior samples", samples), ("ground truth", truth)):
        pred_p, pred_c = classify(renders.images, renders.alpha, templates)
        acc_p = (pred_p == primitive).float().mean().item()
        acc_c = (pred_c == colour).float().mean().item()
        per = [(pred_p[primitive == p] == p).float().mean().item() for p in range(4)]
        print(f"{name}: primitive accuracy {acc_p:.3f} (per primitive {[round(a, 2) for a in per]}), colour accuracy {acc_c:.3f}, n={len(labels)}")
    if args.grid is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from zoo.callbacks.media import turntable_grid

        both = torch.cat([samples.images, truth.images], dim=1)
        plt.imsave(args.grid, turntable_grid(both).clamp(0, 1).numpy())


if __name__ == "__main__":
    main()
