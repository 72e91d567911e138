"""SFT and DPO baselines on the tiny Qwen2-VL, checked against transformers' own loss and closed forms."""

from __future__ import annotations

import math
import random

import pytest
import torch
from lightning.pytorch import Trainer

from zoo.algorithms.dpo import DPO, dpo_loss, wrong_answer
from zoo.algorithms.sft import SFT, answer_targets
from zoo.tasks.spatial_vqa.metric import score_answer
from zoo.vlm.policy import QwenVLPolicy


def _batch(n: int = 3) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "frames": [torch.randint(0, 256, (2, 56, 56, 3), generator=g, dtype=torch.uint8) for _ in range(n)],
        "prompt": [f"How many chairs? {i}" for i in range(n)],
        "ground_truth": ["3", "left", "12.5"][:n],
        "question_type": ["object_counting", "object_rel_direction_easy", "object_size_estimation"][:n],
    }


@pytest.fixture(scope="module")
def policy():
    return QwenVLPolicy("tiny-random", tiny_vision_depth=1, system_prompt=None)


def test_sft_loss_equals_transformers_label_loss(policy):
    """Transformers' causal-LM loss with prompt positions ignored (-100) is the independent reference."""
    module = SFT(policy, eval_metric=None)
    batch = _batch()
    loss = module.sft_loss(batch)
    inputs = module.prompt_inputs(batch)
    ids, mask = answer_targets(policy, batch["ground_truth"], torch.device("cpu"))
    full = torch.cat([inputs["input_ids"], ids], 1)
    labels = torch.cat([torch.full_like(inputs["input_ids"], -100), ids.masked_fill(mask == 0, -100)], 1)
    reference = policy.model(
        input_ids=full, attention_mask=torch.cat([inputs["attention_mask"], mask], 1),
        mm_token_type_ids=torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(ids)], 1),
        pixel_values_videos=inputs["pixel_values_videos"], video_grid_thw=inputs["video_grid_thw"], labels=labels,
    ).loss
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)  # float32, different reduction order
    assert ids[0][mask[0].bool()].tolist() == policy.tokenizer("3", add_special_tokens=False)["input_ids"] + [policy.eos_token_id]


def test_dpo_loss_closed_forms():
    """At π = π_ref the loss is log 2; its gradient w.r.t. log π(y_w) is −β·σ(−β·margin)/N (eq. 7 derivative)."""
    g = torch.Generator().manual_seed(0)
    ref_c, ref_r = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    assert dpo_loss(ref_c, ref_r, ref_c, ref_r, beta=0.1).item() == pytest.approx(math.log(2), abs=1e-12)
    pol_c = (ref_c + torch.randn(5, generator=g, dtype=torch.float64)).requires_grad_(True)
    pol_r = ref_r + torch.randn(5, generator=g, dtype=torch.float64)
    dpo_loss(pol_c, pol_r, ref_c, ref_r, beta=0.3).backward()
    margin = (pol_c.detach() - ref_c) - (pol_r - ref_r)
    torch.testing.assert_close(pol_c.grad, -0.3 * torch.sigmoid(-0.3 * margin) / 5)


def test_rejected_answers_are_wrong():
    rng = random.Random(0)
    for truth, qtype in (("3", "object_counting"), ("1", "object_counting"), ("2.7", "object_abs_distance"),
                         ("145", "object_size_estimation"), ("21.4", "room_size_estimation")):
        for _ in range(50):
            wrong = wrong_answer(truth, [], rng)
            assert wrong != truth and float(wrong) > 0
            assert score_answer(wrong, truth, qtype) <= 0.1  # relative error ≥ 0.5 under the benchmark's MRA
            if truth.isdigit():
                assert wrong.isdigit()
    assert wrong_answer("left", ["left", "right"], rng) == "right"
    with pytest.raises(ValueError, match="no other answer of its question type"):
        wrong_answer("sofa", ["sofa"], rng)


def test_dpo_step_moves_policy_not_reference_and_starts_at_log2(tmp_path):
    module = DPO(QwenVLPolicy("tiny-random", tiny_vision_depth=1, system_prompt=None), beta=0.1, lr=1e-2,
                 eval_metric=None)
    batch = _batch()
    batch["ground_truth"][1] = "left"
    module.answer_pool["object_rel_direction_easy"] = {"left", "right"}
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    optimizer = module.configure_optimizers()
    module.log_metrics = lambda *a, **k: None  # outside a Trainer
    loss = module.training_step(batch, 0)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)  # policy == reference at the start
    loss.backward()
    optimizer.step()
    moved = {n for n, p in module.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith("policy.") for n in moved)


def test_validation_scores_greedy_answers_with_the_vsibench_metric(tmp_path):
    module = SFT(QwenVLPolicy("tiny-random", tiny_vision_depth=1, system_prompt=None), max_new_tokens=3)
    loader = torch.utils.data.DataLoader([_batch()], batch_size=None)
    out = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path).validate(
        module, loader)
    assert "val/vsibench/overall" in out[0] and 0.0 <= out[0]["val/vsibench/overall"] <= 100.0


def test_release_of_a_vlm_module_is_a_policy_base(tmp_path):
    """save_pretrained of an SFT module → QwenVLPolicy(folder) rebuilds the same network (the shipped-base path)."""
    module = SFT(QwenVLPolicy("tiny-random", tiny_vision_depth=1, system_prompt=None, seed=3), eval_metric=None)
    module.card_sections = {"Training": "SFT on SynthVSI."}
    module.save_pretrained(tmp_path / "release", metrics={"overall": 12.5})
    assert "## Training" in (tmp_path / "release" / "README.md").read_text()
    loaded = QwenVLPolicy(str(tmp_path / "release"), system_prompt=None)
    for (name, a), (_, b) in zip(module.policy.model.state_dict().items(), loaded.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
