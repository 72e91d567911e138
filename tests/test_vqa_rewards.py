"""vsGRPO rewards and prompts: exact prompt strings, format reward per mode, accuracy reward variants."""

from __future__ import annotations

import pytest
import torch

from zoo.tasks.spatial_vqa.prompts import TRAINING_INSTRUCTIONS, build_prompt, vsibench_prompt
from zoo.tasks.spatial_vqa.records import VQARecord
from zoo.tasks.spatial_vqa.rewards import SpatialVQAReward, accuracy_reward, format_reward, numeric_reward

NA = VQARecord(1, "scannet", "scene0000_00", "object_counting", "How many chair(s) are in this room?", [], "4")
MCA = VQARecord(
    2, "scannet", "scene0000_00", "object_rel_distance", "Which is closest to the bed?", ["A. sofa", "B. table"], "A"
)


def test_training_instructions_are_the_paper_strings():
    assert TRAINING_INSTRUCTIONS["vanilla"] == "Please provide the short answer with one or two words or a number."
    assert TRAINING_INSTRUCTIONS["think"].startswith("Please think step by step and enclose your thinking process")
    assert "<observe> </observe> tag, and then provide" in TRAINING_INSTRUCTIONS["observe"]
    assert build_prompt(NA, "think") == NA.question + "\n" + TRAINING_INSTRUCTIONS["think"]


def test_vsibench_prompt_is_the_official_layout():
    assert vsibench_prompt(NA) == (
        "These are frames of a video.\nHow many chair(s) are in this room?\n"
        "Please answer the question using a single word or phrase."
    )
    assert vsibench_prompt(MCA) == (
        "These are frames of a video.\nWhich is closest to the bed?\nOptions:\nA. sofa\nB. table\n"
        "Answer with the option's letter from the given choices directly."
    )
    bare = VQARecord(3, "synthvsi", "s", "object_rel_distance", "Which is closest to the bed?", [], "sofa")
    with pytest.raises(ValueError, match="no options"):
        vsibench_prompt(bare)


@pytest.mark.parametrize(
    "completion, mode, expected",
    [
        ("<think>a</think><answer>3</answer>", "think", 1.0),
        ("<think>\nmulti\nline</think>\n <answer> 3 </answer>", "think", 1.0),
        ("<think>a</think><answer>3</answer>\n", "think", 0.0),  # full match of the raw text, as R1-V
        ("<think>a</think>", "think", 0.0),
        ("<answer>3</answer>", "think", 0.0),
        ("<think>a</think><answer>3</answer> trailing", "think", 0.0),
        ("<observe>a sofa</observe><answer>3</answer>", "observe", 1.0),
        ("<think>a</think><answer>3</answer>", "observe", 0.0),
    ],
)
def test_format_reward(completion, mode, expected):
    assert format_reward(completion, mode) == expected


def test_format_reward_is_undefined_for_vanilla():
    with pytest.raises(ValueError):
        format_reward("3", "vanilla")


# Relative error of the paper: e = |ŷ − y| / min(ŷ, y). y = 10:
#   ŷ = 12 → e = 0.2;  ŷ = 8 → e = 2/8 = 0.25;  ŷ = 10.5 → e = 0.05;  ŷ = 25 → e = 1.5.
# "mra": Σ_θ 1{e < 1 − θ} / 10 (strict): e = 0.2 → 1 − θ > 0.2 for θ ≤ .75 → 0.6;
#   e = 0.25 → θ ≤ .7 → 0.5;  e = 0.05 → 1 − .95 = 0.050000000000000044 > 0.05 → 1.0.
@pytest.mark.parametrize(
    "prediction, kind, expected",
    [
        (10, "mra", 1.0),
        (12, "mra", 0.6),
        (8, "mra", 0.5),
        (10.5, "mra", 1.0),
        (25, "mra", 0.0),
        (12, "linear", 0.8),
        (8, "linear", 0.75),
        (25, "linear", 0.0),
        (10.5, "threshold", 1.0),
        (12, "threshold", 0.0),
        (0, "mra", 0.0),
        (-3, "linear", 0.0),
        (None, "mra", 0.0),
        (float("nan"), "linear", 0.0),
        (float("inf"), "threshold", 0.0),
    ],
)
def test_numeric_reward_variants(prediction, kind, expected):
    assert numeric_reward(prediction, 10.0, kind, threshold=0.1) == pytest.approx(expected)


def test_accuracy_reward_by_mode_and_type():
    assert accuracy_reward("4", "4", "object_counting", "vanilla") == 1.0
    assert accuracy_reward("4 chairs.", "4", "object_counting", "vanilla") == 1.0
    assert accuracy_reward("<think>x</think><answer>4</answer>", "4", "object_counting", "think") == 1.0
    assert accuracy_reward("4", "4", "object_counting", "think") == 0.0  # no <answer>: unparseable
    assert accuracy_reward("four", "4", "object_counting", "vanilla") == 0.0
    assert accuracy_reward(" Left.", "left", "object_rel_direction_easy", "vanilla") == 1.0
    assert accuracy_reward("coffee  table", "coffee table", "object_rel_distance", "vanilla") == 1.0
    assert accuracy_reward("coffee", "coffee table", "object_rel_distance", "vanilla") == 0.0
    assert accuracy_reward("a.", "A", "object_rel_distance", "vanilla") == 1.0


def test_reward_module_sums_accuracy_and_format():
    completions = ["<think>x</think><answer>4</answer>", "<answer>4</answer>", "<think>x</think><answer>5</answer>"]
    reward = SpatialVQAReward(mode="think", numeric="linear")
    parts = reward.components(completions, ["4"] * 3, ["object_counting"] * 3)
    torch.testing.assert_close(parts["accuracy"], torch.tensor([1.0, 1.0, 0.75]))  # e = |5 − 4| / min(5, 4) = 0.25
    torch.testing.assert_close(parts["format"], torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(reward(completions, ["4"] * 3, ["object_counting"] * 3), torch.tensor([2.0, 1.0, 1.75]))
    vanilla = SpatialVQAReward()
    assert vanilla(["4"], ["4"], ["object_counting"]).dtype == torch.float32
    assert vanilla.components(["4"], ["4"], ["object_counting"])["format"].item() == 0.0


def test_bad_reward_settings_are_errors():
    with pytest.raises(ValueError, match="prompt mode"):
        SpatialVQAReward(mode="chain")
    with pytest.raises(ValueError, match="numeric reward"):
        SpatialVQAReward(numeric="log")
