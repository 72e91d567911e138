"""2D rewards on multi-view renders (Nabla-R2D3 spec §2.4) behind the one :class:`zoo.rewards.Reward` protocol:
``forward(images [B, V, 3, H, W], prompts, *, alpha, depth, normals, cameras) -> [B]``.

Every reward here scores each view (:meth:`MultiViewReward.per_view` → ``[B, V]``) and aggregates the views with
``aggregation``: ``"mean"`` (Nabla-R2D3's 3D reward, the mean over the rendered views), ``"max"``, or
``"random_k"`` (the mean over ``k`` views drawn per sample from the reward's own seeded stream).

* :class:`TargetColourReward` — alpha-weighted distance of the object's un-premultiplied colour to a target colour,
  blind to object size and background (differentiable, needs no model; the toy demo);
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
    """How close the object's own colour is to ``target``, independent of the object's size (the toy demo's reward).

    The renders are composited over a background: ``image = α·c + (1 − α)·bg`` per pixel, with ``c`` the object's
    (un-premultiplied) colour, ``α`` the renders' ``alpha`` and ``bg`` = :attr:`background` (which must equal the
    generator's, e.g. ``ToySplatGenerator.background``, 1.0 = white by default). Per view, with ``A = Σ_pixels α``,
    ``m = min_coverage · H·W`` and ``d_max = Σ_ch max(t, 1 − t)²`` (the largest squared distance any colour in
    ``[0, 1]³`` can have from the target ``t``)::

        c = (image − (1 − α)·bg) / max(α, eps)
        R_v = −( Σ_pixels α·‖c − t‖² + max(m − A, 0)·d_max ) / max(A, m)

    Why: the former ``−mean_pixels ‖image − t‖²`` counted the background pixels, so objects could raise it by
    growing over the white background without changing colour (reward hacking). Here the background never enters
    (it is removed by un-premultiplying) and, once an object covers at least ``m`` pixels of alpha, ``R_v`` is the
    alpha-weighted mean of ``‖c − t‖²`` over the object: growing, shrinking or scaling ``α`` of an object of the same
    colour leaves it unchanged; only moving the colour toward ``t`` raises it (0 at ``c = t``). The degenerate
    optima of a plain ``Σα·d / Σα`` (an object shrunk to one pixel, or vanished with ``α → 0``, whose 0/0 could score
    anything) are closed by the minimum coverage: the missing ``m − A`` pixels count at the worst distance
    ``d_max``, so a vanished object scores ``−d_max``, the lowest possible reward, and below ``m`` growing toward ``m``
    is rewarded. ``R_v ∈ [−d_max, 0]``; differentiable w.r.t. the images and alpha (``eps`` only guards pixels
    with ``α → 0``, whose weight ``α`` is ~0 anyway).

    ``alpha`` is required: without it (a 2D generator) the object cannot be told from the background, and falling
    back to the whole-image distance would silently bring the size hack back, so :meth:`per_view` raises a
    ``ValueError``.
    """

    def __init__(
        self,
        target: Sequence[float] = (1.0, 0.5, 0.0),
        background: float | Sequence[float] = 1.0,
        min_coverage: float = 0.02,
        eps: float = 1e-6,
        aggregation: str = "mean",
        k: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(aggregation, k, seed)
        if len(target) != 3:
            raise ValueError(f"target must be an RGB triple; got {list(target)}")
        if not 0 < min_coverage <= 1:
            raise ValueError(f"min_coverage must be a fraction of the view's pixels in (0, 1]; got {min_coverage}")
        self.target = [float(t) for t in target]
        self.background = float(background) if isinstance(background, (int, float)) else [float(b) for b in background]
        self.min_coverage, self.eps = float(min_coverage), float(eps)

    def per_view(self, images: torch.Tensor, prompts: Sequence[str], **aux: Any) -> torch.Tensor:
        alpha = aux.get("alpha")
        if alpha is None:
            raise ValueError(
                "TargetColourReward needs the renders' alpha to separate the object's colour from the background "
                "(a 3D generator such as ToySplatGenerator); got none"
            )
        target = torch.tensor(self.target, dtype=images.dtype, device=images.device).view(1, 1, 3, 1, 1)
        bg = torch.as_tensor(self.background, dtype=images.dtype, device=images.device).expand(3).view(1, 1, 3, 1, 1)
        alpha = alpha.to(images.dtype)
        colour = (images - (1 - alpha) * bg) / alpha.clamp(min=self.eps)  # un-premultiplied object colour c
        distance = ((colour - target) ** 2).sum(2, keepdim=True)  # ‖c − t‖² [B, V, 1, H, W]
        coverage = alpha.sum((2, 3, 4))  # A [B, V]
        m = self.min_coverage * images.shape[-2] * images.shape[-1]
        d_max = torch.maximum(target, 1 - target).pow(2).sum()
        missing = (m - coverage).clamp(min=0)
        return -((alpha * distance).sum((2, 3, 4)) + missing * d_max) / coverage.clamp(min=m)


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
    renders' ``depth``, ``normals``, ``alpha`` and :class:`~zoo.splat.cameras.Cameras`.

    ``detach_depth=True`` stops the gradient through the depth-derived normals, so it flows only through the
    rendered normal map, as in the released DNC runs (``reward_context=inference``, spec §2.4).
    """

    def __init__(self, detach_depth: bool = False, aggregation: str = "mean", k: int = 1, seed: int = 0) -> None:
        super().__init__(aggregation, k, seed)
        self.detach_depth = detach_depth

    def per_view(self, images: torch.Tensor, prompts: Sequence[str], **aux: Any) -> torch.Tensor:
        depth, normals, alpha, cameras = (aux.get(k) for k in ("depth", "normals", "alpha", "cameras"))
        if depth is None or normals is None or alpha is None or not isinstance(cameras, Cameras):
            raise ValueError("DepthNormalConsistency needs renders with depth, normals, alpha and Cameras (a 3D generator)")
        target = depth_normals(depth.detach() if self.detach_depth else depth, cameras)
        return masked_cosine(normals, target, alpha)


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

