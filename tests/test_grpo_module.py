"""The GRPO LightningModule on the tiny Qwen2-VL: gradients reach exactly the trainable parameters, malformed
completions score 0 and are counted, the loss equals the functional objective, resuming continues identically."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, Dataset

from zoo.algorithms.grpo import GRPO, aggregate_loss, group_advantages, per_token_grpo_terms, slice_inputs
from zoo.configurable import Configurable
from zoo.vlm.policy import QwenVLPolicy


class DigitReward(Configurable):
    """1 when the completion is a single digit equal to the ground truth; garbage / empty → 0."""

    def __call__(self, completions, ground_truths, question_types):
        return torch.tensor([float(c.strip() == g) for c, g in zip(completions, ground_truths)])


class LengthReward(Configurable):
    """A graded reward (shorter completions score more) so that groups have reward spread."""

    def __call__(self, completions, ground_truths, question_types):
        return torch.tensor([1.0 / (1 + len(c)) for c in completions])


class NaNReward(Configurable):
    """A broken reward function: non-finite for every completion."""

    def __call__(self, completions, ground_truths, question_types):
        return torch.full((len(completions),), float("nan"))


class TinyVideoQA(Dataset):
    """Four fixed random 4-frame videos with digit answers, in a fixed order."""

    def __init__(self, n: int = 4) -> None:
        g = torch.Generator().manual_seed(0)
        self.videos = torch.randint(0, 256, (n, 4, 56, 56, 3), generator=g, dtype=torch.uint8)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"video": self.videos[i], "prompt": f"How many boxes? ({i})", "truth": str(i % 3), "type": "object_counting"}


def collate(items):
    return {
        "frames": [it["video"] for it in items],
        "prompt": [it["prompt"] for it in items],
        "ground_truth": [it["truth"] for it in items],
        "question_type": [it["type"] for it in items],
    }


def eos_prone(policy: QwenVLPolicy, logit: float = 4.5) -> QwenVLPolicy:
    """Give the random model's lm_head a bias toward <|im_end|> (≈ 1 in 4 tokens), so that some completions end
    within a few tokens (a random 263-token model almost never stops) and rewards differ within groups."""
    model = policy.model.get_base_model() if policy.uses_lora else policy.model
    old = model.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[policy.eos_token_id] = logit
    model.lm_head = head.requires_grad_(old.weight.requires_grad)
    return policy


def tiny_policy(**kwargs) -> QwenVLPolicy:
    return eos_prone(QwenVLPolicy("tiny-random", tiny_vision_depth=1, system_prompt=None, **kwargs))


def make_module(**kwargs) -> GRPO:
    defaults = dict(num_generations=3, max_new_tokens=4, beta=0.04, lr=1e-2, eval_metric=None, micro_batch_size=4)
    defaults.update(kwargs)
    rewards = defaults.pop("reward_funcs", [DigitReward(), LengthReward()])
    return GRPO(tiny_policy(), rewards, **defaults)


def trainer(tmp_path, **kwargs) -> Trainer:
    return Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=tmp_path, **kwargs)


def loader(n: int = 4):
    return DataLoader(TinyVideoQA(n), batch_size=2, shuffle=False, collate_fn=collate)


def test_one_step_moves_every_trainable_parameter_and_no_frozen_one(tmp_path):
    module = make_module()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    trainer(tmp_path, max_steps=1).fit(module, loader())
    moved = {n for n, p in module.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    frozen_reference = {n for n in before if n.startswith("reference.")}
    assert frozen_reference and not (moved & frozen_reference)
    assert trainable - moved == set(), sorted(trainable - moved)[:5]


def test_lora_step_moves_only_adapters(tmp_path):
    module = GRPO(tiny_policy(lora_rank=4),
                  [DigitReward(), LengthReward()], num_generations=3, max_new_tokens=4, beta=0.04, lr=1e-2,
                  eval_metric=None)
    assert module.reference is None  # the reference is the adapter-disabled base
    with torch.no_grad():  # LoRA B starts at 0 (then A gets no gradient): give it a value so both move
        for n, p in module.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    trainer(tmp_path, max_steps=1).fit(module, loader())
    moved = {n for n, p in module.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert moved == trainable and all("lora_" in n for n in moved)


def test_malformed_completions_get_zero_reward_and_are_counted():
    module = make_module(reward_funcs=[LengthReward(), NaNReward()], max_new_tokens=3)
    batch = collate([TinyVideoQA()[i] for i in range(2)])
    torch.manual_seed(0)
    group, stats = module.make_group_batch(batch)
    truncated = group.rollout.truncated
    assert truncated.any()  # a random tiny model rarely stops within 3 tokens
    per_func = module.compute_rewards(group.rollout, batch)
    assert (per_func[truncated] == 0).all()  # over-length → 0 for every reward function
    assert (per_func[:, 1] == 0).all()  # non-finite → 0
    assert stats["truncated_frac"] == truncated.float().mean()
    assert set(stats) >= {"reward", "reward_std", "frac_reward_zero_std", "completion_length", "truncated_frac",
                          "rewards/LengthReward", "rewards/NaNReward"}


def test_module_loss_is_the_functional_objective_on_its_own_tensors():
    """The micro-batch loss the module backpropagates equals per_token_grpo_terms + aggregate_loss applied to
    log-probs recomputed independently from the model's logits (off-policy: stored old log-probs perturbed)."""
    module = make_module(num_iterations=2, loss_type="dapo", epsilon_high=0.3)
    batch = collate([TinyVideoQA()[i] for i in range(2)])
    torch.manual_seed(1)
    group, _ = module.make_group_batch(batch)
    group.old_logps = group.old_logps + 0.3 * torch.randn_like(group.old_logps)
    rows = slice(0, 4)
    loss, _ = module.micro_batch_loss(group, rows, grad_accum_steps=2)
    inputs = slice_inputs(group.inputs, rows)
    ids, mask = group.rollout.completion_ids[rows], group.rollout.completion_mask[rows]
    full = torch.cat([inputs["input_ids"], ids], 1)
    logits = module.policy.model(
        input_ids=full, attention_mask=torch.cat([inputs["attention_mask"], mask], 1),
        mm_token_type_ids=torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(ids)], 1),
        pixel_values_videos=inputs["pixel_values_videos"], video_grid_thw=inputs["video_grid_thw"],
    ).logits[:, inputs["input_ids"].shape[1] - 1:-1]
    logps = torch.log_softmax(logits / module.temperature, -1).gather(-1, ids[..., None])[..., 0]
    terms = per_token_grpo_terms(logps, group.advantages[rows], old_logps=group.old_logps[rows],
                                 ref_logps=group.ref_logps[rows], beta=0.04, epsilon_low=0.2, epsilon_high=0.3)
    expected = aggregate_loss(terms.loss, mask, "dapo", grad_accum_steps=2, num_items_in_batch=group.num_items_in_batch,
                              steps_per_generation=2)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)  # float32 forward, same graph
    adv, _ = group_advantages(module.compute_rewards(group.rollout, batch).sum(1), 3)
    assert adv.shape == group.advantages.shape


