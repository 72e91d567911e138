"""Video VLMs (Qwen2-VL / Qwen2.5-VL): loading or tiny offline construction, video preprocessing, chat prompts,
batched sampling with per-token log-probs."""

from zoo.vlm.policy import QwenVLPolicy, Rollout, build_tiny_qwen2vl
from zoo.vlm.tokenizer import build_byte_tokenizer
from zoo.vlm.video import VideoProcessorConfig, preprocess_video, preprocess_videos, smart_resize

__all__ = [
    "QwenVLPolicy",
    "Rollout",
    "VideoProcessorConfig",
    "build_byte_tokenizer",
    "build_tiny_qwen2vl",
    "preprocess_video",
    "preprocess_videos",
    "smart_resize",
]
