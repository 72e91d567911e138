"""Qwen2-VL video preprocessing in plain torch: frames → ``pixel_values_videos`` and ``video_grid_thw``.

The steps of transformers' ``Qwen2VLVideoProcessor`` (which needs torchvision, unusable beside a CPU torch build):
smart resize of every frame to multiples of ``patch_size · merge_size`` within ``[min_pixels, max_pixels]``
(bicubic, antialiased), rescale by 1/255, normalise with the OpenAI-CLIP mean/std, pad the frame count to a
multiple of ``temporal_patch_size`` by repeating the last frame, and cut into flattened
``C · temporal_patch_size · patch_size²`` patches in the merge-window order the vision tower expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: OpenAI CLIP normalisation, as in Qwen2-VL's preprocessor config.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 1280) -> tuple[int, int]:
    """Qwen2-VL's target size: both sides multiples of ``factor``, area in ``[min_pixels, max_pixels]``, aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be below 200, got {max(height, width) / min(height, width):.1f}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class VideoProcessorConfig:
    """Patch geometry and pixel budget (Qwen2-VL / Qwen2.5-VL: patch 14, temporal patch 2, merge 2)."""

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280

    def tokens_per_video(self, grid_thw: torch.Tensor) -> torch.Tensor:
        """Number of ``<|video_pad|>`` tokens each video occupies in the text (grid cells / merge²)."""
        return grid_thw.prod(-1) // self.merge_size**2


def preprocess_video(frames: torch.Tensor, config: VideoProcessorConfig = VideoProcessorConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """One video ``[T, H, W, 3]`` uint8 (or ``[T, 3, H, W]``) → ``(pixel_values_videos [N, C·tp·p²], grid_thw [3])``."""
    if frames.ndim != 4:
        raise ValueError(f"expected frames of shape [T, H, W, 3] or [T, 3, H, W], got {tuple(frames.shape)}")
    video = frames if frames.shape[1] == 3 else frames.permute(0, 3, 1, 2)
    num_frames, channels, height, width = video.shape
    p, tp, m = config.patch_size, config.temporal_patch_size, config.merge_size
    new_h, new_w = smart_resize(height, width, p * m, config.min_pixels, config.max_pixels)
    if (new_h, new_w) != (height, width):
        # transformers resizes the uint8 frames with torchvision, i.e. torch's uint8 antialiased-bicubic kernel
        # (fixed-point; up to 13 levels away from resizing in float and rounding), so resize uint8 on the CPU too
        video = F.interpolate(video.to("cpu", torch.uint8), size=(new_h, new_w), mode="bicubic", antialias=True)
    video = video.float()
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    video = (video / 255.0 - mean) / std
    if pad := -num_frames % tp:
        video = torch.cat([video, video[-1:].expand(pad, -1, -1, -1)])
    grid_t, grid_h, grid_w = video.shape[0] // tp, new_h // p, new_w // p
    patches = video.reshape(grid_t, tp, channels, grid_h // m, m, p, grid_w // m, m, p)
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    flat = patches.reshape(grid_t * grid_h * grid_w, channels * tp * p * p)
    return flat, torch.tensor([grid_t, grid_h, grid_w])


def preprocess_videos(videos: list[torch.Tensor] | torch.Tensor, config: VideoProcessorConfig = VideoProcessorConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of videos → concatenated ``pixel_values_videos`` and ``video_grid_thw [B, 3]`` (processor layout)."""
    out = [preprocess_video(v, config) for v in videos]
    return torch.cat([o[0] for o in out]), torch.stack([o[1] for o in out])
