"""2D rewards on multi-view renders (Nabla-R2D3 spec §2.4) behind the one :class:`zoo.rewards.Reward` protocol:
``forward(images [B, V, 3, H, W], prompts, *, alpha, depth, normals, cameras) -> [B]``.

Every reward here scores each view (:meth:`MultiViewReward.per_view` → ``[B, V]``) and aggregates the views with
``aggregation``: ``"mean"`` (Nabla-R2D3's 3D reward, the mean over the rendered views), ``"max"``, or
``"random_k"`` (the mean over ``k`` views drawn per sample from the reward's own seeded stream).

* :class:`TargetColourReward` — negative squared distance to a colour (differentiable, needs no model; the toy demo);
* :class:`DepthNormalConsistency` — agreement of rendered normals with normals derived from rendered depth (no model);
* :class:`NormalEstimatorReward` — agreement of rendered normals with a normal predictor's estimate from the rgb;
* :class:`AestheticReward` — LAION aesthetic predictor: CLIP ViT-L/14 image embedding → MLP (spec §1.5);
* :class:`CLIPScoreReward` — CLIP text–image similarity of the PickScore / HPS kind (``logit_scale · cos``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.rewards import Reward
from zoo.splat.cameras import Cameras, pixel_rays
from zoo.splat.gaussians import depth_to_normals

AGGREGATIONS = ("mean", "max", "random_k")
#: CLIP's image normalisation (openai/clip-vit-*).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class MultiViewReward(Reward):
    """A reward computed per view and aggregated over views (see module docstring)."""

    def __init__(self, aggregation: str = "mean", k: int = 1, seed: int = 0) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.aggregation, self.k = aggregation, k
        self.rng = torch.Generator().manual_seed(seed)

    def per_view(self, images: torch.Tensor, prompts: Sequence[str], **aux: Any) -> torch.Tensor:
        """Scores ``[B, V]`` of every view."""
        raise NotImplementedError(f"{type(self).__name__} must implement per_view(images, prompts, ...)")

    def aggregate(self, scores: torch.Tensor) -> torch.Tensor:
        """``[B, V]`` → ``[B]`` by :attr:`aggregation`."""
        if self.aggregation == "mean":
            return scores.mean(1)
        if self.aggregation == "max":
            return scores.max(1).values
        b, v = scores.shape
        if not 1 <= self.k <= v:
            raise ValueError(f"random_k needs 1 <= k <= views; got k={self.k} with {v} views")
        index = torch.rand(b, v, generator=self.rng).argsort(1)[:, : self.k].to(scores.device)
        return scores.gather(1, index).mean(1)

    def forward(self, images: torch.Tensor, prompts: Sequence[str], **aux: Any) -> torch.Tensor:
        return self.aggregate(self.per_view(images, prompts, **aux))


class TargetColourReward(MultiViewReward):
    """``R_v = −mean_pixels ‖image − target‖²`` per view: how close the whole render is to one colour."""

    def __init__(self, target: Sequence[float] = (1.0, 0.5, 0.0), aggregation: str = "mean", k: int = 1, seed: int = 0) -> None:
        super().__init__(aggregation, k, seed)
        self.target = list(target)

    def per_view(self, images: torch.Tensor, prompts: Sequence[str], **aux: Any) -> torch.Tensor:
        target = torch.tensor(self.target, dtype=images.dtype, device=images.device).view(1, 1, 3, 1, 1)
        return -((images - target) ** 2).sum(2).mean((2, 3))


def depth_normals(depth: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """World normals ``[B, V, 3, H, W]`` of the surface a camera-depth map ``[B, V, 1, H, W]`` implies, facing
    the camera (the depth → normal conversion of ``geo_util``; differences as in :func:`depth_to_normals`)."""
    h, w = depth.shape[-2:]
    origins, dirs = pixel_rays(cameras.to(dtype=depth.dtype, device=depth.device), h, w)
    normals = depth_to_normals(origins + depth.movedim(2, -1) * dirs)
    facing = torch.where((normals * dirs).sum(-1, keepdim=True) > 0, -normals, normals)
    return facing.movedim(-1, 2)


def masked_cosine(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``Σ w·cos(a, b) / Σ w`` per view: ``a, b`` ``[B, V, 3, H, W]``, ``weight`` ``[B, V, 1, H, W]`` → ``[B, V]``."""
    cos = F.cosine_similarity(a, b, dim=2, eps=1e-8).unsqueeze(2)
    return (weight * cos).sum((2, 3, 4)) / weight.sum((2, 3, 4)).clamp(min=1e-8)


class DepthNormalConsistency(MultiViewReward):
    """Depth–normal consistency (spec §2.7 "DNC"): per view, the alpha-weighted mean cosine between the rendered
    normals and the normals of the rendered depth map; in ``[-1, 1]``, 1 for a self-consistent surface. Needs the
    renders' ``depth``, ``normals``, ``alpha`` and :class:`~zoo.splat.cameras.Cameras`."""

    def per_view(self, images: torch.Tensor, prompts: Sequence[str], **aux: Any) -> torch.Tensor:
        depth, normals, alpha, cameras = (aux.get(k) for k in ("depth", "normals", "alpha", "cameras"))
        if depth is None or normals is None or alpha is None or not isinstance(cameras, Cameras):
            raise ValueError("DepthNormalConsistency needs renders with depth, normals, alpha and Cameras (a 3D generator)")
        return masked_cosine(normals, depth_normals(depth, cameras), alpha)


