"""Spatial video question answering: VSI-Bench / VSI-100k data, SynthVSI scenes, prompts, rewards, the metric.

Data flow: scene annotations (:mod:`.scenes`; ScanNet-style points or boxes, VSI-Bench meta-info, or SynthVSI's
procedural rooms in :mod:`.synth`) → :class:`.builder.QuestionBuilder` → :class:`.records.VQARecord` files →
:mod:`.datasets` (records + video frames) → :class:`.datamodule.SpatialVQADataModule` batches (format in its
docstring) → prompts (:mod:`.prompts`) → model completions → :class:`.rewards.SpatialVQAReward` (training) and
:class:`.metric.VSIBenchMetric` (evaluation).
"""

from zoo.tasks.spatial_vqa.baselines import best_constant_answers, constant_baseline_scores
from zoo.tasks.spatial_vqa.builder import QuestionBuilder
from zoo.tasks.spatial_vqa.datamodule import SpatialVQADataModule
from zoo.tasks.spatial_vqa.datasets import SynthVSI, VQADataset
from zoo.tasks.spatial_vqa.metric import VSIBenchMetric
from zoo.tasks.spatial_vqa.prompts import build_prompt, training_prompt, vsibench_prompt
from zoo.tasks.spatial_vqa.records import VQARecord, read_records, write_records
from zoo.tasks.spatial_vqa.rewards import SpatialVQAReward
from zoo.tasks.spatial_vqa.scenes import SceneAnnotation, scenes_from_meta_info
from zoo.tasks.spatial_vqa.vsibench import VideoQA, VSIBench, read_video_frames

__all__ = [
    "QuestionBuilder",
    "SceneAnnotation",
    "SpatialVQADataModule",
    "SpatialVQAReward",
    "SynthVSI",
    "VQADataset",
    "VQARecord",
    "VSIBench",
    "VSIBenchMetric",
    "VideoQA",
    "best_constant_answers",
    "build_prompt",
    "constant_baseline_scores",
    "read_records",
    "read_video_frames",
    "scenes_from_meta_info",
    "training_prompt",
    "vsibench_prompt",
    "write_records",
]
