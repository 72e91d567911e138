"""VSI-Bench and other video-backed record files: PyAV frame decoding and the :class:`VideoQA` dataset.

* :func:`read_video_frames` decodes N uniformly spaced frames (indices ``np.linspace(0, T−1, N, dtype=int)``, the
  sampling of lmms-eval's video models) with PyAV; a missing, unreadable or empty video raises an error naming the
  file. :func:`sampled_frame_interval` gives the seconds between those frames (from the stream header).
* :class:`VideoQA` pairs a record file (JSON / JSONL / parquet) with a folder of videos (``record.video`` is the
  path relative to it, ``{dataset}/{scene_name}.mp4`` for VSI-Bench). Missing or unreadable videos are an error, or,
  with ``on_missing="skip"``, their records are dropped and counted (``skipped``) with a warning.
* :class:`VSIBench` is a :class:`VideoQA` on the Hugging Face release ``nyu-visionx/VSI-Bench`` at a pinned
  revision: ``prepare()`` downloads the parquet and the three video zips and extracts them; the resolved commit
  sha is recorded in ``resolved_revision``.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from zoo.tasks.spatial_vqa.datasets import VQADataset, default_cache_dir
from zoo.tasks.spatial_vqa.records import read_records

VSIBENCH_REPO = "nyu-visionx/VSI-Bench"
VSIBENCH_RECORDS = "test-00000-of-00001.parquet"
VSIBENCH_VIDEO_ZIPS = ("arkitscenes.zip", "scannet.zip", "scannetpp.zip")


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded (the message names the file)."""


def sample_frame_indices(total: int, num_frames: int) -> np.ndarray:
    """``num_frames`` uniformly spaced indices in ``[0, total − 1]`` (``np.linspace`` truncated to int)."""
    return np.linspace(0, total - 1, num_frames, dtype=int)


def read_video_frames(path: str | Path, num_frames: int) -> torch.Tensor:
    """Decode ``num_frames`` uniformly sampled frames of ``path`` → uint8 ``[num_frames, H, W, 3]`` RGB."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"video {path} has no video stream")
            total = container.streams.video[0].frames
            if total <= 0:  # the header does not say: count the packets (no decoding)
                total = sum(1 for p in container.demux(video=0) if p.size)
        frames, decoded = _decode(path, sample_frame_indices(total, num_frames)) if total > 0 else ({}, 0)
        if decoded < total:  # the header overstated the frame count: sample again from what is really there
            total = decoded
            frames, decoded = _decode(path, sample_frame_indices(total, num_frames)) if total > 0 else ({}, 0)
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise VideoDecodeError(f"cannot decode video {path}: {err}") from err
    if total == 0:
        raise VideoDecodeError(f"video {path} has no decodable frames")
    indices = sample_frame_indices(total, num_frames)
    return torch.from_numpy(np.stack([frames[i] for i in indices]))


def sampled_frame_interval(path: str | Path, num_frames: int) -> float | None:
    """Mean seconds between the ``num_frames`` frames :func:`read_video_frames` samples from ``path``:
    ``(T − 1) / (num_frames − 1) / fps`` from the stream header; ``None`` for one frame or a header without the
    frame count or rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        total, rate = stream.frames, stream.average_rate
    if num_frames < 2 or total <= 0 or not rate:
        return None
    return (total - 1) / (num_frames - 1) / float(rate)


def _decode(path: Path, indices: np.ndarray) -> tuple[dict[int, np.ndarray], int]:
    """Decode the whole stream once, converting only the wanted frames; returns them and the decoded count."""
    import av

    wanted, frames, count = set(indices.tolist()), {}, 0
    with av.open(str(path)) as container:
        for count, frame in enumerate(container.decode(video=0), start=1):
            if count - 1 in wanted:
                frames[count - 1] = frame.to_ndarray(format="rgb24")
    return frames, count


def probe_video(path: Path) -> str | None:
    """None if ``path`` opens as a video with a stream, else the reason it does not."""
    import av

    if not path.is_file():
        return "missing"
    try:
        with av.open(str(path)) as container:
            return None if container.streams.video else "no video stream"
    except (av.error.FFmpegError, OSError) as err:
        return f"unreadable ({err})"


