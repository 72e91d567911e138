"""Model cards for releases: ``ModelCardData`` + a Jinja template shipped in ``zoo.model_cards``."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from zoo.algorithms.base import AlignmentModule

TEMPLATE = "templates/model_card.md"


def build_model_card(module: AlignmentModule, *, metrics: Mapping[str, float] | None = None) -> ModelCard:
    """Render the card of ``module``: tags (algorithm, arXiv id), base model, metrics, usage and citation."""
    from huggingface_hub import ModelCard, ModelCardData

    from zoo import __version__
    from zoo.configurable import class_path_of

    meta = dict(module.card_metadata())
    paper = module.paper
    tags = ["alignzoo", *([module.algorithm_name] if module.algorithm_name else []), *module.tags]
    tags += list(meta.pop("tags", []))
    if paper is not None:
        tags.append(f"arxiv:{paper.arxiv_id}")
    card_data = ModelCardData(
        library_name="alignzoo",
        tags=list(dict.fromkeys(tags)),
        base_model=meta.pop("base_model", None),
        datasets=meta.pop("datasets", None),
        license=meta.pop("license", None),
    )
    template = resources.files("zoo.model_cards").joinpath(TEMPLATE).read_text()
    return ModelCard.from_template(
        card_data,
        template_str=template,
        class_name=type(module).__name__,
        class_path=class_path_of(type(module)),
        algorithm=module.algorithm_name or type(module).__name__,
        paper=paper,
        metrics=dict(metrics or {}),
        extra=meta,
        version=__version__,
    )
