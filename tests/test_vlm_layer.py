"""The VLM layer: video preprocessing vs independent computations, the tokenizer, prompts, sampling and log-probs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.vlm.chat import VIDEO_TYPE, video_prompt
from zoo.vlm.policy import QwenVLPolicy
from zoo.vlm.tokenizer import SPECIAL_TOKENS, VIDEO_PAD, build_byte_tokenizer
from zoo.vlm.video import CLIP_MEAN, CLIP_STD, VideoProcessorConfig, preprocess_video, smart_resize


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return QwenVLPolicy("tiny-random")


def _video(seed: int, frames: int = 4, size: int = 56) -> torch.Tensor:
    return torch.randint(0, 256, (frames, size, size, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_patches_match_a_direct_per_patch_construction():
    """Each row is patch (t, h, w) in merge-window order: channels, then the tp frames, then 14×14 pixels."""
    video = _video(1, frames=3, size=56)  # 3 frames → padded to 4 by repeating the last one
    patches, grid = preprocess_video(video)
    assert grid.tolist() == [2, 4, 4]
    norm = (video.permute(0, 3, 1, 2).double() / 255 - torch.tensor(CLIP_MEAN, dtype=torch.double).view(3, 1, 1)) / torch.tensor(CLIP_STD, dtype=torch.double).view(3, 1, 1)
    norm = torch.cat([norm, norm[-1:]])
    row = 0
    for t in range(2):
        for bh in range(2):  # 2×2 merge windows, row-major; inside each window the 2×2 patches, row-major
            for bw in range(2):
                for mh in range(2):
                    for mw in range(2):
                        y, x = (2 * bh + mh) * 14, (2 * bw + mw) * 14
                        block = norm[2 * t:2 * t + 2, :, y:y + 14, x:x + 14]  # [tp, C, 14, 14]
                        expected = block.permute(1, 0, 2, 3).reshape(-1)
                        # float32 vs float64 normalisation: ≤ 1 ulp of values of size ≤ 2.2
                        torch.testing.assert_close(patches[row].double(), expected, rtol=0, atol=1e-6)
                        row += 1
    assert row == patches.shape[0]


def test_two_identical_frames_match_transformers_image_processor():
    """Qwen2VLImageProcessor (PIL path, no torchvision) tiles one image over the temporal patch: equal to a
    two-frame video of that image, when no resize is needed (56×56 is a multiple of 28)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    frame = _video(2, frames=1, size=56)[0]
    processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 1280)
    out = processor(images=[frame.numpy()], return_tensors="pt")
    ours, grid = preprocess_video(torch.stack([frame, frame]))
    assert out["image_grid_thw"][0].tolist() == grid.tolist()
    # transformers fuses rescale+normalise differently; the values agree to float32 rounding
    torch.testing.assert_close(ours, out["pixel_values"].float(), rtol=0, atol=1e-5)


def test_smart_resize_and_resized_grid():
    assert smart_resize(480, 640, 28, 56 * 56, 28 * 28 * 1280) == (476, 644)
    assert smart_resize(20, 20, 28, 56 * 56, 28 * 28 * 1280) == (56, 56)
    h, w = smart_resize(480, 640, 28, 56 * 56, 28 * 28 * 64)
    assert h * w <= 28 * 28 * 64 and h % 28 == 0 and w % 28 == 0
    patches, grid = preprocess_video(_video(3, frames=2, size=70), VideoProcessorConfig())
    assert grid.tolist() == [1, 70 // 28 * 2, 70 // 28 * 2] and patches.shape == (grid.prod().item(), 3 * 2 * 14 * 14)


GOLDEN = Path(__file__).parent / "fixtures" / "qwen2vl_video_golden.safetensors"


@pytest.mark.parametrize("case", ["f4_56x56", "f3_70x70", "f5_100x100", "f2_60x90"])
def test_matches_transformers_video_processor_golden(case):
    """transformers' own Qwen2VLVideoProcessor (run where torchvision exists, stored by
    ``fixtures/make_qwen2vl_video_golden.py``) on the same frames: same grid, same patches. The bound allows
    float32 rounding of the fused rescale+normalise and of the bicubic resize (values are ~N(0, 1))."""
    from safetensors.torch import load_file

    golden = load_file(GOLDEN)
    ours, grid = preprocess_video(golden[f"{case}.frames"], VideoProcessorConfig(min_pixels=56 * 56))
    assert grid.tolist() == golden[f"{case}.video_grid_thw"].tolist()
    torch.testing.assert_close(ours, golden[f"{case}.pixel_values_videos"], rtol=0, atol=1e-5)


def test_byte_tokenizer_round_trips_and_saves(tmp_path):
    from transformers import AutoTokenizer

    tok = build_byte_tokenizer()
    assert len(tok) == 256 + len(SPECIAL_TOKENS)
    text = video_prompt("How many chairs (in m²)?", 3)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and ids.count(tok.convert_tokens_to_ids(VIDEO_PAD)) == 3
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)(text, add_special_tokens=False)["input_ids"] == ids


