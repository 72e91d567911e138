"""The toy vsGRPO study on SynthVSI, on CPU: tiny SFT base → GRPO vs continued SFT (equal wall time) vs constants.

Phases (each a sub-command; all seeded, one thread, results as JSON under ``--out``):

* ``sft``      train the tiny Qwen2-VL-architecture model from scratch with SFT; save the policy (transformers
               layout + tokenizer) every ``--save-every`` steps;
* ``eval``     greedy VSI-Bench score of a saved policy on the held-out split, per question type, beside the
               best-constant-answer baseline (constants chosen on the training split);
* ``grpo``     GRPO from a saved policy for ``--minutes``; ``control`` continues SFT for the same wall time;
* ``constants`` the best-constant-answer baseline alone;
* ``ship``     write a saved SFT policy as an alignzoo release (``--ship-dir``) with the study's numbers in its card
               (``--card`` markdown file).

    python benchmarks/grpo_toy_study.py sft --minutes 45 --out /tmp/h6
    python benchmarks/grpo_toy_study.py eval --policy /tmp/h6/sft/step-001200 --out /tmp/h6
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from zoo.algorithms.grpo import GRPO
from zoo.algorithms.sft import SFT
from zoo.tasks.spatial_vqa.datasets import SynthVSI
from zoo.tasks.spatial_vqa.metric import VSIBenchMetric, score_answer
from zoo.tasks.spatial_vqa.baselines import best_constant_answers
from zoo.tasks.spatial_vqa.datamodule import PromptCollator
from zoo.tasks.spatial_vqa.rewards import SpatialVQAReward
from zoo.vlm.policy import QwenVLPolicy

TINY = {"tiny_hidden_size": 64, "tiny_num_layers": 2, "tiny_vision_depth": 2, "system_prompt": None}


def split(name: str, args) -> SynthVSI:
    data = SynthVSI(split=name, num_scenes=args.train_scenes if name == "train" else args.eval_scenes, seed=0,
                    image_size=args.image_size, cache_dir=args.cache)
    data.load()
    return data


collate = PromptCollator("vanilla")  # the vanilla vsGRPO training prompt, for training and evaluation


def loader(data, batch_size: int, seed: int, shuffle: bool = True):
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                                       generator=torch.Generator().manual_seed(seed))


def save_policy(policy: QwenVLPolicy, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    policy.model.save_pretrained(folder)
    policy.tokenizer.save_pretrained(folder)


def per_type_scores(predictions, records) -> dict[str, dict[str, float]]:
    """Mean score, standard error and count per question type, plus the VSI-Bench overall (all in percent)."""
    values: dict[str, list[float]] = defaultdict(list)
    for p, r in zip(predictions, records):
        values[r.question_type].append(score_answer(p, r.ground_truth, r.question_type))
    out = {}
    for qtype, v in sorted(values.items()):
        t = torch.tensor(v, dtype=torch.float64)
        out[qtype] = {"mean": 100 * t.mean().item(), "se": 100 * (t.std() / math.sqrt(len(v))).item(), "n": len(v)}
    metric = VSIBenchMetric()
    metric.update(predictions, [r.ground_truth for r in records], [r.question_type for r in records])
    out["overall"] = {"mean": metric.compute()["overall"].item()}
    return out


@torch.no_grad()
def evaluate(policy: QwenVLPolicy, data: SynthVSI, batch_size: int = 32, max_new_tokens: int = 16) -> list[str]:
    policy.eval()
    module = SFT(policy, max_new_tokens=max_new_tokens, eval_metric=None)
    predictions = []
    for batch in tqdm(loader(data, batch_size, 0, shuffle=False), desc="eval", leave=False):
        predictions += module.answer(batch)
    return predictions


def run_sft(policy: QwenVLPolicy, train, args, out: Path, tag: str) -> list[dict]:
    """SFT for ``args.minutes`` wall minutes; returns the loss curve."""
    module = SFT(policy, lr=args.lr, eval_metric=None)
    optimizer = module.configure_optimizers()
    policy.train()
    curve, step, start = [], 0, time.time()
    while time.time() - start < args.minutes * 60:
        for batch in loader(train, args.batch_size, args.seed + step):
            loss = module.sft_loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            curve.append({"step": step, "loss": loss.item(), "minutes": (time.time() - start) / 60})
            if step % 50 == 0:
                print(json.dumps(curve[-1]), flush=True)
            if args.save_every and step % args.save_every == 0:
                save_policy(policy, out / tag / f"step-{step:06d}")
            if time.time() - start > args.minutes * 60:
                break
    save_policy(policy, out / tag / "final")
    return curve


def run_grpo(policy: QwenVLPolicy, train, args, out: Path) -> list[dict]:
    """GRPO (manual loop over the module's own rollout and loss) for ``args.minutes`` wall minutes."""
    from lightning.pytorch import Trainer

    module = GRPO(policy, [SpatialVQAReward(mode="vanilla")], num_generations=args.num_generations, temperature=1.0,
                  max_new_tokens=16, beta=args.beta, loss_type="grpo", lr=args.lr, eval_metric=None, seed=args.seed)

    class Budget(torch.utils.data.IterableDataset):
        def __iter__(self):
            epoch = 0
            while True:
                yield from loader(train, args.batch_size, args.seed + epoch)
                epoch += 1

    class Stop(__import__("lightning").pytorch.Callback):
        def __init__(self):
            self.start, self.curve = time.time(), []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
            self.curve.append({"step": trainer.global_step, "minutes": (time.time() - self.start) / 60, **logged})
            if trainer.global_step % 20 == 0:
                print(json.dumps(self.curve[-1]), flush=True)
            if time.time() - self.start > args.minutes * 60:
                trainer.should_stop = True

    stop = Stop()
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, callbacks=[stop], enable_model_summary=False)
    trainer.fit(module, torch.utils.data.DataLoader(Budget(), batch_size=None))
    save_policy(policy, out / "grpo" / "final")
    return stop.curve


