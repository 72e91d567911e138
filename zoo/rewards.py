"""The reward protocol of the zoo: rendered images → one fp32 score per sample.

Every alignment algorithm of the diffusion family scores samples through a :class:`Reward`. A reward receives
the images a generator's ``decode`` produced — ``[B, V, 3, H, W]`` in ``[0, 1]``, ``V ≥ 1`` views of each sample —
plus the prompts and, when the generator renders them, alpha, depth and normal maps, and returns scores ``[B]``.
Multi-view rewards aggregate over ``V`` themselves (Nabla-R2D3 uses the mean over views, spec §2.4). Rewards that
are differentiable keep the autograd graph: Nabla-R2D3, ReFL and DRaFT differentiate through them.

Concrete rewards live with their task (e.g. ``zoo.tasks.text_to_3d.rewards``); the core never imports a task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from zoo.configurable import Configurable


@dataclass
class Renders:
    """What a generator's ``decode`` returns: the images and whatever auxiliary maps it can render.

    ``images``: ``[B, V, 3, H, W]`` in ``[0, 1]``; ``alpha``: ``[B, V, 1, H, W]``; ``depth``: ``[B, V, 1, H, W]``;
    ``normals``: ``[B, V, 3, H, W]`` (unit vectors, camera or world frame as the generator documents);
    ``cameras``: the cameras the views were rendered from (generator-specific object), or ``None`` for 2D images.
    """

    images: torch.Tensor
    alpha: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    normals: torch.Tensor | None = None
    cameras: Any = None

    def __post_init__(self) -> None:
        if self.images.dim() != 5 or self.images.shape[2] != 3:
            raise ValueError(
                f"Renders.images must be [B, V, 3, H, W] (add a view axis with .unsqueeze(1) for single images); "
                f"got shape {tuple(self.images.shape)}"
            )


class Reward(Configurable, nn.Module):
    """Base class of rewards: ``forward(images, prompts, *, alpha, depth, normals, cameras) -> scores [B]``.

    Subclasses implement :meth:`forward`; call the reward through :meth:`score`, which feeds it a :class:`Renders`,
    runs it in fp32 (autocast off) and checks the result. Set ``differentiable = False`` for rewards whose scores
    carry no gradient (e.g. a black-box judge); gradient-based algorithms refuse them with a clear message.
    """

    #: Whether ``forward`` is differentiable w.r.t. the images (required by Nabla-R2D3, ReFL, DRaFT).
    differentiable: ClassVar[bool] = True

    def forward(
        self,
        images: torch.Tensor,
        prompts: Sequence[str],
        *,
        alpha: torch.Tensor | None = None,
        depth: torch.Tensor | None = None,
        normals: torch.Tensor | None = None,
        cameras: Any = None,
    ) -> torch.Tensor:
        """Score ``images`` ``[B, V, 3, H, W]`` in ``[0, 1]`` for ``prompts`` (``len B``); return fp32 ``[B]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(images, prompts, ...)")

    def score(self, renders: Renders, prompts: Sequence[str]) -> torch.Tensor:
        """Run the reward on ``renders`` in fp32 and return scores ``[B]`` (fp32), validated.

        Raises a ``RuntimeError`` naming the reward class if it fails or returns a wrong shape, so that a broken
        reward is reported as such and not as an obscure error deep inside an algorithm.
        """
        batch = renders.images.shape[0]
        if len(prompts) != batch:
            raise ValueError(f"{type(self).__name__}: got {len(prompts)} prompts for {batch} samples")
        device_type = renders.images.device.type

        def fp32(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.float()

        try:
            with torch.autocast(device_type=device_type, enabled=False):
                scores = self(
                    fp32(renders.images),
                    list(prompts),
                    alpha=fp32(renders.alpha),
                    depth=fp32(renders.depth),
                    normals=fp32(renders.normals),
                    cameras=renders.cameras,
                )
        except Exception as err:  # re-raised with the reward named; the original is chained
            raise RuntimeError(
                f"reward {type(self).__name__} raised {type(err).__name__}: {err}. Check the reward's inputs "
                f"(images {tuple(renders.images.shape)} in [0, 1]) and its own configuration."
            ) from err
        if not isinstance(scores, torch.Tensor) or scores.shape != (batch,):
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise RuntimeError(f"reward {type(self).__name__} must return a tensor of shape [{batch}], got {got}")
        return scores.float()