def test_prompt_layout_and_mm_token_types(policy):
    inputs = policy.prepare([_video(4), _video(5, frames=2)], ["short?", "a much longer question here?"])
    n_video = policy.video_config.tokens_per_video(inputs["video_grid_thw"])
    assert n_video.tolist() == [8, 4]  # grid (2,4,4) / 4 and (1,4,4) / 4
    assert (inputs["mm_token_type_ids"] == VIDEO_TYPE).sum(1).tolist() == n_video.tolist()
    assert inputs["attention_mask"][0, 0] == 0 and inputs["attention_mask"][:, -1].all()  # left padding


def test_sampled_group_shares_frames_and_logps_match_generation_scores(policy):
    """G copies share the same patches; log-probs recomputed by a teacher-forced forward (left-padded prompt +
    completion, temperature-scaled logits) equal those of the sampling distribution generate() used."""
    inputs = policy.prepare([_video(6), _video(7)], ["How many chairs?", "What is the room size?"])
    group = policy.repeat(inputs, 3)
    assert torch.equal(group["pixel_values_videos"][:32], group["pixel_values_videos"][32:64])
    torch.manual_seed(0)
    temperature = 0.7
    out = policy.model.generate(**group, max_new_tokens=6, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                output_logits=True, return_dict_in_generate=True, eos_token_id=-1, pad_token_id=0)
    completion = out.sequences[:, group["input_ids"].shape[1]:]
    gen_logps = torch.stack(out.logits, 1).float().div(temperature).log_softmax(-1).gather(-1, completion[..., None])[..., 0]
    mask = torch.ones_like(completion)
    logps, entropy = policy.completion_logps(group, completion, mask, temperature=temperature, with_entropy=True)
    torch.testing.assert_close(logps, gen_logps, rtol=1e-4, atol=1e-4)  # cached vs uncached attention, float32
    assert (entropy > 0).all()


def test_rollout_mask_stops_at_first_eos_and_flags_truncation(policy):
    inputs = policy.repeat(policy.prepare([_video(8)], ["q?"]), 4)
    torch.manual_seed(1)
    rollout = policy.generate(inputs, max_new_tokens=5, temperature=1.0)
    eos = rollout.completion_ids == policy.eos_token_id
    for row in range(4):
        hits = eos[row].nonzero()
        expected = hits[0].item() + 1 if len(hits) else 5
        assert rollout.completion_mask[row].sum().item() == expected
        assert bool(rollout.truncated[row]) == (len(hits) == 0)
    # a random tiny model almost never emits EOS in 5 tokens: the flags really are exercised
    assert rollout.truncated.any()


def test_lora_policy_reference_is_base_and_only_adapters_train():
    policy = QwenVLPolicy("tiny-random", lora_rank=4, gradient_checkpointing=True)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("visual" in n for n in trainable)
    inputs = policy.prepare([_video(9)], ["q?"])
    ids = torch.tensor([[65, 66, 67]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    policy.train()
    logps, _ = policy.completion_logps(inputs, ids, mask)
    with policy.adapters_disabled():
        ref, _ = policy.completion_logps(inputs, ids, mask)
    plain = QwenVLPolicy("tiny-random")  # same seed → same base weights
    base, _ = plain.completion_logps(inputs, ids, mask)
    torch.testing.assert_close(ref, base)
    assert not torch.allclose(logps, ref)
    logps.sum().backward()  # gradient checkpointing path
    assert all(p.grad is not None for n, p in policy.named_parameters() if p.requires_grad)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(OSError, match="not 'tiny-random', a model shipped in zoo/pretrained"):
        QwenVLPolicy("no-org/no-such-model-offline")
