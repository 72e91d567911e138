"""``AlignmentModule``: the base LightningModule of every algorithm in the zoo.

It carries the paper metadata, the documented hooks that subclasses (the zoo's algorithms and users' own
variants) override, and ``save_pretrained`` / ``from_pretrained`` symmetry: safetensors weights + the resolved
``class_path``/``init_args`` config + a model card. Nothing is pickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningModule

from zoo.configurable import Configurable


@dataclass(frozen=True)
class Paper:
    """The paper an algorithm implements (shown in ``zoo configs``, model cards and citations)."""

    title: str
    arxiv_id: str
    bibtex: str

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv_id}"


class AlignmentModule(Configurable, LightningModule):
    """Base class of every alignment algorithm.

    Subclasses set the class attributes and implement ``training_step`` (most use manual optimization). A
    downstream project changes one part of an algorithm by overriding one documented hook instead of copying code:

    * :meth:`compute_rewards` — what the samples are scored with;
    * :meth:`configure_metrics` — the torchmetrics tracked on validation/test;
    * :meth:`log_metrics` — where and how scalars are logged;
    * :meth:`state_dict_to_save` — which tensors a release carries (LoRA adapters only, or everything).

    Constructor arguments are recorded (see :class:`zoo.Configurable`), so :meth:`save_pretrained` can write them
    as ``config.yaml`` and :func:`zoo.from_pretrained` can rebuild the same class, a user's subclass included.
    """

    #: The paper the algorithm comes from (``None`` for plain baselines without one).
    paper: ClassVar[Paper | None] = None
    #: Short, stable name used in tags, cards and the registry, e.g. ``"nabla-r2d3"``.
    algorithm_name: ClassVar[str] = ""
    #: Extra Hub tags (the algorithm name, ``alignzoo`` and ``arxiv:<id>`` are added automatically).
    tags: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()

    # ------------------------------------------------------------------ hooks
    def compute_rewards(self, samples: Any, batch: Any) -> torch.Tensor:
        """Score ``samples`` generated for ``batch``; return one fp32 reward per sample, shape ``[N]``.

        The reward hook: algorithms call it between rollout and loss. Override it to align to your own reward.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define compute_rewards()")

    def configure_metrics(self) -> Mapping[str, Any]:
        """Return the torchmetrics ``Metric`` objects (by name) that validation/test update. None by default."""
        return {}

    def log_metrics(self, metrics: Mapping[str, torch.Tensor | float], *, prefix: str = "train/", **log_kwargs) -> None:
        """Logging hook: every scalar an algorithm reports goes through here (``self.log_dict`` by default)."""
        log_kwargs.setdefault("prog_bar", False)
        self.log_dict({f"{prefix}{k}": v for k, v in metrics.items()}, **log_kwargs)

    def state_dict_to_save(self) -> dict[str, torch.Tensor]:
        """Tensors written to ``model.safetensors``.

        The default is the whole state dict, which reproduces any module exactly. Modules whose frozen part is
        rebuilt from its own pretrained source (e.g. a Hub base model under LoRA) override this to return only
        the trainable tensors; :func:`zoo.from_pretrained` then requires every tensor it does not load to be one
        that the rebuilt module already owns from that source.
        """
        return self.state_dict()

    def card_metadata(self) -> dict[str, Any]:
        """Facts for the model card that only the module knows; subclasses add theirs.

        Keys read by :func:`zoo.cards.build_model_card`: ``base_model`` (Hub id finetuned from), ``datasets``,
        ``license``, ``tags`` (extra Hub tags), ``task`` (task package, e.g. ``"spatial_vqa"``), ``eval_dataset``
        and ``eval_task`` (what the eval results are reported on); any other key becomes a card section.
        """
        return {}

    # ------------------------------------------------------------------ save / load
    def save_pretrained(
        self, save_directory: str | Path, *, metrics: Mapping[str, float] | None = None, run_config: Mapping | None = None
    ) -> Path:
        """Write ``model.safetensors``, ``config.yaml`` and a ``README.md`` model card to ``save_directory``.

        ``metrics`` (e.g. VSI-Bench scores, mean reward) go into the card's eval results; ``run_config`` is the
        full resolved CLI config of the run, stored beside the model section when given.
        """
        from zoo.hub import save_pretrained

        return save_pretrained(self, save_directory, metrics=metrics, run_config=run_config)

    @classmethod
    def from_pretrained(cls, source: str | Path, *, revision: str | None = None, **kwargs: Any) -> AlignmentModule:
        """Rebuild a saved module (see :func:`zoo.from_pretrained`) and check that it is a ``cls``."""
        from zoo.hub import from_pretrained

        return from_pretrained(source, revision=revision, expected_class=cls, **kwargs)
