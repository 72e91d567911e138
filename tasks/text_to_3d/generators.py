"""Splat generators implementing :class:`zoo.diffusion.generator.DiffusionGenerator` for the 3D alignment algorithms.

:class:`ToySplatGenerator` wraps the toy prior (:mod:`zoo.tasks.text_to_3d.prior`, shipped pretrained in
``zoo/pretrained/toy-splat-prior``): latents are 4 views × (rgb, opacity, depth) × 16 × 16; ``decode`` derives
the full 12-channel splatter images, unprojects them to 3D Gaussians along the fixed input-camera rays and renders
``num_views`` views with the differentiable splat renderer (spec §2.1, §2.3, §2.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from zoo.diffusion.generator import DiffusionGenerator
from zoo.rewards import Renders
from zoo.splat.cameras import Cameras, orbit_cameras, sample_orbit_cameras
from zoo.splat.gaussians import Gaussians, derive_splatter, splatter_to_gaussians
from zoo.splat.renderer import render
from zoo.tasks.text_to_3d.prior import (
    TOY_CHANNELS, TOY_DEPTH_RANGE, TOY_ELEVATION_DEG, TOY_FOCAL, TOY_RADIUS, TOY_RESOLUTION, TOY_SCALE_RANGE,
    TOY_VIEWS, MultiViewSplatDenoiser, toy_input_cameras,
)
from zoo.tasks.text_to_3d.shapes import class_names

#: Evaluation views of the toy generator: four azimuths half-way between the input views (novel views).
EVAL_AZIMUTHS_DEG = (45.0, 135.0, 225.0, 315.0)
EVAL_ELEVATION_DEG = 20.0


def resolve_prior(name_or_path: str) -> Path:
    """A release folder: an existing path, or the name of a checkpoint shipped in ``zoo/pretrained/``."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    shipped = Path(str(resources.files("zoo.pretrained").joinpath(name_or_path)))
    if shipped.is_dir():
        return shipped
    raise FileNotFoundError(
        f"{name_or_path!r} is neither a folder nor a checkpoint shipped in zoo/pretrained/. Train one with "
        "`zoo fit --config toy-splat-prior` and write it with DenoisingPretraining.save_pretrained(folder)."
    )


def label_of(prompt: str) -> int | None:
    """The class index named by a prompt ``"a <colour> <primitive>"`` (``None`` if it names none)."""
    text = " ".join(prompt.lower().replace(",", " ").split())
    for index, name in enumerate(class_names()):
        if name in text:
            return index
    return None


