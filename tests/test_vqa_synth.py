"""SynthVSI: deterministic cached splits, a ≥1,000-question eval split, frames that show the asked-about objects,
and the datamodule's batch format."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import torch

from zoo.configurable import instantiate, to_config
from zoo.tasks.spatial_vqa.builder import BUILT_QUESTION_TYPES
from zoo.tasks.spatial_vqa.datamodule import SpatialVQADataModule
from zoo.tasks.spatial_vqa.datasets import SynthVSI
from zoo.tasks.spatial_vqa.scenes import SceneAnnotation
from zoo.tasks.spatial_vqa.synth import FACE_SHADE, CATEGORIES, render_frames


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    split = SynthVSI("train", num_scenes=3, image_size=56, cache_dir=str(tmp_path_factory.mktemp("synth")))
    split.load()
    return split


def test_split_is_deterministic_and_cached(tiny_split, tmp_path, monkeypatch):
    again = SynthVSI("train", num_scenes=3, image_size=56, cache_dir=str(tmp_path))
    again.load()
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in tiny_split.records]
    assert torch.equal(again.frames(0), tiny_split.frames(0))
    monkeypatch.setattr(SynthVSI, "generate", lambda self: pytest.fail("a cached split was generated again"))
    cached = SynthVSI("train", num_scenes=3, image_size=56, cache_dir=str(tmp_path))
    assert len(cached) == len(again)
    other = SynthVSI("train", num_scenes=3, image_size=64, cache_dir=str(tmp_path))
    assert other.path != cached.path  # any parameter change gives another cache entry


def test_frames_are_rendered_on_first_read_and_cached(tmp_path):
    split = SynthVSI("eval", num_scenes=2, image_size=32, num_frames=4, cache_dir=str(tmp_path))
    split.prepare()
    assert list((split.path / "frames").iterdir()) == []  # preparing writes questions only
    first = split[0]["frames"]
    assert [f.name for f in (split.path / "frames").iterdir()] == ["eval_000000.npy"]
    assert torch.equal(split[0]["frames"], first)  # now read from the cache
    split.render_all()
    assert sorted(f.name for f in (split.path / "frames").iterdir()) == ["eval_000000.npy", "eval_000001.npy"]


def test_item_and_train_eval_splits_differ(tiny_split, tmp_path):
    item = tiny_split[0]
    assert item["frames"].dtype == torch.uint8 and item["frames"].shape == (8, 56, 56, 3)
    train_scene, _ = tiny_split.scene_questions(0)
    eval_scene, _ = SynthVSI("eval", cache_dir=str(tmp_path)).scene_questions(0)
    assert train_scene.to_dict()["objects"] != eval_scene.to_dict()["objects"]


def test_default_eval_split_has_over_1000_questions_of_every_type(tmp_path):
    split = SynthVSI("eval", cache_dir=str(tmp_path))
    types, counts = Counter(), Counter()
    for i in range(split.num_scenes):
        records = split.scene_questions(i, start_id=0)[1]
        types.update(r.question_type for r in records)
        counts.update(int(r.ground_truth) for r in records if r.question_type == "object_counting")
    assert sum(types.values()) >= 1000
    assert set(types) == set(BUILT_QUESTION_TYPES)
    assert min(types.values()) >= 60
    assert min(counts) == 2 and len(counts) >= 4  # no always-1 count questions; answers spread over 2…5


def _named_categories(question: str) -> set[str]:
    return {c for c in CATEGORIES if re.search(rf"\b{c}\b", question)}


def test_frames_show_every_object_a_question_names(tiny_split):
    """Each object of each named category covers ≥ 10 pixels (at 56 px) in at least one frame, in its colour."""
    for scene in tiny_split.scenes:
        frames, instances = render_frames(
            scene, np.array(scene.extra["eyes"]), np.array(scene.extra["targets"]), 56, return_instances=True
        )
        first_record = [r.video for r in tiny_split.records].index(scene.scene_name)
        assert torch.equal(frames, tiny_split.frames(first_record))  # the cached frames are these renders
        named = set().union(*(_named_categories(r.question) for r in tiny_split.records if r.video == scene.scene_name))
        assert named
        for k, obj in enumerate(scene.objects):
            if obj.category not in named:
                continue
            pixels = (instances == k).flatten(1).sum(1)
            assert pixels.max() >= 10, (scene.scene_name, obj.category)
            best = int(pixels.argmax())
            colours = frames[best][instances[best] == k]  # [P, 3]
            base = torch.tensor(CATEGORIES[obj.category][0], dtype=torch.float32)
            # flat shading: every pixel is the category colour times one face shade, rounded to uint8
            shaded = (torch.tensor(FACE_SHADE)[:, None] * base).round().to(torch.uint8)  # [3 shades, 3]
            assert (colours[:, None] == shaded[None]).all(-1).any(-1).all(), (scene.scene_name, obj.category)


def test_renderer_handedness_left_is_left():
    """Camera at the origin facing +y: an object at x < 0 (to the left) appears in the left half of the image."""
    scene = SceneAnnotation.from_boxes(
        "synthvsi", "h", ["bed"], [[-2.0, 3.0, 0.5]], [[1.0, 1.0, 1.0]],
        floor_polygon=[[-5, -5], [5, -5], [5, 5], [-5, 5]],
    )
    eye, target = np.array([[0.0, 0.0, 0.5]]), np.array([[0.0, 1.0, 0.5]])
    _, instances = render_frames(scene, eye, target, 32, return_instances=True)
    cols = torch.nonzero(instances[0] == 0)[:, 1]
    assert len(cols) > 0 and cols.float().mean() < 16


def test_datamodule_batch_format_and_config_round_trip(tiny_split, tmp_path):
    module = SpatialVQADataModule(
        train=SynthVSI("train", num_scenes=3, image_size=56, cache_dir=str(tiny_split.cache_root)),
        val=SynthVSI("train", num_scenes=3, image_size=56, cache_dir=str(tiny_split.cache_root)),
        train_prompt_mode="think",
        batch_size=4,
    )
    rebuilt = instantiate(to_config(module))
    assert isinstance(rebuilt, SpatialVQADataModule)
    module.prepare_data()
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    keys = {"frames", "seconds_per_frame", "prompt", "question", "question_type", "options", "ground_truth", "id",
            "scene_name"}
    assert set(batch) == keys
    assert batch["seconds_per_frame"] == [None] * 4  # a camera walk has no clock
    assert all(len(v) == 4 for v in batch.values())
    assert batch["frames"][0].shape == (8, 56, 56, 3) and batch["frames"][0].dtype == torch.uint8
    assert batch["prompt"][0].endswith("in <answer> </answer>.")
    val = next(iter(module.val_dataloader()))
    assert val["id"] == [0, 1, 2, 3]  # evaluation keeps the file order
    assert val["prompt"][0].endswith("Please provide the short answer with one or two words or a number.")
    with pytest.raises(ValueError, match="test dataset"):
        SpatialVQADataModule(train=module.train_set).test_dataloader()


def test_dataloader_workers_reopen_the_frame_cache(tiny_split):
    """Items from worker processes equal the in-process items (the memory map is not pickled)."""
    module = SpatialVQADataModule(val=tiny_split, eval_batch_size=5, num_workers=2)
    batch = next(iter(module.val_dataloader()))
    assert all(torch.equal(batch["frames"][i], tiny_split[i]["frames"]) for i in range(5))
