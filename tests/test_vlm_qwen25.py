"""Qwen2.5-VL in QwenVLPolicy: the seconds between sampled frames reach M-RoPE as ``second_per_grid_ts``."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from zoo.tasks.spatial_vqa.datamodule import PromptCollator
from zoo.tasks.spatial_vqa.vsibench import sampled_frame_interval
from zoo.vlm.policy import DEFAULT_SECONDS_PER_FRAME, QwenVLPolicy, _mrope_section
from zoo.vlm.tokenizer import IM_END, IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START, build_byte_tokenizer

HIDDEN = 64


@pytest.fixture(scope="module")
def qwen25_folder(tmp_path_factory):
    """A randomly initialised, tiny Qwen2.5-VL-architecture model and the byte tokenizer, saved as a folder."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = build_byte_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": HIDDEN, "intermediate_size": 4 * HIDDEN,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 4096, "bos_token_id": None, "eos_token_id": ids(IM_END),
            "pad_token_id": tokenizer.pad_token_id,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": _mrope_section(HIDDEN // 4 // 2)},
        },
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": HIDDEN,
            "window_size": 56, "fullatt_block_indexes": [1], "tokens_per_second": 4,
        },
        image_token_id=ids(IMAGE_PAD), video_token_id=ids(VIDEO_PAD),
        vision_start_token_id=ids(VISION_START), vision_end_token_id=ids(VISION_END),
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    folder = tmp_path_factory.mktemp("tiny-qwen25vl")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def policy(qwen25_folder):
    return QwenVLPolicy(str(qwen25_folder))


def _video(seed: int, frames: int = 6, size: int = 56) -> torch.Tensor:
    return torch.randint(0, 256, (frames, size, size, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _model_position_ids(policy: QwenVLPolicy, inputs: dict[str, torch.Tensor], generate: bool = False) -> torch.Tensor:
    """The M-RoPE position ids the model itself computes for the prompt in a forward pass (or the first step of
    ``policy.generate``), captured at the language model."""
    seen = []

    def grab(module, args, kwargs):
        seen.append(kwargs["position_ids"])

    handle = policy.model.model.language_model.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        if generate:
            policy.generate(inputs, max_new_tokens=2, greedy=True)
        else:
            with torch.no_grad():
                policy.model(**inputs, use_cache=False)
    finally:
        handle.remove()
    return seen[0]


def _rope_index(policy: QwenVLPolicy, inputs: dict[str, torch.Tensor], second_per_grid_ts=None) -> torch.Tensor:
    """Position ids from calling the model's ``get_rope_index`` directly."""
    position_ids, _ = policy.model.model.get_rope_index(
        inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"],
        second_per_grid_ts=second_per_grid_ts, attention_mask=inputs["attention_mask"],
    )
    return position_ids


def test_qwen25_policy_samples_and_scores_end_to_end(policy):
    assert policy.timed_video
    inputs = policy.repeat(policy.prepare([_video(1), _video(2, frames=4)], ["How many chairs?", "q?"], [0.25, None]), 3)
    torch.testing.assert_close(inputs["second_per_grid_ts"], torch.tensor([0.5] * 3 + [2 * DEFAULT_SECONDS_PER_FRAME] * 3))
    rollout = policy.generate(inputs, max_new_tokens=4, temperature=1.0)
    assert rollout.completion_ids.shape == (6, 4) and len(rollout.texts) == 6
    logps, _ = policy.completion_logps(inputs, rollout.completion_ids, rollout.completion_mask)
    assert logps.shape == (6, 4) and torch.isfinite(logps).all()


def test_positions_use_the_frame_interval(policy):
    """Temporal ids advance tokens_per_second × temporal_patch_size × seconds_per_frame per grid step."""
    videos, questions, seconds = [_video(3), _video(4, frames=8)], ["q one?", "a longer question two?"], [0.1, 1.5]
    inputs = policy.prepare(videos, questions, seconds)
    expected_ts = torch.tensor([2 * 0.1, 2 * 1.5])
    torch.testing.assert_close(inputs["second_per_grid_ts"], expected_ts)
    got = _model_position_ids(policy, inputs)
    assert torch.equal(got, _rope_index(policy, inputs, expected_ts))
    # generate() hands the language model the 1-D text positions as an extra first row, then the M-RoPE ids
    assert torch.equal(_model_position_ids(policy, inputs, generate=True)[-3:], got)
    assert not torch.equal(got, _rope_index(policy, inputs))
    # Video 1 (8 frames → 4 temporal steps): ids step by 4 tokens/s × 3 s = 12; its first id is shared by t=0
    video = inputs["mm_token_type_ids"][1].bool() & inputs["attention_mask"][1].bool()
    t_ids = got[0, 1][video].unique()
    assert (t_ids.diff() == 12).all() and len(t_ids) == 4


def test_unknown_interval_is_the_transformers_default(policy):
    """No interval → DEFAULT_SECONDS_PER_FRAME, i.e. one second per temporal grid step, as transformers assumes."""
    inputs = policy.prepare([_video(5)], ["q?"])
    assert torch.equal(_model_position_ids(policy, inputs), _rope_index(policy, inputs))
    with pytest.raises(ValueError, match="2 values for 1 videos"):
        policy.prepare([_video(5)], ["q?"], [0.5, 0.5])


def test_qwen2vl_gets_no_timing_input():
    policy = QwenVLPolicy("tiny-random")
    assert not policy.timed_video
    assert "second_per_grid_ts" not in policy.prepare([_video(6)], ["q?"], [0.3])


def test_videos_report_their_frame_interval_and_batches_carry_it(tmp_path):
    path = tmp_path / "v.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(21):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 10 * i, dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert sampled_frame_interval(path, 5) == pytest.approx(20 / 4 / 10)  # frames 0, 5, …, 20 at 10 fps
    assert sampled_frame_interval(path, 1) is None
    items = [{"record": _record(), "frames": _video(7), "seconds_per_frame": 0.5}, {"record": _record(), "frames": _video(8)}]
    assert PromptCollator("vanilla")(items)["seconds_per_frame"] == [0.5, None]


def _record():
    from zoo.tasks.spatial_vqa.records import VQARecord

    return VQARecord(0, "scannet", "scene0", "object_counting", "How many chair(s) are in this room?", [], "4")
