"""The algorithms of the zoo: one LightningModule per algorithm, all subclasses of :class:`AlignmentModule`."""

from zoo.algorithms.base import AlignmentModule, Paper

__all__ = ["AlignmentModule", "Paper"]
