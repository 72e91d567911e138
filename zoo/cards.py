"""Model cards for releases: ``ModelCardData`` + the Jinja template ``model_cards/templates/model_card.md``.

The card's metadata carries ``library_name: alignzoo``, tags (``alignzoo``, the algorithm, the task, ``arxiv:<id>``),
``base_model``, ``datasets`` and a ``model-index`` with one eval result per finite metric of the run. Its body has
the results table, the hyperparameters from the resolved config, a usage snippet and the citation.

:meth:`AlignmentModule.card_metadata` supplies the facts only the module knows: ``base_model``, ``datasets``,
``license``, extra ``tags``, ``task`` (default: the ``zoo.tasks`` package of the run's datamodule), ``eval_dataset`` (the Hub dataset id the metrics were computed on, e.g.
``nyu-visionx/VSI-Bench``; defaults to the first of ``datasets``) and ``eval_task`` (the Hub task type, default
``reinforcement-learning``). Any other key becomes a section of the card (heading → text).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from zoo.algorithms.base import AlignmentModule

TEMPLATE = "templates/model_card.md"
#: Trainer settings worth showing among the hyperparameters (the rest is in config.yaml).
TRAINER_KEYS = (
    "max_steps",
    "max_epochs",
    "precision",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "devices",
    "num_nodes",
    "strategy",
)


def task_package_of(run_config: Mapping[str, Any] | None) -> str | None:
    """The task package (``zoo.tasks.<task>``) of the run's datamodule, e.g. ``spatial_vqa``."""
    data = (run_config or {}).get("data")
    class_path = data.get("class_path", "") if isinstance(data, Mapping) else ""
    parts = class_path.split(".")
    return parts[2] if len(parts) > 3 and parts[:2] == ["zoo", "tasks"] else None


def hyperparameters(run_config: Mapping[str, Any]) -> str:
    """The YAML shown under "Hyperparameters": seed, model and data init args, the main trainer settings."""
    shown: dict[str, Any] = {}
    if run_config.get("seed_everything") is not None:
        shown["seed_everything"] = run_config["seed_everything"]
    for section in ("model", "data"):
        if isinstance(run_config.get(section), Mapping):
            shown[section] = dict(run_config[section])
    trainer = run_config.get("trainer")
    if isinstance(trainer, Mapping):
        picked = {k: trainer[k] for k in TRAINER_KEYS if trainer.get(k) is not None}
        if picked:
            shown["trainer"] = picked
    return yaml.safe_dump(shown, sort_keys=False).strip()


def build_model_card(
    module: AlignmentModule,
    *,
    metrics: Mapping[str, float] | None = None,
    run_config: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> ModelCard:
    """Render the card of ``module`` with the run's ``metrics`` and resolved ``run_config`` (``{model: ...}`` at
    least); ``repo_id`` is where it will be published, used in the usage snippet and as the model name."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from zoo import __version__
    from zoo.configurable import class_path_of

    meta = dict(module.card_metadata())
    paper = module.paper
    task = meta.pop("task", None) or task_package_of(run_config)
    tags = ["alignzoo", *([module.algorithm_name] if module.algorithm_name else []), *module.tags]
    tags += list(meta.pop("tags", []))
    if task:
        tags.append(task.replace("_", "-"))
    if paper is not None:
        tags.append(f"arxiv:{paper.arxiv_id}")
    datasets = meta.pop("datasets", None)
    eval_dataset = meta.pop("eval_dataset", None) or (datasets[0] if datasets else None) or f"alignzoo/{task or 'run'}"
    eval_task = meta.pop("eval_task", "reinforcement-learning")
    metrics = {name: float(value) for name, value in (metrics or {}).items()}
    model_name = repo_id.split("/")[-1] if repo_id else (module.algorithm_name or type(module).__name__)
    eval_results = [
        EvalResult(
            task_type=eval_task,
            dataset_type=eval_dataset,
            dataset_name=eval_dataset,
            metric_type=name,
            metric_name=name,
            metric_value=value,
        )
        for name, value in metrics.items()
        if math.isfinite(value)
    ]
    card_data = ModelCardData(
        library_name="alignzoo",
        model_name=model_name,
        tags=list(dict.fromkeys(tags)),
        base_model=meta.pop("base_model", None),
        datasets=datasets,
        license=meta.pop("license", None),
        eval_results=eval_results or None,
    )
    template = resources.files("zoo.model_cards").joinpath(TEMPLATE).read_text()
    return ModelCard.from_template(
        card_data,
        template_str=template,
        class_name=type(module).__name__,
        class_path=class_path_of(type(module)),
        algorithm=module.algorithm_name or type(module).__name__,
        paper=paper,
        task=task,
        metrics=metrics,
        hyperparameters=hyperparameters(run_config) if run_config else None,
        repo_id=repo_id,
        extra=meta,
        version=__version__,
    )
