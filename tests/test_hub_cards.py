"""Model cards: metadata (tags, base model, datasets, model-index eval results from the run's metrics), the
hyperparameters of the resolved config, the usage snippet, and validation by the (loopback) Hub."""

from __future__ import annotations

import math
import re

import yaml
from factories import TinyNet, TinyRewardRegression
from loopback_hub import _validate_card, loopback_hub  # noqa: F401  (fixture)

from zoo.cards import build_model_card, task_package_of

METRICS = {
    "test/vsibench/obj_count": 0.25,
    "test/vsibench/route_plan": 0.5,
    "test/vsibench/overall": 0.375,
    "train/reward": -0.125,
    "train/path_kl": 0.0625,
    "train/grad_norm": math.nan,
}
RUN_CONFIG = {
    "seed_everything": 0,
    "model": {"class_path": "factories.TinyRewardRegression", "init_args": {"target": 0.3}},
    "data": {"class_path": "zoo.tasks.spatial_vqa.data.SceneVideos", "init_args": {"n": 4}},
    "trainer": {"max_steps": 100, "precision": "bf16-mixed", "logger": False, "callbacks": None},
}


class VideoQAVariant(TinyRewardRegression):
    """A module that states what it was finetuned from and evaluated on."""

    def card_metadata(self):
        return {
            "base_model": "Qwen/Qwen2-VL-2B-Instruct",
            "datasets": ["example/vsi-100k"],
            "eval_dataset": "nyu-visionx/VSI-Bench",
            "eval_task": "video-text-to-text",
            "tags": ["video"],
            "Limitations": "Trained for a handful of steps.",
        }


def _card(**kwargs):
    from huggingface_hub import ModelCard

    card = build_model_card(VideoQAVariant(TinyNet()), **kwargs)
    return ModelCard(str(card))  # parse back what would be written to README.md


def test_metadata_and_eval_results():
    card = _card(metrics=METRICS, run_config=RUN_CONFIG, repo_id="org/vsgrpo-tiny")
    data = card.data
    assert data.library_name == "alignzoo" and data.model_name == "vsgrpo-tiny"
    assert data.base_model == "Qwen/Qwen2-VL-2B-Instruct" and data.datasets == ["example/vsi-100k"]
    assert data.tags == ["alignzoo", "tiny-regression", "video", "spatial-vqa", "arxiv:0000.00000"]
    results = {r.metric_type: r for r in data.eval_results}
    finite = {k: v for k, v in METRICS.items() if math.isfinite(v)}
    assert {k: r.metric_value for k, r in results.items()} == finite  # NaN metrics stay out of the model-index
    assert {(r.task_type, r.dataset_type) for r in results.values()} == {("video-text-to-text", "nyu-visionx/VSI-Bench")}


def test_body_results_hyperparameters_usage_sections():
    card = _card(metrics=METRICS, run_config=RUN_CONFIG, repo_id="org/vsgrpo-tiny")
    for name, value in METRICS.items():
        assert f"| {name} | {value:.4f} |" in card.text
    block = re.search(r"## Hyperparameters.*?```yaml\n(.*?)```", card.text, flags=re.S).group(1)
    assert yaml.safe_load(block) == {
        "seed_everything": 0,
        "model": RUN_CONFIG["model"],
        "data": RUN_CONFIG["data"],
        "trainer": {"max_steps": 100, "precision": "bf16-mixed"},
    }
    assert 'zoo.from_pretrained("org/vsgrpo-tiny")' in card.text and "zoo pull org/vsgrpo-tiny" in card.text
    assert "## Limitations\n\nTrained for a handful of steps." in card.text
    assert "@misc{tiny" in card.text and "https://arxiv.org/abs/0000.00000" in card.text


def test_card_without_run_details():
    from huggingface_hub import ModelCard

    card = ModelCard(str(build_model_card(TinyRewardRegression(TinyNet()))))
    assert card.data.eval_results is None and "## Hyperparameters" not in card.text and "## Results" not in card.text
    assert 'zoo.from_pretrained("path/to/this/folder")' in card.text


def test_task_of_run_config():
    assert task_package_of(RUN_CONFIG) == "spatial_vqa"
    assert task_package_of({"data": {"class_path": "factories.RandomVectors"}}) is None
    assert task_package_of(None) is None


def test_card_passes_hub_validation(loopback_hub):
    card = _card(metrics=METRICS, run_config=RUN_CONFIG, repo_id="org/vsgrpo-tiny")
    card.validate()  # POST /api/validate-yaml: front matter is a mapping and its model-index parses
    assert ("POST", "/api/validate-yaml") in loopback_hub.requests
    # the loopback validation is not a rubber stamp: a model-index that does not parse is rejected
    status, body = _validate_card(str(card).replace("model-index:", "model-index: 3\nx:", 1))
    assert status == 400 and "invalid metadata" in body["errors"][0]["message"]
