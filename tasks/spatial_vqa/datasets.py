"""Datasets of spatial video questions. Every item is ``{"record": VQARecord, "frames": uint8 [F, H, W, 3],
"seconds_per_frame": float | None}`` (the time between sampled frames; ``None`` where the video has no clock).

* :class:`SynthVSI` — procedural rooms (:mod:`.synth`) → exact annotations → :class:`QuestionBuilder` → records,
  generated on first use and cached on disk (``records.jsonl``, ``scenes.json``); each scene's frames are rendered
  when first read and cached beside them (``frames/<scene>.npy``), or all at once with ``render_all()``.
* :class:`VideoQA` — records from a JSON / JSONL / parquet file with videos under a root folder (VSI-Bench,
  VSI-100k-style files): see :mod:`.vsibench`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from zoo.configurable import Configurable
from zoo.tasks.spatial_vqa.builder import QuestionBuilder
from zoo.tasks.spatial_vqa.records import VQARecord, read_records, write_records
from zoo.tasks.spatial_vqa.scenes import SceneAnnotation
from zoo.tasks.spatial_vqa.synth import camera_walk, generate_scene, render_frames

#: Bump when scene generation, rendering or question building changes, so stale caches are not reused.
SYNTHVSI_VERSION = 4
_SPLIT_STREAMS = {"train": 0, "eval": 1}
#: Default questions kept per scene and type: balanced over the six tasks (three rel-direction subtypes share 3).
SYNTHVSI_MAX_PER_TYPE = {
    "object_counting": 3,
    "object_abs_distance": 3,
    "object_size_estimation": 3,
    "room_size_estimation": 1,
    "object_rel_distance": 3,
    "object_rel_direction_easy": 1,
    "object_rel_direction_medium": 1,
    "object_rel_direction_hard": 1,
}


def default_cache_dir() -> Path:
    """``$ZOO_CACHE`` if set, else ``~/.cache/alignzoo``."""
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "alignzoo"))


class VQADataset(Configurable, Dataset):
    """Base class: a list of :class:`VQARecord` and the frames of each record's video.

    Subclasses implement :meth:`prepare` (download / generate; called once, on one process) and :meth:`load`
    (fill ``self.records``; called on every process), and :meth:`frames`.
    """

    records: list[VQARecord]

    def prepare(self) -> None:
        """Create whatever files :meth:`load` needs (nothing by default)."""

    def load(self) -> None:
        """Fill ``self.records`` (called on every process)."""
        raise NotImplementedError

    def frames(self, index: int) -> torch.Tensor:
        """uint8 ``[F, H, W, 3]`` frames of record ``index``."""
        raise NotImplementedError

    def seconds_per_frame(self, index: int) -> float | None:
        """Seconds between the sampled frames of record ``index``; ``None`` (the default) when unknown."""
        return None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        frames = self.frames(index)  # first: it loads a dataset that was not loaded yet
        return {"record": self.records[index], "frames": frames, "seconds_per_frame": self.seconds_per_frame(index)}


@contextlib.contextmanager
def _one_torch_thread():
    """Render with one thread: each frame batch is small, and on a shared CPU one thread is ~10× faster than
    several (measured: 0.12 s vs 1.1 s per scene at 112 px with 2 threads on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class SynthVSI(VQADataset):
    """The synthetic spatial-VQA dataset (rooms, camera walk, exact annotations; see :mod:`.synth`).

    :meth:`prepare` writes the split's scenes and questions (≈ 5 ms per scene); frames are rendered when a scene
    is first read (≈ 0.1 s per scene at 112 px, 8 frames) and cached, so a short run only renders what it uses.

    Args:
        split: ``"train"`` or ``"eval"``; the two draw scenes from disjoint random streams of ``seed``.
        num_scenes: number of rooms (default 1,000 for train, 150 for eval; the eval split then holds more
            than 1,000 questions).
        seed: master seed; the split is a deterministic function of all arguments.
        image_size: frame side in pixels (square frames).
        num_frames: frames per video (one camera turn).
        style / distance: passed to :class:`QuestionBuilder` (``"vsi100k"`` option-less word answers by default;
            ``"vsibench"`` for lettered options).
        max_per_type: questions kept per scene and type (default :data:`SYNTHVSI_MAX_PER_TYPE`).
        cache_dir: where splits are cached (default :func:`default_cache_dir` ``/synthvsi``).
    """

    def __init__(
        self,
        split: str = "train",
        num_scenes: int | None = None,
        seed: int = 0,
        image_size: int = 112,
        num_frames: int = 8,
        style: str = "vsi100k",
        distance: str = "centre",
        max_per_type: dict[str, int] | int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if split not in _SPLIT_STREAMS:
            raise ValueError(f"split must be one of {tuple(_SPLIT_STREAMS)}, got {split!r}")
        self.split, self.seed, self.image_size, self.num_frames = split, seed, image_size, num_frames
        self.num_scenes = num_scenes if num_scenes is not None else (1000 if split == "train" else 150)
        self.builder = QuestionBuilder(
            style=style,
            distance=distance,
            max_per_type=SYNTHVSI_MAX_PER_TYPE if max_per_type is None else max_per_type,
            min_count=2,  # see zoo.tasks.spatial_vqa.synth: no count question whose answer is always 1
        )
        self.cache_root = Path(cache_dir) if cache_dir else default_cache_dir() / "synthvsi"
        self.records = []
        self.scenes: list[SceneAnnotation] = []
        self._scene_index: dict[str, int] = {}
        self._loaded = False

    @property
    def params(self) -> dict:
        """Everything the split's content depends on."""
        return {
            "version": SYNTHVSI_VERSION,
            "split": self.split,
            "num_scenes": self.num_scenes,
            "seed": self.seed,
            "image_size": self.image_size,
            "num_frames": self.num_frames,
            "builder": dict(self.builder._init_config["init_args"]),
        }

    @property
    def path(self) -> Path:
        """The cache folder of this split (named by a digest of :attr:`params`)."""
        digest = hashlib.sha256(json.dumps(self.params, sort_keys=True).encode()).hexdigest()[:12]
        return self.cache_root / f"{self.split}-{digest}"

    def scene_rng(self, index: int) -> np.random.Generator:
        """The random stream of scene ``index`` (independent of every other scene and split)."""
        return np.random.default_rng([self.seed, _SPLIT_STREAMS[self.split], index])

    def scene_questions(self, index: int, start_id: int = 0) -> tuple[SceneAnnotation, list[VQARecord]]:
        """Scene ``index`` of the split (camera poses in ``scene.extra``) and its questions, without rendering."""
        rng = self.scene_rng(index)
        scene = generate_scene(rng, f"{self.split}_{index:06d}")
        eyes, targets = camera_walk(scene, self.num_frames, rng)
        scene.extra = {"eyes": eyes.tolist(), "targets": targets.tolist()}
        return scene, self.builder.build(scene, rng, start_id=start_id, video=scene.scene_name)

    def generate(self) -> tuple[list[SceneAnnotation], list[VQARecord]]:
        """All scenes and questions of the split, in memory."""
        scenes, records = [], []
        for i in tqdm(range(self.num_scenes), desc=f"SynthVSI {self.split} questions", leave=False):
            scene, scene_records = self.scene_questions(i, start_id=len(records))
            scenes.append(scene)
            records += scene_records
        return scenes, records

    def prepare(self) -> None:
        """Write the split's scenes and questions unless cached (into a temporary folder, then renamed)."""
        if (self.path / "meta.json").is_file():
            return
        scenes, records = self.generate()
        self.cache_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}-", dir=self.cache_root))
        try:
            write_records(records, tmp / "records.jsonl")
            (tmp / "scenes.json").write_text(json.dumps([s.to_dict() for s in scenes]))
            (tmp / "frames").mkdir()
            (tmp / "meta.json").write_text(json.dumps(self.params, indent=1))
            try:
                tmp.rename(self.path)
            except OSError:  # another process finished the same split first
                if not (self.path / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def load(self) -> None:
        """Load the cached split (writing it first if needed)."""
        self.prepare()
        self.records = read_records(self.path / "records.jsonl")
        self.scenes = [SceneAnnotation.from_dict(s) for s in json.loads((self.path / "scenes.json").read_text())]
        self._scene_index = {s.scene_name: i for i, s in enumerate(self.scenes)}
        self._loaded = True

    def scene_frames(self, scene_name: str) -> torch.Tensor:
        """uint8 ``[F, H, W, 3]`` frames of a scene: read from the cache, or rendered and cached."""
        file = self.path / "frames" / f"{scene_name}.npy"
        if file.is_file():
            return torch.from_numpy(np.load(file))
        scene = self.scenes[self._scene_index[scene_name]]
        with _one_torch_thread():
            eyes, targets = np.array(scene.extra["eyes"]), np.array(scene.extra["targets"])
            frames = render_frames(scene, eyes, targets, self.image_size)
        tmp = file.with_name(f".{file.stem}.{os.getpid()}.npy")
        np.save(tmp, frames.numpy())
        os.replace(tmp, file)  # atomic: concurrent readers see the whole file or none
        return frames

    def frames(self, index: int) -> torch.Tensor:
        """uint8 ``[F, H, W, 3]`` frames of record ``index`` (its scene's, rendered on first read)."""
        if not self._loaded:
            self.load()
        return self.scene_frames(self.records[index].video)

    def render_all(self) -> None:
        """Render and cache the frames of every scene now (with a progress bar) instead of on first read."""
        if not self._loaded:
            self.load()
        for scene in tqdm(self.scenes, desc=f"SynthVSI {self.split} frames", leave=False):
            self.scene_frames(scene.scene_name)

    def __len__(self) -> int:
        if not self._loaded:
            self.load()
        return len(self.records)
