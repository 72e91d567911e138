"""Media of an alignment run: the reward-vs-step plot and before/after turntable renders of a 3D generator,
plus the aligned release folder (safetensors + config + model card), all written under one output folder."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def turntable_grid(images: torch.Tensor) -> torch.Tensor:
    """``[B, V, 3, H, W]`` → one image ``[B·H, V·W, 3]`` (a row per sample, a column per view)."""
    b, v, c, h, w = images.shape
    return images.permute(0, 3, 1, 4, 2).reshape(b * h, v * w, c)


def save_reward_plot(steps: Sequence[int], rewards: Sequence[float], path: Path, title: str) -> Path:
    """Write a reward-vs-step PNG (raw values and a running mean over 10 steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = torch.tensor(list(rewards), dtype=torch.float64)
    window = min(10, len(values))
    smooth = torch.nn.functional.conv1d(values.view(1, 1, -1), torch.ones(1, 1, window, dtype=torch.float64) / window).view(-1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(list(steps), values.tolist(), alpha=0.4, label="reward (round mean)")
    ax.plot(list(steps)[window - 1 :], smooth.tolist(), label=f"running mean ({window})")
    ax.set_xlabel("training round")
    ax.set_ylabel("reward")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class TurntableMedia(Callback):
    """For a diffusion alignment module whose generator is 3D (has ``turntable_cameras(batch, views, elevation)``
    and ``render_views(latents, cameras, size)``, e.g. :class:`zoo.tasks.text_to_3d.generators.ToySplatGenerator`): before and after fit, sample ``prompts`` from fixed noise and render each sample from
    ``turntable_views`` azimuths; at the end write ``reward_curve.png`` (the logged ``train/reward`` of every
    round), ``turntable_before.png``, ``turntable_after.png``, ``rewards.csv`` and the aligned release folder
    ``aligned/`` (``save_pretrained`` with the before/after mean rewards in the card) under ``output_dir`` (default:
    the trainer's ``default_root_dir``).
    """

    def __init__(
        self,
        output_dir: str | None = None,
        prompts: Sequence[str] = ("a red sphere", "a green box", "a blue cylinder", "a yellow torus"),
        turntable_views: int = 8,
        elevation_deg: float = 20.0,
        size: int = 48,
        seed: int = 1234,
    ) -> None:
        super().__init__()
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.prompts = list(prompts)
        self.turntable_views, self.elevation_deg, self.size, self.seed = turntable_views, elevation_deg, size, seed
        self.steps: list[int] = []
        self.rewards: list[float] = []
        self.before_reward: float | None = None

    @torch.no_grad()
    def turntable(self, pl_module: LightningModule) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples of :attr:`prompts` from fixed noise: turntable images ``[B, V, 3, S, S]`` and their rewards ``[B]``
        (under the module's reward, on its evaluation cameras)."""
        from zoo.diffusion.rollout import sample_trajectories

        rng = torch.Generator().manual_seed(self.seed)
        generator = pl_module.generator
        trajs = sample_trajectories(generator, pl_module.sampler, self.prompts, pl_module.guidance_scale, rng, pl_module.device)
        x0 = trajs.latents[:, -1].to(pl_module.device)
        cams = generator.turntable_cameras(len(self.prompts), self.turntable_views, self.elevation_deg)
        images = generator.render_views(x0, cams, self.size).images
        rewards = pl_module.reward.score(generator.decode(x0, generator=rng, random_cameras=False), self.prompts)
        return images.cpu(), rewards.cpu()

    def _save_grid(self, images: torch.Tensor, name: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.output_dir.mkdir(parents=True, exist_ok=True)
        plt.imsave(self.output_dir / name, turntable_grid(images).clamp(0, 1).numpy())

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.output_dir is None:
            self.output_dir = Path(trainer.default_root_dir)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            images, rewards = self.turntable(pl_module)
            self.before_reward = float(rewards.mean())
            self._save_grid(images, "turntable_before.png")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        reward = trainer.callback_metrics.get("train/reward")
        if reward is not None:
            self.steps.append(len(self.steps))
            self.rewards.append(float(reward))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        images, rewards = self.turntable(pl_module)
        self._save_grid(images, "turntable_after.png")
        if self.rewards:
            save_reward_plot(self.steps, self.rewards, self.output_dir / "reward_curve.png", f"{pl_module.algorithm_name}: training reward")
            with (self.output_dir / "rewards.csv").open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["round", "train_reward"])
                writer.writerows(zip(self.steps, self.rewards))
        metrics = {"eval/reward_after": float(rewards.mean())}
        if self.before_reward is not None:
            metrics["eval/reward_before"] = self.before_reward
        pl_module.save_pretrained(self.output_dir / "aligned", metrics=metrics)