def test_resume_from_mid_run_checkpoint_continues_identically(tmp_path):
    """2 epochs of one batch straight vs 1 epoch, checkpoint, then resumed to 2 epochs in a fresh module (optimizer
    state, reference model and step counter restored; sampling noise a function of the step only)."""
    torch.manual_seed(0)
    straight = make_module(num_iterations=2, num_generations=2, micro_batch_size=None)
    trainer(tmp_path / "a", max_epochs=2, enable_checkpointing=False).fit(straight, loader(2))

    torch.manual_seed(0)
    first = make_module(num_iterations=2, num_generations=2, micro_batch_size=None)
    t1 = trainer(tmp_path / "b", max_epochs=1, enable_checkpointing=False)
    t1.fit(first, loader(2))
    ckpt = tmp_path / "mid.ckpt"
    t1.save_checkpoint(ckpt)
    torch.manual_seed(123)  # a different global RNG state: the run must not depend on it
    resumed = make_module(num_iterations=2, num_generations=2, micro_batch_size=None)
    trainer(tmp_path / "c", max_epochs=2, enable_checkpointing=False).fit(resumed, loader(2), ckpt_path=ckpt)
    assert resumed.global_step == straight.global_step == 4  # 2 epochs × 1 batch × num_iterations 2
    for (n, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)
