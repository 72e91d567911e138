"""A byte-level Qwen2 tokenizer built in code (no download): one token per byte plus the Qwen2-VL specials.

Used by the tiny offline models; it saves and reloads with ``save_pretrained`` / ``AutoTokenizer`` like any other.
"""

from __future__ import annotations

from transformers import Qwen2Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)


def build_byte_tokenizer() -> Qwen2Tokenizer:
    """256 byte symbols (GPT-2 byte→unicode map, no merges) + the 7 Qwen2-VL special tokens = 263 ids."""
    vocab = {symbol: i for i, symbol in enumerate(bytes_to_unicode().values())}
    vocab.update({token: len(vocab) + i for i, token in enumerate(SPECIAL_TOKENS)})
    return Qwen2Tokenizer(
        vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token=IM_END, pad_token=PAD,
        extra_special_tokens=list(SPECIAL_TOKENS),
    )