def compare(runs: list[Path], evals: SynthVSI) -> str:
    """Markdown table: per question type and overall, each run's score and its paired difference to the first run
    (± the standard error of the paired per-question differences; overall combines the per-task errors)."""
    from zoo.tasks.spatial_vqa.records import REL_DIRECTION_SUBTYPES, task_of

    loaded = [json.loads(r.read_text()) for r in runs]
    per_q = [torch.tensor(d["per_question"], dtype=torch.float64) for d in loaded]
    types = sorted({r.question_type for r in evals.records})
    index = {t: torch.tensor([r.question_type == t for r in evals.records]) for t in types}
    header = "| question type | n | " + " | ".join(r.stem.removeprefix("eval-") for r in runs) + " |"
    lines = [header, "|" + "---|" * (2 + len(runs))]
    diffs: dict[str, list[tuple[float, float]]] = {t: [] for t in types}
    for t in types:
        cells = [f"{100 * p[index[t]].mean():.1f}" for p in per_q[:1]]
        for p in per_q[1:]:
            d = 100 * (p[index[t]] - per_q[0][index[t]])
            se = d.std().item() / math.sqrt(len(d))
            diffs[t].append((d.mean().item(), se))
            cells.append(f"{100 * p[index[t]].mean():.1f} ({d.mean():+.1f} ± {se:.1f})")
        lines.append(f"| {t} | {int(index[t].sum())} | " + " | ".join(cells) + " |")
    tasks = sorted({task_of(t) for t in types})
    overall = []
    for k in range(len(runs) - 1):
        mean = var = 0.0
        for task in tasks:
            members = [t for t in types if task_of(t) == task]
            w = 1 / len(members) if task == "object_rel_direction" and set(members) <= set(REL_DIRECTION_SUBTYPES) else 1.0
            mean += sum(w * diffs[t][k][0] for t in members) / len(tasks)
            var += sum((w * diffs[t][k][1]) ** 2 for t in members) / len(tasks) ** 2
        overall.append(f"{mean:+.2f} ± {math.sqrt(var):.2f}")
    lines.append("| overall (VSI-Bench mean) | | " + " | ".join(
        [f"{loaded[0]['scores']['overall']['mean']:.2f}"]
        + [f"{d['scores']['overall']['mean']:.2f} ({o})" for d, o in zip(loaded[1:], overall)]) + " |")
    return "\n".join(lines)


