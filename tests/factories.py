"""Tiny models built in code for tests (nothing is ever downloaded)."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch import nn

from zoo.algorithms.base import AlignmentModule, Paper
from zoo.configurable import Configurable


class TinyNet(Configurable, nn.Module):
    """A two-layer MLP: the kind of component an algorithm receives as an init arg."""

    def __init__(self, width: int = 8, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TinyRewardRegression(AlignmentModule):
    """A minimal AlignmentModule: pushes the net's output toward a target under a quadratic reward."""

    paper = Paper(title="A tiny test paper", arxiv_id="0000.00000", bibtex="@misc{tiny, title={Tiny}}")
    algorithm_name = "tiny-regression"

    def __init__(self, net: TinyNet, target: float = 0.5, lr: float = 0.1) -> None:
        super().__init__()
        self.net = net
        self.target = target
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def compute_rewards(self, samples: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return -((samples - self.target) ** 2).mean(dim=-1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        rewards = self.compute_rewards(self(batch), batch)
        self.log_metrics({"reward": rewards.mean()})
        return -rewards.mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class RandomVectors(LightningDataModule):
    """Random feature vectors for TinyRewardRegression."""

    def __init__(self, n: int = 32, width: int = 8, batch_size: int = 8) -> None:
        super().__init__()
        self.n, self.width, self.batch_size = n, width, batch_size

    def train_dataloader(self):
        data = torch.randn(self.n, self.width, generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(data, batch_size=self.batch_size)
