"""Multi-view 2D rewards: closed forms, aggregation, and CLIP-based rewards on tiny random CLIP models."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from zoo.rewards import Renders
from zoo.splat.cameras import orbit_cameras
from zoo.tasks.text_to_3d.rewards import (
    AestheticReward, CLIPScoreReward, DepthNormalConsistency, NormalEstimatorReward, TargetColourReward, clip_pixels,
    depth_normals,
)
from zoo.configurable import Configurable


def test_target_colour_closed_form_and_aggregations():
    images = torch.rand(3, 4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([1.0, 0.5, 0.0])
    per_view = torch.stack([torch.stack([-((images[b, v].permute(1, 2, 0) - target) ** 2).sum(-1).mean() for v in range(4)]) for b in range(3)])
    mean = TargetColourReward(target=target.tolist())(images, ["x"] * 3)
    torch.testing.assert_close(mean, per_view.mean(1))
    torch.testing.assert_close(TargetColourReward(aggregation="max")(images, ["x"] * 3), per_view.max(1).values)
    random_k = TargetColourReward(aggregation="random_k", k=2, seed=3)
    got = random_k(images, ["x"] * 3)
    # each score is the mean of two distinct views of its own sample
    pairs = torch.combinations(torch.arange(4), 2)
    candidates = per_view[:, pairs].mean(-1)  # [3, 6]
    assert torch.isclose(candidates, got[:, None]).any(1).all()
    with pytest.raises(ValueError, match="aggregation must be one of"):
        TargetColourReward(aggregation="median")
    with pytest.raises(ValueError, match="k <= views"):
        TargetColourReward(aggregation="random_k", k=5)(images, ["x"] * 3)


def test_target_colour_is_differentiable_through_score():
    images = torch.rand(2, 2, 3, 4, 4, requires_grad=True)
    reward = TargetColourReward(target=(0.0, 0.0, 0.0))
    reward.score(Renders(images=images), ["a", "b"]).sum().backward()
    # d/dx of -mean(x²) summed over channels = -2x / (H·W·V)
    torch.testing.assert_close(images.grad, -2 * images.detach() / (4 * 4 * 2))


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
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in letters:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), pad_token="<|endoftext|>")
    folder = tmp_path / "tokenizer"
    tok.save_pretrained(folder)
    return str(folder)


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