def ship(args) -> None:
    """The saved policy as a release of the SFT module that builds the same tiny architecture in code."""
    from transformers import AutoModelForImageTextToText

    trained = AutoModelForImageTextToText.from_pretrained(args.policy)
    module = SFT(QwenVLPolicy("tiny-random", seed=args.seed, **TINY), lr=args.lr, max_new_tokens=16)
    module.policy.model.load_state_dict(trained.state_dict())
    scores = json.loads((args.out / f"eval-{Path(args.policy).parent.name}-{Path(args.policy).name}.json").read_text())
    metrics = {f"synthvsi/{k}": v["mean"] for k, v in scores["scores"].items()}
    if args.card is not None:
        module.card_sections = {"SynthVSI study": args.card.read_text()}
    module.save_pretrained(args.ship_dir, metrics=metrics)
    print(f"shipped {args.policy} to {args.ship_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["sft", "eval", "grpo", "control", "constants", "ship", "compare"])
    parser.add_argument("--runs", nargs="*", default=[], help="compare: eval JSON files, the first is the reference")
    parser.add_argument("--ship-dir", type=Path, default=Path("zoo/pretrained/tiny-qwen2vl-synthvsi"))
    parser.add_argument("--card", type=Path, default=None, help="markdown of the card's study section")
    parser.add_argument("--out", type=Path, default=Path("/tmp/grpo_toy_study"))
    parser.add_argument("--cache", default=None, help="SynthVSI cache folder")
    parser.add_argument("--policy", default=None, help="saved policy folder to start from / evaluate")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--beta", type=float, default=1e-3)
    parser.add_argument("--save-every", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--train-scenes", type=int, default=1000)
    parser.add_argument("--eval-scenes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train = split("train", args)
    if args.phase == "constants":
        evals = split("eval", args)
        constants = best_constant_answers(train.records)
        scores = per_type_scores([constants[r.question_type] for r in evals.records], evals.records)
        (args.out / "constants.json").write_text(json.dumps({"answers": constants, "scores": scores}, indent=1))
        print(json.dumps(scores, indent=1))
        return
    if args.phase == "ship":
        ship(args)
        return
    if args.phase == "compare":
        print(compare([Path(r) for r in args.runs], split("eval", args)))
        return
    policy = QwenVLPolicy(args.policy or "tiny-random", seed=args.seed, **(TINY if not args.policy else {"system_prompt": None}))
    if args.phase == "eval":
        evals = split("eval", args)
        predictions = evaluate(policy, evals)
        scores = per_type_scores(predictions, evals.records)
        name = Path(args.policy).parent.name + "-" + Path(args.policy).name
        per_question = [score_answer(p, r.ground_truth, r.question_type) for p, r in zip(predictions, evals.records)]
        (args.out / f"eval-{name}.json").write_text(json.dumps({"policy": args.policy, "scores": scores,
                                                                 "per_question": per_question,
                                                                 "predictions": predictions}, indent=1))
        print(json.dumps(scores, indent=1))
    elif args.phase in ("sft", "control"):
        curve = run_sft(policy, train, args, args.out, "sft" if args.phase == "sft" else "control")
        (args.out / f"{args.phase}-curve.json").write_text(json.dumps(curve))
    else:
        curve = run_grpo(policy, train, args, args.out)
        (args.out / "grpo-curve.json").write_text(json.dumps(curve))


if __name__ == "__main__":
    main()
