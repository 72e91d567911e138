"""Multi-view 2D rewards: closed forms, aggregation, and CLIP-based rewards on tiny random CLIP models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from preset_standins import tiny_clip_tokenizer

from zoo.rewards import Renders
from zoo.splat.cameras import orbit_cameras
from zoo.tasks.text_to_3d.rewards import (
    AestheticReward, CLIPScoreReward, DepthNormalConsistency, NormalEstimatorReward, TargetColourReward, clip_pixels,
    depth_normals,
)
from zoo.configurable import Configurable


def composite(colour: torch.Tensor, alpha: torch.Tensor, bg: float = 1.0) -> torch.Tensor:
    """What a renderer outputs for object colour ``c`` [B, V, 3, H, W] with ``alpha`` [B, V, 1, H, W] over grey ``bg``."""
    return alpha * colour + (1 - alpha) * bg


def reference_target_colour(colour, alpha, target, min_coverage=0.02):
    """Per-view reward from the ground-truth object colour, pixel by pixel (no un-premultiplying): the alpha-weighted
    mean of ‖c − t‖² over the object, the coverage below min_coverage·H·W counted at the worst distance."""
    b, v, _, h, w = colour.shape
    t = [float(x) for x in target]
    d_max = sum(max(x, 1 - x) ** 2 for x in t)
    m = min_coverage * h * w
    out = torch.zeros(b, v, dtype=torch.float64)
    for i in range(b):
        for j in range(v):
            weighted, area = 0.0, 0.0
            for y in range(h):
                for x in range(w):
                    a = float(alpha[i, j, 0, y, x])
                    weighted += a * sum((float(colour[i, j, ch, y, x]) - t[ch]) ** 2 for ch in range(3))
                    area += a
            out[i, j] = -(weighted + max(m - area, 0.0) * d_max) / max(area, m)
    return out


@pytest.mark.parametrize("bg", [1.0, 0.5])
def test_target_colour_closed_form_and_aggregations(bg):
    gen = torch.Generator().manual_seed(0)
    colour = torch.rand(3, 4, 3, 5, 5, generator=gen, dtype=torch.float64)
    alpha = torch.rand(3, 4, 1, 5, 5, generator=gen, dtype=torch.float64)
    alpha[alpha < 0.3] = 0.0  # background pixels
    alpha[2, 1] = 0.0  # an empty view
    alpha[1, 3] *= 0.02  # a nearly transparent view (coverage below min_coverage · H·W = 0.5)
    images = composite(colour, alpha, bg)
    target = (1.0, 0.5, 0.0)
    per_view = reference_target_colour(colour, alpha, target)
    assert per_view[2, 1] == -2.25 and -2.25 < per_view[1, 3] < per_view[1, 2]
    reward = TargetColourReward(target=target, background=bg)
    torch.testing.assert_close(reward(images, ["x"] * 3, alpha=alpha), per_view.mean(1))
    torch.testing.assert_close(reward.score(Renders(images=images, alpha=alpha), ["x"] * 3), per_view.mean(1).float())
    torch.testing.assert_close(TargetColourReward(background=bg, aggregation="max")(images, ["x"] * 3, alpha=alpha), per_view.max(1).values)
    random_k = TargetColourReward(background=bg, aggregation="random_k", k=2, seed=3)
    got = random_k(images, ["x"] * 3, alpha=alpha)
    # each score is the mean of two distinct views of its own sample
    pairs = torch.combinations(torch.arange(4), 2)
    candidates = per_view[:, pairs].mean(-1)  # [3, 6]
    assert torch.isclose(candidates, got[:, None]).any(1).all()
    with pytest.raises(ValueError, match="aggregation must be one of"):
        TargetColourReward(aggregation="median")
    with pytest.raises(ValueError, match="k <= views"):
        TargetColourReward(aggregation="random_k", k=5)(images, ["x"] * 3, alpha=alpha)


def test_target_colour_needs_alpha():
    with pytest.raises(ValueError, match="needs the renders' alpha"):
        TargetColourReward()(torch.rand(1, 1, 3, 4, 4), ["x"])


def disc_object(radius: float, opacity: float = 1.0, colour=(1.0, 0.0, 0.0), size: int = 16):
    """A flat disc of one colour over white: (images, alpha) [1, 1, ...]."""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5 - size / 2, torch.arange(size) + 0.5 - size / 2, indexing="ij")
    alpha = ((xs**2 + ys**2 <= radius**2).float() * opacity).view(1, 1, 1, size, size)
    c = torch.tensor(colour).view(1, 1, 3, 1, 1).expand(1, 1, 3, size, size)
    return composite(c, alpha), alpha


def test_target_colour_does_not_reward_object_size_or_coverage():
    reward = TargetColourReward()  # orange target, white background
    target = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 3, 1, 1)
    scores, whole_image = [], []
    for radius, opacity in [(2.0, 1.0), (4.0, 1.0), (8.0, 1.0), (12.0, 1.0), (8.0, 0.3), (8.0, 0.6)]:
        images, alpha = disc_object(radius, opacity)
        scores.append(reward(images, ["x"], alpha=alpha))
        whole_image.append(-((images - target) ** 2).sum(2).mean())
    # the hackable whole-image distance rises as the red disc covers more of the white background ...
    assert whole_image[3] > whole_image[2] > whole_image[1] > whole_image[0]
    # ... the object-colour reward is the same for every size and opacity: ‖red − orange‖² = 0.25
    for s in scores:
        torch.testing.assert_close(s, torch.tensor([-0.25]))


def test_target_colour_degenerate_objects_score_worst():
    reward = TargetColourReward(min_coverage=0.02)  # m = 0.02 · 16 · 16 = 5.12 pixels of alpha
    images, alpha = disc_object(6.0, colour=(0.0, 0.0, 1.0))
    torch.testing.assert_close(reward(images, ["x"], alpha=alpha), torch.tensor([-2.25]))  # blue: the worst colour for orange
    images, alpha = disc_object(6.0)
    red = reward(images, ["x"], alpha=alpha)
    # vanished (α → 0) and one-pixel objects, even of the exact target colour, cannot beat a visible red object
    images, alpha = disc_object(6.0, colour=(1.0, 0.5, 0.0))
    vanished = reward(images, ["x"], alpha=alpha * 0.0)
    torch.testing.assert_close(vanished, torch.tensor([-2.25]))
    one_pixel = torch.zeros_like(alpha)
    one_pixel[..., 8, 8] = 1.0
    tiny = reward(composite(torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 3, 1, 1), one_pixel), ["x"], alpha=one_pixel)
    torch.testing.assert_close(tiny, torch.tensor([-(5.12 - 1.0) * 2.25 / 5.12]))
    assert vanished < tiny < red


def test_target_colour_rises_as_the_colour_moves_toward_the_target():
    reward = TargetColourReward()
    _, alpha = disc_object(5.0)
    start, target = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.5, 0.0])
    scores = []
    for s in torch.linspace(0, 1, 6):
        c = ((1 - s) * start + s * target).view(1, 1, 3, 1, 1).expand(1, 1, 3, 16, 16)
        scores.append(float(reward(composite(c, alpha), ["x"], alpha=alpha)))
    assert all(b > a for a, b in zip(scores, scores[1:]))
    assert scores[-1] == pytest.approx(0.0, abs=1e-6)


def test_target_colour_is_differentiable_through_score():
    gen = torch.Generator().manual_seed(1)
    colour = torch.rand(2, 2, 3, 4, 4, generator=gen, requires_grad=True)
    alpha = torch.rand(2, 2, 1, 4, 4, generator=gen) * 0.9 + 0.1
    reward = TargetColourReward(target=(0.0, 0.0, 0.0), background=0.5)
    reward.score(Renders(images=composite(colour, alpha, 0.5), alpha=alpha), ["a", "b"]).sum().backward()
    # R_b = mean_v −Σ α‖c‖² / Σα (coverage ≥ m) → dR/dc = −2·α·c / (Σ_view α · V)
    expected = -2 * alpha * colour.detach() / (alpha.sum((2, 3, 4), keepdim=True) * 2)
    torch.testing.assert_close(colour.grad, expected)
    # a gradient-ascent step on the colour moves it toward the target and raises the reward
    with torch.no_grad():
        before = reward(composite(colour, alpha, 0.5), ["a", "b"], alpha=alpha)
        after = reward(composite(colour + 0.5 * colour.grad, alpha, 0.5), ["a", "b"], alpha=alpha)
    assert (after > before).all()


def plane_renders(tilt: float) -> Renders:
    """A plane z = tilt·x seen by a camera on +z: exact depth and normals."""
    cams = orbit_cameras(torch.tensor([[0.0]]), torch.tensor([[0.0]]), 3.0, 1.0).to(torch.float64)
    h = w = 8
    ys, xs = torch.meshgrid((torch.arange(h, dtype=torch.float64) + 0.5) / h - 0.5, (torch.arange(w, dtype=torch.float64) + 0.5) / w - 0.5, indexing="ij")
    # camera at (0, 0, 3) looking at -z; camera x = world x, pixel ray (xs, ys, 1) in camera coords → world (xs, -ys, -1)
    # ray point: (xs d, -ys d, 3 - d) on plane z = tilt·x: 3 - d = tilt·xs·d → d = 3 / (1 + tilt·xs)
    depth = (3 / (1 + tilt * xs))[None, None, None]
    normal = F.normalize(torch.tensor([-tilt, 0.0, 1.0], dtype=torch.float64), dim=0)
    normals = normal.view(1, 1, 3, 1, 1).expand(1, 1, 3, h, w)
    return Renders(images=torch.ones(1, 1, 3, h, w, dtype=torch.float64), alpha=torch.ones(1, 1, 1, h, w, dtype=torch.float64),
                   depth=depth, normals=normals, cameras=cams)


def test_depth_normals_of_a_plane_and_consistency():
    renders = plane_renders(0.5)
    torch.testing.assert_close(depth_normals(renders.depth, renders.cameras), renders.normals, rtol=1e-6, atol=1e-6)
    dnc = DepthNormalConsistency()
    score = dnc.score(renders, ["x"])
    torch.testing.assert_close(score, torch.ones(1))
    # normals rotated by 90° about y are inconsistent with the depth: cos = 0 (n·n' = 0 for (-t,0,1) vs (1,0,t))
    wrong = Renders(images=renders.images, alpha=renders.alpha, depth=renders.depth, cameras=renders.cameras,
                    normals=F.normalize(torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64), dim=0).view(1, 1, 3, 1, 1).expand_as(renders.normals))
    torch.testing.assert_close(dnc.score(wrong, ["x"]), torch.zeros(1), atol=1e-6, rtol=0)
    with pytest.raises(RuntimeError):
        dnc.score(Renders(images=renders.images), ["x"])


def test_depth_normal_consistency_detach_depth_routes_the_gradient_to_the_normals_only():
    renders = plane_renders(0.5)
    torch.manual_seed(0)
    depth = (renders.depth + 0.05 * torch.rand_like(renders.depth)).requires_grad_()
    normals = F.normalize(renders.normals + 0.2 * torch.randn_like(renders.normals), dim=2).requires_grad_()
    grads = {}
    for detach in (False, True):
        r = Renders(images=renders.images, alpha=renders.alpha, depth=depth, normals=normals, cameras=renders.cameras)
        score = DepthNormalConsistency(detach_depth=detach).score(r, ["x"]).sum()
        grads[detach] = torch.autograd.grad(score, (depth, normals), allow_unused=True)
    assert grads[False][0].abs().sum() > 0 and grads[True][0] is None  # no gradient into the depth when detached
    torch.testing.assert_close(grads[True][1], grads[False][1])  # the normal-map gradient is the same


class ConstantNormals(Configurable, torch.nn.Module):
    """A stand-in normal estimator: predicts one fixed normal everywhere."""

    def __init__(self, normal: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> None:
        super().__init__()
        self.normal = torch.tensor(normal)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.normal.to(images).view(1, 3, 1, 1).expand(images.shape[0], 3, *images.shape[-2:])


def test_normal_estimator_reward_is_the_masked_cosine():
    renders = plane_renders(0.5)
    reward = NormalEstimatorReward(ConstantNormals())
    expected = F.normalize(torch.tensor([-0.5, 0.0, 1.0], dtype=torch.float64), dim=0)[2]  # cos with (0, 0, 1)
    torch.testing.assert_close(reward.score(renders, ["x"]), expected.float().view(1), rtol=1e-6, atol=1e-6)


TINY_VISION = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
               "image_size": 30, "patch_size": 10, "projection_dim": 16}
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
             "vocab_size": 99, "max_position_embeddings": 32, "projection_dim": 16}


def test_clip_pixels_resize_and_normalise():
    images = torch.rand(2, 3, 8, 8)
    out = clip_pixels(images, 30)
    manual = (F.interpolate(images, size=(30, 30), mode="bicubic", align_corners=False)
              - torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)) / torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, manual)


def test_aesthetic_reward_on_a_tiny_random_clip():
    torch.manual_seed(0)
    reward = AestheticReward(clip_config=TINY_VISION)
    images = torch.rand(2, 3, 3, 16, 16)
    scores = reward.score(Renders(images=images), ["a", "b"])
    with torch.no_grad():
        embeds = reward.clip(pixel_values=clip_pixels(images.flatten(0, 1), 30)).image_embeds
        per_view = reward.head(embeds / embeds.norm(dim=-1, keepdim=True)).view(2, 3)
    torch.testing.assert_close(scores, per_view.mean(1))
    assert [m.out_features for m in reward.head.layers if isinstance(m, torch.nn.Linear)] == [1024, 128, 64, 16, 1]


@pytest.fixture
def tiny_tokenizer(tmp_path):
    return tiny_clip_tokenizer(tmp_path / "tokenizer")


def test_clip_score_equals_clip_logits_per_image(tiny_tokenizer):
    # CLIPModel's own forward computes logit_scale · cos(image, text): the reward (one view) must equal its diagonal
    torch.manual_seed(0)
    config = {"vision_config": TINY_VISION, "text_config": TINY_TEXT, "projection_dim": 16}
    reward = CLIPScoreReward(tokenizer=tiny_tokenizer, clip_config=config)
    images = torch.rand(2, 1, 3, 16, 16)
    prompts = ["a red box", "a blue torus"]
    scores = reward.score(Renders(images=images), prompts)
    tokens = reward.tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = reward.clip(pixel_values=clip_pixels(images[:, 0], 30), **tokens)
    torch.testing.assert_close(scores, out.logits_per_image.diagonal())


def test_clip_score_without_logit_scale_is_the_cosine(tiny_tokenizer):
    # HPSv2's score is the cosine of unit image and text features: logits_per_image / logit_scale
    torch.manual_seed(0)
    config = {"vision_config": TINY_VISION, "text_config": TINY_TEXT, "projection_dim": 16, "logit_scale_init_value": 3.0}
    reward = CLIPScoreReward(tokenizer=tiny_tokenizer, clip_config=config, use_logit_scale=False)
    images = torch.rand(2, 1, 3, 16, 16)
    prompts = ["a red box", "a blue torus"]
    tokens = reward.tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = reward.clip(pixel_values=clip_pixels(images[:, 0], 30), **tokens)
    expected = out.logits_per_image.diagonal() / reward.clip.logit_scale.exp()
    torch.testing.assert_close(reward.score(Renders(images=images), prompts), expected)
    assert expected.abs().max() <= 1