class VideoQA(VQADataset):
    """Records from ``records_file`` (JSON / JSONL / parquet) with their videos under ``video_root``.

    Args:
        records_file: the record file.
        video_root: folder that ``record.video`` paths are relative to.
        num_frames: frames decoded per video (uniformly sampled).
        on_missing: ``"error"`` (default): a missing or unreadable video raises an error naming it when the
            dataset is loaded; ``"skip"``: such records are dropped, counted in ``skipped`` and reported.
        question_types: keep only these types (None = all).
    """

    def __init__(
        self,
        records_file: str,
        video_root: str,
        num_frames: int = 32,
        on_missing: str = "error",
        question_types: list[str] | None = None,
    ) -> None:
        super().__init__()
        if on_missing not in ("error", "skip"):
            raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
        self.records_file, self.video_root = records_file, video_root
        self.num_frames, self.on_missing, self.question_types = num_frames, on_missing, question_types
        self.records = []
        self.skipped = 0
        self._video_dir: Path | None = None

    def _paths(self) -> tuple[Path, Path]:
        return Path(self.records_file), Path(self.video_root)

    def load(self) -> None:
        """Read the records and check every referenced video once (open + stream probe, no decoding)."""
        records_path, root = self._paths()
        records = read_records(records_path)
        if self.question_types is not None:
            records = [r for r in records if r.question_type in self.question_types]
        problems = {}
        for video in tqdm(sorted({r.video for r in records}), desc="checking videos", leave=False):
            reason = probe_video(root / video)
            if reason is not None:
                problems[video] = reason
        if problems and self.on_missing == "error":
            listed = "; ".join(f"{root / v}: {why}" for v, why in list(problems.items())[:5])
            raise FileNotFoundError(
                f"{len(problems)} video(s) referenced by {records_path} are missing or unreadable, e.g. {listed}. "
                "Fix the video folder, or pass on_missing='skip' to drop their questions."
            )
        self.records = [r for r in records if r.video not in problems]
        self._video_dir = root
        self.skipped = len(records) - len(self.records)
        if self.skipped:
            warnings.warn(
                f"skipped {self.skipped} of {len(records)} questions: {len(problems)} video(s) missing or unreadable "
                f"under {root}",
                stacklevel=2,
            )

    def frames(self, index: int) -> torch.Tensor:
        """``num_frames`` uniformly sampled frames of record ``index``'s video, decoded now."""
        if self._video_dir is None:
            self.load()
        return read_video_frames(self._video_dir / self.records[index].video, self.num_frames)

    def seconds_per_frame(self, index: int) -> float | None:
        """Seconds between the sampled frames of record ``index``'s video (:func:`sampled_frame_interval`)."""
        if self._video_dir is None:
            self.load()
        return sampled_frame_interval(self._video_dir / self.records[index].video, self.num_frames)


class VSIBench(VideoQA):
    """VSI-Bench (``nyu-visionx/VSI-Bench``) at a pinned dataset ``revision`` (a commit sha, or a branch/tag whose
    resolved sha is recorded in ``resolved_revision``); files go to ``cache_dir`` (default
    :func:`default_cache_dir` ``/vsibench``), videos are extracted next to the parquet."""

    def __init__(
        self,
        revision: str,
        num_frames: int = 32,
        on_missing: str = "error",
        question_types: list[str] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            records_file="", video_root="", num_frames=num_frames, on_missing=on_missing, question_types=question_types
        )
        self.revision = revision
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "vsibench"
        self.resolved_revision: str | None = None

    def _snapshot(self) -> Path:
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(
                VSIBENCH_REPO,
                repo_type="dataset",
                revision=self.revision,
                cache_dir=self.cache_dir / "hub",
                allow_patterns=[VSIBENCH_RECORDS, *VSIBENCH_VIDEO_ZIPS],
            )
        )
        self.resolved_revision = folder.name  # snapshots/<commit sha>
        return folder

    def _videos(self, snapshot: Path) -> Path:
        return self.cache_dir / "videos" / snapshot.name

    def prepare(self) -> None:
        """Download the pinned snapshot and extract the video zips (once)."""
        snapshot = self._snapshot()
        videos = self._videos(snapshot)
        for name in VSIBENCH_VIDEO_ZIPS:
            done = videos / f".{name}.extracted"
            if done.exists():
                continue
            archive = snapshot / name
            if not archive.is_file():
                raise FileNotFoundError(f"{archive} is missing from the VSI-Bench snapshot {snapshot.name}")
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(videos)
            done.touch()

    def _paths(self) -> tuple[Path, Path]:
        snapshot = self._snapshot()
        return snapshot / VSIBENCH_RECORDS, self._videos(snapshot)