class SplatGenerator(DiffusionGenerator):
    """A 3D-native generator: clean latents become 3D Gaussians (:meth:`gaussians`), rendered by the splat renderer
    from cameras (:meth:`cameras`: jittered training views or fixed evaluation views, spec §2.3).

    Subclasses implement :meth:`gaussians` and :meth:`cameras` and set ``render_size``, ``background`` (grey level
    of the renders' background) and ``max_per_tile`` (Gaussians per 8 × 8 tile of the CPU renderer).
    """

    render_size: int
    background: float
    max_per_tile: int

    def gaussians(self, latents: torch.Tensor) -> Gaussians:
        """Clean latents ``[B, *latent_shape]`` → ``B`` sets of 3D Gaussians (differentiable)."""
        raise NotImplementedError(f"{type(self).__name__} must implement gaussians(latents)")

    def cameras(self, batch: int, *, generator: torch.Generator | None = None, random_cameras: bool = True) -> Cameras:
        """Training cameras drawn from ``generator`` (``random_cameras``) or the fixed evaluation views ``[batch, V]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement cameras(batch, ...)")

    def render_views(self, latents: torch.Tensor, cameras: Cameras, size: int | None = None) -> Renders:
        """Render clean latents from ``cameras`` ``[B, V]`` (any views, e.g. a turntable)."""
        size = size or self.render_size
        gaussians = self.gaussians(latents)
        cameras = cameras.to(device=gaussians.means.device, dtype=gaussians.means.dtype)
        out = render(gaussians, cameras, size, size, background=self.background, max_per_tile=self.max_per_tile)
        return Renders(images=out.rgb.clamp(0, 1), alpha=out.alpha, depth=out.depth, normals=out.normals, cameras=cameras)

    def decode(self, latents: torch.Tensor, *, generator: torch.Generator | None = None, random_cameras: bool = True) -> Renders:
        return self.render_views(latents, self.cameras(latents.shape[0], generator=generator, random_cameras=random_cameras))


class ToySplatGenerator(SplatGenerator):
    """The toy 3D-native splat prior as a generator.

    Args:
        prior: a release folder of ``DenoisingPretraining`` (or the name of one shipped in ``zoo/pretrained``);
            ``None`` builds the denoiser with random weights from ``seed`` (tests, benchmarks).
        render_size: side of the rendered views (a multiple of 8).
        num_views: views rendered per sample by ``decode``.
        azimuth_jitter_deg, elevation_jitter_deg: training-camera jitter around the input views (spec §2.3; the
            official code's ±10° / ±5° by default).
        background: background grey level of the renders.
        max_per_tile: Gaussians kept per 8 × 8 tile by the tiled renderer.
    """

    def __init__(
        self,
        prior: str | None = "toy-splat-prior",
        render_size: int = 32,
        num_views: int = 4,
        azimuth_jitter_deg: float = 10.0,
        elevation_jitter_deg: float = 5.0,
        background: float = 1.0,
        max_per_tile: int = 128,
        seed: int = 0,
        lora_targets: Sequence[str] = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "conv_out"),
    ) -> None:
        super().__init__(lora_targets=lora_targets)
        self.prior, self.render_size, self.num_views = prior, render_size, num_views
        self.azimuth_jitter_deg, self.elevation_jitter_deg = azimuth_jitter_deg, elevation_jitter_deg
        self.background, self.max_per_tile = background, max_per_tile
        if prior is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.denoiser = MultiViewSplatDenoiser()
            self._schedule = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction"}
        else:
            from zoo.algorithms.denoising_pretraining import DenoisingPretraining

            module = DenoisingPretraining.from_pretrained(resolve_prior(prior))
            self.denoiser = module.denoiser
            self._schedule = {
                "num_train_timesteps": module.num_train_timesteps,
                "beta_schedule": module.beta_schedule,
                "prediction_type": module.prediction_type,
            }
        self.denoiser.requires_grad_(False)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (TOY_VIEWS, TOY_CHANNELS, TOY_RESOLUTION, TOY_RESOLUTION)

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return {
            **self._schedule,
            "clip_sample": False,
            "set_alpha_to_one": False,
            "timestep_spacing": "leading",
            "steps_offset": 1,
        }

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Class labels; prompts naming no class (e.g. ``""``) get the null label (unconditional)."""
        labels = [label_of(p) for p in prompts]
        null = self.denoiser.null_label
        return torch.tensor([null if x is None else x for x in labels], dtype=torch.long, device=self.denoiser.plucker.device)

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.denoiser(latents, timesteps, condition)

    def gaussians(self, latents: torch.Tensor) -> Gaussians:
        """Clean latents ``[B, 4, 5, 16, 16]`` → 3D Gaussians (values clamped to ``[-1, 1]`` first, as DiffSplat
        clamps its decoder output)."""
        x = latents.clamp(-1, 1)
        cams = toy_input_cameras(x.shape[0]).to(device=x.device, dtype=x.dtype)
        splatter = derive_splatter(
            x[:, :, :3], x[:, :, 3:4], x[:, :, 4:5], cams, depth_range=TOY_DEPTH_RANGE, scale_range=TOY_SCALE_RANGE
        )
        return splatter_to_gaussians(splatter, cams, depth_range=TOY_DEPTH_RANGE, scale_range=TOY_SCALE_RANGE)

    def cameras(self, batch: int, *, generator: torch.Generator | None = None, random_cameras: bool = True) -> Cameras:
        """Training cameras (jittered around the input views) or the fixed novel evaluation views ``[batch, V]``."""
        if random_cameras:
            return sample_orbit_cameras(
                batch, self.num_views, elevation_deg=TOY_ELEVATION_DEG, radius=TOY_RADIUS, focal=TOY_FOCAL,
                azimuth_jitter_deg=self.azimuth_jitter_deg, elevation_jitter_deg=self.elevation_jitter_deg,
                generator=generator,
            )
        azimuths = torch.tensor(EVAL_AZIMUTHS_DEG)[torch.arange(self.num_views) % len(EVAL_AZIMUTHS_DEG)]
        return orbit_cameras(torch.full((batch, self.num_views), EVAL_ELEVATION_DEG), azimuths.expand(batch, -1), TOY_RADIUS, TOY_FOCAL)

    def turntable_cameras(self, batch: int, views: int = 8, elevation_deg: float = EVAL_ELEVATION_DEG) -> Cameras:
        """``views`` cameras evenly spaced in azimuth from 0° at the input-camera radius ``[batch, views]``."""
        azimuths = torch.arange(views) * (360.0 / views)
        return orbit_cameras(torch.full((batch, views), elevation_deg), azimuths.expand(batch, -1), TOY_RADIUS, TOY_FOCAL)
