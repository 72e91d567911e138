"""Cross-rank statistics in two gloo processes: the helpers of ``zoo.distributed`` and DDPO's advantages, which
must equal the single-process computation over the whole batch (DDPO gathers its rewards before normalising)."""

from __future__ import annotations

import torch

from zoo import distributed
from zoo.algorithms.ddpo import DDPO, normalized_advantages
from zoo.diffusion.rollout import Trajectories
from zoo.tasks.text_to_image.tiny import ColourReward, TinyUNetGenerator

WORLD = 2
PROMPTS = ["red", "green", "red", "blue", "green", "red", "blue", "green"]  # 4 per rank, groups span ranks
REWARDS = torch.tensor([0.1, -0.4, 0.7, 2.0, 0.3, -1.2, 1.1, float("nan")])


def fake_rollout(prompts: list[str], rewards: torch.Tensor) -> Trajectories:
    n = len(prompts)
    return Trajectories(
        latents=torch.zeros(n, 3, 1), eps_old=torch.zeros(n, 2, 1), log_probs=torch.zeros(n, 2), rewards=rewards,
        condition=torch.zeros(n, 1), null_condition=torch.zeros(n, 1), prompts=list(prompts),
    )


def advantages_seen_by_ddpo(prompts: list[str], rewards: torch.Tensor, normalization: str) -> torch.Tensor:
    """Run DDPO.training_step on a fixed rollout and return the advantages it trains with."""
    module = DDPO(TinyUNetGenerator(size=4, width=8), ColourReward(), num_steps=2, advantage_normalization=normalization)
    seen: list[torch.Tensor] = []
    module.rollout = lambda batch: fake_rollout(prompts, rewards)
    module.train_on = lambda trajs, advantages: seen.append(advantages) or {}
    module.log_round = lambda metrics: None
    module.training_step(prompts, 0)
    return seen[0]


def _worker(rank: int, init_file: str, queue) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    rows = slice(rank * 4, rank * 4 + 4)
    result = {
        "world_size": distributed.world_size(),
        "rows": distributed.gather_rows(torch.arange(3) + 10 * rank).tolist(),
        "objects": distributed.gather_objects([f"r{rank}a", f"r{rank}b"]),
        "local": (distributed.local_rows(4).start, distributed.local_rows(4).stop),
        # plain lists: tensors put on the queue would be shared through this (exiting) process's file descriptors
        "prompt": advantages_seen_by_ddpo(PROMPTS[rows], REWARDS[rows], "prompt").tolist(),
        "batch": advantages_seen_by_ddpo(PROMPTS[rows], REWARDS[rows], "batch").tolist(),
    }
    queue.put((rank, result))
    torch.distributed.destroy_process_group()


def test_gathers_and_ddpo_advantages_across_two_processes(tmp_path):
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    torch.multiprocessing.start_processes(_worker, args=(str(tmp_path / "init"), queue), nprocs=WORLD, join=True, start_method="spawn")
    results = dict(queue.get() for _ in range(WORLD))
    for rank, result in results.items():
        assert result["world_size"] == WORLD
        assert result["rows"] == [0, 1, 2, 10, 11, 12]
        assert result["objects"] == ["r0a", "r0b", "r1a", "r1b"]
        assert result["local"] == (4 * rank, 4 * rank + 4)
    for normalization in ("prompt", "batch"):
        # reference: one process normalising the whole batch (per-prompt groups span both ranks)
        full = normalized_advantages(REWARDS, PROMPTS if normalization == "prompt" else [""] * 8, normalization == "prompt", 5.0)
        got = torch.tensor(results[0][normalization] + results[1][normalization])
        torch.testing.assert_close(got, full)
        # and it differs from normalising each rank's half on its own
        halves = torch.cat([
            normalized_advantages(REWARDS[:4], PROMPTS[:4], normalization == "prompt", 5.0),
            normalized_advantages(REWARDS[4:], PROMPTS[4:], normalization == "prompt", 5.0),
        ])
        assert not torch.allclose(got, halves)


def test_one_process_is_the_identity():
    x = torch.arange(4)
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.gather_rows(x) is x
    assert distributed.gather_objects(["a"]) == ["a"]
    assert distributed.local_rows(4) == slice(0, 4)
    torch.testing.assert_close(
        advantages_seen_by_ddpo(PROMPTS, REWARDS, "prompt"), normalized_advantages(REWARDS, PROMPTS, True, 5.0)
    )
