"""Qwen2-VL's chat format for one video and one question, with the ``<|video_pad|>`` run expanded.

Same text as Qwen2-VL-Instruct's chat template with the default system prompt and ``add_generation_prompt``::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n<|vision_start|><|video_pad|>…
    <|vision_end|>{question}<|im_end|>\\n<|im_start|>assistant\\n
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zoo.vlm.tokenizer import IM_END, IM_START, VIDEO_PAD, VISION_END, VISION_START

SYSTEM_PROMPT = "You are a helpful assistant."
#: ``mm_token_type_ids`` values transformers 5 expects: text 0, image 1, video 2.
TEXT_TYPE, VIDEO_TYPE = 0, 2


def video_prompt(question: str, num_video_tokens: int, system: str | None = SYSTEM_PROMPT) -> str:
    """The generation prompt for one question about one video occupying ``num_video_tokens`` tokens.

    ``system=None`` leaves the system turn out (the tiny byte-level models do, to keep sequences short).
    """
    head = f"{IM_START}system\n{system}{IM_END}\n" if system is not None else ""
    return (
        f"{head}{IM_START}user\n{VISION_START}{VIDEO_PAD * num_video_tokens}{VISION_END}"
        f"{question}{IM_END}\n{IM_START}assistant\n"
    )


@dataclass
class EncodedPrompts:
    """Left-padded prompt ids ``[B, L]`` with their attention mask and ``mm_token_type_ids``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor


def encode_prompts(
    tokenizer, questions: list[str], num_video_tokens: list[int] | torch.Tensor, system: str | None = SYSTEM_PROMPT
) -> EncodedPrompts:
    """Tokenise one prompt per question, left-padded for batched generation."""
    texts = [video_prompt(q, int(n), system) for q, n in zip(questions, num_video_tokens, strict=True)]
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    length = max(map(len, rows))
    pad_id = tokenizer.pad_token_id
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, length - len(row):] = torch.tensor(row)
        attention_mask[i, length - len(row):] = 1
    video_id = tokenizer.convert_tokens_to_ids(VIDEO_PAD)
    mm_types = torch.where(input_ids == video_id, VIDEO_TYPE, TEXT_TYPE)
    return EncodedPrompts(input_ids, attention_mask, mm_types)
