"""Denoising as a Markov decision process: the generator interface, transition kernels, rollouts and LoRA."""

from zoo.diffusion.generator import Condition, DiffusionGenerator, cat_conditions, map_condition

__all__ = ["Condition", "DiffusionGenerator", "cat_conditions", "map_condition"]
