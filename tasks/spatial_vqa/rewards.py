"""vsGRPO rewards (spec §1.4): a format reward per prompt mode and an accuracy reward.

* **Format** (think / observe only; vanilla has none): 1 if the completion, stripped, fully matches
  ``<think>.*?</think>\\s*<answer>.*?</answer>`` (R1-V's pattern, DOTALL), with ``observe`` in place of ``think``
  for observe mode; else 0.
* **Accuracy.** The answer is the ``<answer>`` content (think / observe; none → unparseable) or the whole
  completion (vanilla).

  - Multiple-choice / word answers ("character matching"): 1 if the normalised answer equals the normalised ground
    truth (strip, case-fold, trailing ``.`` removed, inner whitespace collapsed), else 0. This accepts multi-word
    categories such as "coffee table"; R1-V compares the stripped strings exactly, which would score "Left." 0
    against "left" although the benchmark's extraction accepts it.
  - Numerical answers: the first space-separated token is parsed (as the benchmark does); the paper's relative
    error ``e = |ŷ−y| / min(ŷ, y)`` becomes a reward by one of (the paper does not say which):

    ``"mra"`` (default) ``mean_θ 1{e < 1−θ}``, θ ∈ {0.50, …, 0.95}: the benchmark's MRA shape, so training
    optimises what is evaluated and the reward is graded (ten levels) for within-group variance;
    ``"linear"`` ``max(0, 1 − e)``; ``"threshold"`` ``1{e < threshold}``.

    An unparseable answer, a non-finite value, or ``ŷ ≤ 0`` scores 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch

from zoo.configurable import Configurable
from zoo.tasks.spatial_vqa.metric import MRA_THRESHOLDS, answer_tag_content, extract_answer, parse_number
from zoo.tasks.spatial_vqa.prompts import PROMPT_MODES
from zoo.tasks.spatial_vqa.records import NA_QUESTION_TYPES, task_of

_FORMAT_PATTERNS = {
    "think": re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL),
    "observe": re.compile(r"<observe>.*?</observe>\s*<answer>.*?</answer>", re.DOTALL),
}
NUMERIC_REWARDS = ("mra", "linear", "threshold")


def format_reward(completion: str, mode: str) -> float:
    """1.0 if ``completion`` follows the tag format of ``mode`` (think / observe), else 0.0."""
    if mode not in _FORMAT_PATTERNS:
        raise ValueError(f"format reward is defined for modes {tuple(_FORMAT_PATTERNS)}, not {mode!r}")
    return 1.0 if _FORMAT_PATTERNS[mode].fullmatch(completion) else 0.0


def answer_text(completion: str, mode: str) -> str | None:
    """The answer part of a completion: ``<answer>`` content (think / observe) or the whole text (vanilla)."""
    if mode == "vanilla":
        return completion.strip()
    if mode in _FORMAT_PATTERNS:
        return answer_tag_content(completion)
    raise ValueError(f"unknown prompt mode {mode!r}; expected one of {PROMPT_MODES}")


def normalise_answer(text: str) -> str:
    """Case-folded text with surrounding whitespace and trailing ``.`` removed and inner whitespace collapsed."""
    return " ".join(text.strip().rstrip(".").split()).casefold()


def relative_error(prediction: float, target: float) -> float:
    """The paper's symmetric relative error ``|ŷ − y| / min(ŷ, y)`` (both must be positive)."""
    return abs(prediction - target) / min(prediction, target)


def numeric_reward(prediction: float | None, target: float, kind: str = "mra", threshold: float = 0.1) -> float:
    """Reward of a numerical answer from the relative error (see the module docstring for the ``kind``s)."""
    if prediction is None or not math.isfinite(prediction) or prediction <= 0:
        return 0.0
    if target <= 0:
        raise ValueError(f"numerical ground truth must be positive, got {target}")
    error = relative_error(prediction, target)
    if kind == "mra":
        return float(sum(error < 1 - t for t in MRA_THRESHOLDS) / len(MRA_THRESHOLDS))
    if kind == "linear":
        return max(0.0, 1.0 - error)
    if kind == "threshold":
        return 1.0 if error < threshold else 0.0
    raise ValueError(f"unknown numeric reward {kind!r}; expected one of {NUMERIC_REWARDS}")


def accuracy_reward(
    completion: str, ground_truth: str, question_type: str, mode: str, numeric: str = "mra", threshold: float = 0.1
) -> float:
    """Accuracy reward of one completion (exact match or the numerical reward; unparseable → 0)."""
    task_of(question_type)
    answer = answer_text(completion, mode)
    if answer is None:
        return 0.0
    if question_type in NA_QUESTION_TYPES:
        return numeric_reward(parse_number(extract_answer(answer)), float(ground_truth), numeric, threshold)
    return 1.0 if normalise_answer(answer) == normalise_answer(ground_truth) else 0.0


class SpatialVQAReward(Configurable):
    """The vsGRPO reward of a batch of completions: accuracy + format (format only in think / observe mode).

    Call it with lists of completions, ground truths and question types; it returns one float32 reward per
    completion, shape ``[N]``. :meth:`components` gives the two terms separately (for logging).

    Args:
        mode: the prompt mode the completions were sampled with (``think`` / ``observe`` / ``vanilla``).
        numeric: ``"mra"`` (default), ``"linear"`` or ``"threshold"`` (see the module docstring).
        threshold: τ of the ``"threshold"`` reward.
    """

    def __init__(self, mode: str = "vanilla", numeric: str = "mra", threshold: float = 0.1) -> None:
        if mode not in PROMPT_MODES:
            raise ValueError(f"unknown prompt mode {mode!r}; expected one of {PROMPT_MODES}")
        if numeric not in NUMERIC_REWARDS:
            raise ValueError(f"unknown numeric reward {numeric!r}; expected one of {NUMERIC_REWARDS}")
        self.mode, self.numeric, self.threshold = mode, numeric, threshold

    def components(
        self, completions: Sequence[str], ground_truths: Sequence[str], question_types: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """``{"accuracy": [N], "format": [N]}`` (format is all zeros in vanilla mode, where it is not used)."""
        if not len(completions) == len(ground_truths) == len(question_types):
            raise ValueError("completions, ground_truths and question_types must have the same length")
        acc = [
            accuracy_reward(c, g, t, self.mode, self.numeric, self.threshold)
            for c, g, t in zip(completions, ground_truths, question_types)
        ]
        fmt = [format_reward(c, self.mode) if self.mode != "vanilla" else 0.0 for c in completions]
        return {"accuracy": torch.tensor(acc, dtype=torch.float32), "format": torch.tensor(fmt, dtype=torch.float32)}

    def __call__(
        self, completions: Sequence[str], ground_truths: Sequence[str], question_types: Sequence[str]
    ) -> torch.Tensor:
        parts = self.components(completions, ground_truths, question_types)
        return parts["accuracy"] + parts["format"]
