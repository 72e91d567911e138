"""A Qwen2-VL / Qwen2.5-VL policy for video question answering: loading, LoRA, batched sampling, per-token log-probs.

``model`` names what to load:

* ``"tiny-random"`` — a randomly initialised Qwen2-VL-architecture model built in code with the byte tokenizer
  (:func:`build_tiny_qwen2vl`), for tests and offline demos;
* the name of a folder shipped in ``zoo/pretrained/`` (e.g. ``"tiny-qwen2vl-synthvsi"``) or any local folder: an
  alignzoo release of a VLM algorithm (``config.yaml``; its policy, LoRA merged, becomes the base) or a folder in
  transformers' ``save_pretrained`` layout (config + weights + tokenizer);
* a Hub id such as ``"Qwen/Qwen2-VL-2B-Instruct"`` (downloaded through the Hugging Face cache).

All G completions of a prompt see the same preprocessed frames (the video tensors are repeated, never re-sampled).
Qwen2.5-VL places video tokens on an absolute time axis (M-RoPE temporal ids advance ``tokens_per_second`` per
second): :meth:`QwenVLPolicy.prepare` takes the seconds between each video's sampled frames and passes the model
``second_per_grid_ts`` (``temporal_patch_size`` × that interval, as Qwen2.5-VL's processor does); Qwen2-VL has no
time axis and gets no such input.
Log-probs are computed from logits divided by the sampling temperature, as TRL does (spec §3.3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from zoo.configurable import Configurable
from zoo.vlm.chat import SYSTEM_PROMPT, VIDEO_TYPE, encode_prompts
from zoo.vlm.tokenizer import IM_END, IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START, build_byte_tokenizer
from zoo.vlm.video import VideoProcessorConfig, preprocess_videos

TINY_RANDOM = "tiny-random"
#: Seconds between sampled frames assumed for a video whose interval is unknown (e.g. SynthVSI's camera walk, which
#: has no clock): 2 frames per second, the sampling rate of Qwen2.5-VL's video pipeline (qwen-vl-utils), which with
#: ``temporal_patch_size = 2`` is also transformers' default of one second per temporal grid step.
DEFAULT_SECONDS_PER_FRAME = 0.5
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_tiny_qwen2vl(
    tokenizer, *, hidden_size: int = 64, num_layers: int = 2, vision_depth: int = 2, vision_embed_dim: int = 64, seed: int = 0
):
    """A Qwen2-VL-architecture model with random weights sized for CPU (≈0.4 M parameters at the defaults)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 4 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # M-RoPE splits the rotary half-dimension (head_dim/2 = hidden/8) into temporal/height/width sections
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": _mrope_section(hidden_size // 4 // 2)},
            "bos_token_id": None,
            "eos_token_id": ids(IM_END),
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": vision_depth,
            "embed_dim": vision_embed_dim,
            "hidden_size": hidden_size,
            "num_heads": 4,
            "mlp_ratio": 2,
        },
        image_token_id=ids(IMAGE_PAD),
        video_token_id=ids(VIDEO_PAD),
        vision_start_token_id=ids(VISION_START),
        vision_end_token_id=ids(VISION_END),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids(IM_END)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def _mrope_section(half_dim: int) -> list[int]:
    """Qwen2-VL splits the rotary half-dimension 1:1.5:1.5 (16, 24, 24 of 64) between time, height and width."""
    t = max(1, round(half_dim * 0.25))
    h = (half_dim - t) // 2
    return [t, h, half_dim - t - h]


def shipped_model_dir(name: str) -> Path | None:
    """The folder of a model shipped in ``zoo/pretrained/`` (``None`` if there is no such folder)."""
    folder = resources.files("zoo.pretrained").joinpath(name)
    return Path(str(folder)) if folder.is_dir() else None


@dataclass
class Rollout:
    """G sampled completions per prompt: ids ``[N, L]``, mask up to and including the first EOS, truncation flags."""

    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    truncated: torch.Tensor
    texts: list[str]