class NormalEstimatorReward(MultiViewReward):
    """Agreement of rendered normals with a monocular normal estimate (the YOSO / StableNormal reward of spec §2.4):
    ``estimator(images [N, 3, H, W] in [0, 1]) -> normals [N, 3, H, W]`` in the same (world) frame; per view the
    alpha-weighted mean cosine. Any module with that signature serves (it should subclass ``Configurable``)."""

    def __init__(self, estimator: nn.Module, aggregation: str = "mean", k: int = 1, seed: int = 0) -> None:
        super().__init__(aggregation, k, seed)
        self.estimator = estimator

    def per_view(self, images: torch.Tensor, prompts: Sequence[str], **aux: Any) -> torch.Tensor:
        normals, alpha = aux.get("normals"), aux.get("alpha")
        if normals is None or alpha is None:
            raise ValueError("NormalEstimatorReward needs renders with normals and alpha (a 3D generator)")
        estimate = self.estimator(images.flatten(0, 1)).view_as(normals)
        return masked_cosine(normals, estimate, alpha)


def clip_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, 3, H, W]`` in ``[0, 1]`` → CLIP input: bicubic resize to ``size`` (as the official reward code does)
    and CLIP's mean/std normalisation; differentiable."""
    x = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class AestheticMLP(nn.Module):
    """The LAION aesthetic predictor head (``sac+logos+ava1-l14-linearMSE``): 768 → 1024 → 128 → 64 → 16 → 1
    (dropouts between the first layers are identity at inference)."""

    def __init__(self, dim: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2), nn.Linear(128, 64),
            nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)


class AestheticReward(MultiViewReward):
    """LAION aesthetic score of each view: L2-normalised CLIP image embedding → :class:`AestheticMLP` (spec §1.5).

    Args:
        clip_model: Hub id or folder of a ``CLIPVisionModelWithProjection`` (``openai/clip-vit-large-patch14``).
        head_weights: a ``.safetensors``/``.pth`` file of the MLP (keys ``layers.{0,2,4,6,7}.*``), e.g. the LAION
            release converted; ``None`` leaves the head random (tests, benchmarks).
        clip_config: a ``CLIPVisionConfig`` dict to build a randomly initialised encoder instead of loading one.
    """

    def __init__(
        self,
        clip_model: str = "openai/clip-vit-large-patch14",
        head_weights: str | None = None,
        clip_config: dict[str, Any] | None = None,
        aggregation: str = "mean",
        k: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(aggregation, k, seed)
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        if clip_config is not None:
            self.clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**clip_config))
        else:
            self.clip = CLIPVisionModelWithProjection.from_pretrained(clip_model)
        self.head = AestheticMLP(self.clip.config.projection_dim)
        if head_weights is not None:
            self.head.load_state_dict(_load_state_dict(head_weights))
        self.requires_grad_(False).eval()

    def per_view(self, images: torch.Tensor, prompts: Sequence[str], **aux: Any) -> torch.Tensor:
        b, v = images.shape[:2]
        pixels = clip_pixels(images.flatten(0, 1), self.clip.config.image_size)
        embeds = F.normalize(self.clip(pixel_values=pixels).image_embeds, dim=-1)
        return self.head(embeds).view(b, v)


class CLIPScoreReward(MultiViewReward):
    """CLIP text–image reward of the PickScore / HPS kind: ``logit_scale · cos(image_embed, text_embed)`` per view.

    ``model`` is a Hub id or folder of a ``CLIPModel`` with its processor's tokenizer (e.g.
    ``yuvalkirstain/PickScore_v1`` with ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``'s tokenizer); ``clip_config``
    (a ``CLIPConfig`` dict) with ``tokenizer`` builds a random model for tests. ``use_logit_scale=False`` gives the
    plain cosine, which is HPSv2's score (``hpscore`` of spec §1.5: ``diag(image_feat · text_featᵀ)`` of unit
    features); PickScore keeps the learned ``logit_scale``.
    """

    def __init__(
        self,
        model: str = "yuvalkirstain/PickScore_v1",
        tokenizer: str = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        clip_config: dict[str, Any] | None = None,
        use_logit_scale: bool = True,
        aggregation: str = "mean",
        k: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(aggregation, k, seed)
        from transformers import AutoTokenizer, CLIPConfig, CLIPModel

        self.use_logit_scale = use_logit_scale
        self.clip = CLIPModel(CLIPConfig(**clip_config)) if clip_config is not None else CLIPModel.from_pretrained(model)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.requires_grad_(False).eval()

    def per_view(self, images: torch.Tensor, prompts: Sequence[str], **aux: Any) -> torch.Tensor:
        b, v = images.shape[:2]
        pixels = clip_pixels(images.flatten(0, 1), self.clip.config.vision_config.image_size)
        image = F.normalize(self.clip.get_image_features(pixel_values=pixels).pooler_output, dim=-1).view(b, v, -1)
        tokens = self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt").to(images.device)
        text = F.normalize(self.clip.get_text_features(**tokens).pooler_output, dim=-1)
        cosine = (image * text[:, None]).sum(-1)
        return self.clip.logit_scale.exp() * cosine if self.use_logit_scale else cosine


def _load_state_dict(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)