class QwenVLPolicy(Configurable, nn.Module):
    """Qwen2-VL / Qwen2.5-VL video-QA policy with optional LoRA (peft) and gradient checkpointing.

    ``system_prompt`` is the chat's system turn (Qwen2-VL's default; ``None`` omits the turn). ``lora_rank > 0``
    wraps the language model's projections in LoRA adapters and freezes everything else; the reference policy (for
    the KL term) is then the same network with the adapters disabled.
    """

    def __init__(
        self,
        model: str = TINY_RANDOM,
        *,
        lora_rank: int = 0,
        lora_alpha: int = 16,
        gradient_checkpointing: bool = False,
        dtype: str = "float32",
        min_pixels: int = 56 * 56,
        max_pixels: int = 28 * 28 * 1280,
        system_prompt: str | None = SYSTEM_PROMPT,
        tiny_hidden_size: int = 64,
        tiny_num_layers: int = 2,
        tiny_vision_depth: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.source = model
        self.system_prompt = system_prompt
        self.model, self.tokenizer = self._load(model, getattr(torch, dtype), tiny_hidden_size, tiny_num_layers, tiny_vision_depth, seed)
        # from_pretrained returns eval mode, in which transformers skips gradient checkpointing: train by default
        self.model.train()
        vision = self.model.config.vision_config
        self.video_config = VideoProcessorConfig(
            patch_size=vision.patch_size,
            temporal_patch_size=vision.temporal_patch_size,
            merge_size=vision.spatial_merge_size,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
        )
        self.eos_token_id = self.tokenizer.convert_tokens_to_ids(IM_END)
        #: Whether the model places video frames in time (Qwen2.5-VL) and so needs ``second_per_grid_ts``.
        self.timed_video = self.model.config.model_type == "qwen2_5_vl"
        self.uses_lora = lora_rank > 0
        if self.uses_lora:
            from peft import LoraConfig, get_peft_model

            self.model = get_peft_model(
                self.model,
                LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=list(LORA_TARGETS),
                           exclude_modules=r".*visual.*"),
            )
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if self.uses_lora:
                self.model.enable_input_require_grads()

    @staticmethod
    def _load(source: str, dtype: torch.dtype, hidden: int, layers: int, vision_depth: int, seed: int):
        from transformers import AutoModelForImageTextToText, AutoTokenizer

        if source == TINY_RANDOM:
            tokenizer = build_byte_tokenizer()
            return build_tiny_qwen2vl(tokenizer, hidden_size=hidden, num_layers=layers, vision_depth=vision_depth, seed=seed).to(dtype), tokenizer
        folder = shipped_model_dir(source) or (Path(source).expanduser() if Path(source).expanduser().is_dir() else None)
        if folder is not None and (folder / "config.yaml").is_file():
            return QwenVLPolicy._load_release(folder)
        where = str(folder) if folder is not None else source
        try:
            model = AutoModelForImageTextToText.from_pretrained(where, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(where)
        except OSError as err:
            raise OSError(
                f"cannot load VLM {source!r}: it is not 'tiny-random', a model shipped in zoo/pretrained, a local "
                f"folder, nor a reachable Hub id (offline? set HF_HUB_OFFLINE=0 or pre-download it). Cause: {err}"
            ) from err
        tokenizer.padding_side = "left"
        return model, tokenizer

    @staticmethod
    def _load_release(folder: Path):
        """The (merged) network and tokenizer of the policy inside an alignzoo release of a VLM algorithm."""
        from zoo.hub import from_pretrained

        module = from_pretrained(folder)
        policy = getattr(module, "policy", None)
        if not isinstance(policy, QwenVLPolicy):
            raise TypeError(f"{folder} is a release of {type(module).__name__}, which holds no QwenVLPolicy")
        model = policy.model.merge_and_unload() if policy.uses_lora else policy.model
        return model, policy.tokenizer

    # ------------------------------------------------------------------ inputs
    def prepare(
        self,
        videos: list[torch.Tensor] | torch.Tensor,
        questions: list[str],
        seconds_per_frame: float | Sequence[float | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Model inputs for one prompt per (video, question): left-padded ids, masks and the video patches.

        ``seconds_per_frame`` is the time between consecutive sampled frames, one value for all videos or one per
        video; ``None`` (for all, or for one video) means unknown: :data:`DEFAULT_SECONDS_PER_FRAME`. Only
        Qwen2.5-VL uses it (as ``second_per_grid_ts``).
        """
        pixel_values_videos, video_grid_thw = preprocess_videos(videos, self.video_config)
        prompts = encode_prompts(
            self.tokenizer, questions, self.video_config.tokens_per_video(video_grid_thw), self.system_prompt
        )
        device = self.device
        inputs = {
            "input_ids": prompts.input_ids.to(device),
            "attention_mask": prompts.attention_mask.to(device),
            "mm_token_type_ids": prompts.mm_token_type_ids.to(device),
            "pixel_values_videos": pixel_values_videos.to(device, self.dtype),
            "video_grid_thw": video_grid_thw.to(device),
        }
        if self.timed_video:
            inputs["second_per_grid_ts"] = self.second_per_grid_ts(seconds_per_frame, len(video_grid_thw)).to(device)
        return inputs

    def second_per_grid_ts(
        self, seconds_per_frame: float | Sequence[float | None] | None, num_videos: int
    ) -> torch.Tensor:
        """Seconds spanned by one temporal patch of each video: ``temporal_patch_size`` × seconds per frame."""
        if seconds_per_frame is None or isinstance(seconds_per_frame, (int, float)):
            seconds_per_frame = [seconds_per_frame] * num_videos
        if len(seconds_per_frame) != num_videos:
            raise ValueError(f"seconds_per_frame has {len(seconds_per_frame)} values for {num_videos} videos")
        seconds = [DEFAULT_SECONDS_PER_FRAME if s is None else float(s) for s in seconds_per_frame]
        return self.video_config.temporal_patch_size * torch.tensor(seconds, dtype=torch.float32)

    @staticmethod
    def repeat(inputs: dict[str, torch.Tensor], times: int) -> dict[str, torch.Tensor]:
        """Repeat every prompt ``times`` times consecutively (rows 0..G−1 are prompt 0); frames are shared, not resampled."""
        patches_per_video = inputs["video_grid_thw"].prod(-1)
        videos = torch.split(inputs["pixel_values_videos"], patches_per_video.tolist())
        out = {k: inputs[k].repeat_interleave(times, dim=0) for k in ("input_ids", "attention_mask", "mm_token_type_ids", "video_grid_thw")}
        out["pixel_values_videos"] = torch.cat([v for v in videos for _ in range(times)])
        if "second_per_grid_ts" in inputs:
            out["second_per_grid_ts"] = inputs["second_per_grid_ts"].repeat_interleave(times)
        return out

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------ sampling and scoring
    @torch.no_grad()
    def generate(self, inputs: dict[str, torch.Tensor], *, max_new_tokens: int, temperature: float = 1.0, greedy: bool = False) -> Rollout:
        """Sample one completion per row (``temperature``, no top-k/top-p), or decode greedily."""
        kwargs = {"do_sample": False} if greedy else {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        sequences = self.model.generate(
            **inputs, max_new_tokens=max_new_tokens, eos_token_id=self.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id, **kwargs,
        )
        completion_ids = sequences[:, inputs["input_ids"].shape[1]:]
        is_eos = completion_ids == self.eos_token_id
        has_eos = is_eos.any(dim=1)
        first_eos = torch.where(has_eos, is_eos.int().argmax(dim=1), completion_ids.shape[1])
        positions = torch.arange(completion_ids.shape[1], device=completion_ids.device)
        mask = (positions[None] <= first_eos[:, None]).long()
        texts = self.tokenizer.batch_decode(completion_ids * mask + self.tokenizer.pad_token_id * (1 - mask), skip_special_tokens=True)
        return Rollout(completion_ids, mask, ~has_eos, texts)

    def completion_logps(
        self, inputs: dict[str, torch.Tensor], completion_ids: torch.Tensor, completion_mask: torch.Tensor,
        *, temperature: float = 1.0, with_entropy: bool = False, model: nn.Module | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token log-probs ``[N, L]`` of ``completion_ids`` under the policy, from logits / ``temperature``.

        Also the per-token entropy of the temperature-scaled distribution when ``with_entropy``. ``model`` scores
        with another network of the same architecture (a frozen reference copy) instead of the policy's own.
        """
        prompt_len = inputs["input_ids"].shape[1]
        input_ids = torch.cat([inputs["input_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["attention_mask"], completion_mask], dim=1)
        mm_types = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(completion_ids)], dim=1)
        timing = {"second_per_grid_ts": inputs["second_per_grid_ts"]} if "second_per_grid_ts" in inputs else {}
        out = (model or self.model)(
            input_ids=input_ids, attention_mask=attention_mask, mm_token_type_ids=mm_types,
            pixel_values_videos=inputs["pixel_values_videos"], video_grid_thw=inputs["video_grid_thw"],
            use_cache=False, logits_to_keep=completion_ids.shape[1] + 1, **timing,
        )
        logits = out.logits[:, :-1].float() / temperature
        log_probs = logits.log_softmax(-1)
        logps = log_probs.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1) if with_entropy else None
        return logps, entropy

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """The base model (LoRA adapters off): the reference policy under LoRA."""
        if not self.uses_lora:
            raise RuntimeError("adapters_disabled() needs a LoRA policy (lora_rank > 0)")
        with self.model.disable_adapter():
            yield

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trainable tensors (the LoRA adapters under LoRA), keyed as in ``state_dict()``."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in trainable}


def video_token_positions(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Boolean mask of the ``<|video_pad|>`` positions of prepared inputs."""
    return inputs["mm_token_type_ids"] == VIDEO_TYPE
