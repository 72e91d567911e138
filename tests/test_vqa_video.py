"""Record IO and video-backed datasets: PyAV decoding, uniform frame sampling, missing/corrupt videos, VSI-Bench."""

from __future__ import annotations

import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from zoo.tasks.spatial_vqa import vsibench as vsibench_module
from zoo.tasks.spatial_vqa.records import VQARecord, read_records, write_records
from zoo.tasks.spatial_vqa.vsibench import VideoDecodeError, VideoQA, VSIBench, read_video_frames

RECORDS = [
    VQARecord(0, "scannet", "scene0", "object_counting", "How many chair(s) are in this room?", [], "4"),
    VQARecord(1, "scannet", "scene0", "object_rel_distance", "Which is closest?", ["A. sofa", "B. bed"], "B"),
    VQARecord(2, "arkitscenes", "41069025", "room_size_estimation", "What is the size of this room?", None, "23.5"),
]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_records_round_trip(tmp_path, suffix):
    path = write_records(RECORDS, tmp_path / f"r{suffix}")
    back = read_records(path)
    assert [r.to_dict() for r in back] == [r.to_dict() for r in RECORDS]
    assert back[0].video == "scannet/scene0.mp4" and back[2].options == []


def test_vsibench_style_parquet_without_video_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{k: v for k, v in r.to_dict().items() if k != "video"} for r in RECORDS]
    rows[0]["extra_column"] = "ignored"
    rows[1]["extra_column"] = None
    rows[2]["extra_column"] = None
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test-00000-of-00001.parquet")
    back = read_records(tmp_path / "test-00000-of-00001.parquet")
    assert [r.video for r in back] == ["scannet/scene0.mp4", "scannet/scene0.mp4", "arkitscenes/41069025.mp4"]


def test_bad_record_files_are_errors(tmp_path):
    (tmp_path / "bad.json").write_text('[{"id": 1, "question": "q"}]')
    with pytest.raises(ValueError, match="row 0 is not a valid record"):
        read_records(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="unsupported record file suffix"):
        write_records(RECORDS, tmp_path / "r.csv")
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "none.jsonl")


def _write_video(path: Path, num_frames: int, size: int = 32) -> None:
    """Frame i is a flat grey of level 10·i (so a decoded frame tells its index)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "1"}
        for i in range(num_frames):
            image = np.full((size, size, 3), 10 * i, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_uniform_frame_sampling(tmp_path):
    _write_video(tmp_path / "v.mp4", 20)
    frames = read_video_frames(tmp_path / "v.mp4", 5)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == torch.uint8
    # np.linspace(0, 19, 5, dtype=int) = [0, 4, 9, 14, 19]; grey level 10·i, ±3 for lossy coding
    levels = frames.float().mean(dim=(1, 2, 3))
    torch.testing.assert_close(levels, torch.tensor([0.0, 40, 90, 140, 190]), atol=3.0, rtol=0)


def test_missing_and_corrupt_videos_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        read_video_frames(tmp_path / "nothing.mp4", 4)
    (tmp_path / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        read_video_frames(tmp_path / "broken.mp4", 4)


def _video_tree(root: Path) -> Path:
    _write_video(root / "scannet" / "scene0.mp4", 12)
    (root / "arkitscenes").mkdir(parents=True)
    (root / "arkitscenes" / "41069025.mp4").write_bytes(b"corrupt")
    return write_records(RECORDS, root / "records.jsonl")


def test_video_dataset_errors_or_skips_with_a_count(tmp_path):
    records = _video_tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="41069025.mp4"):
        VideoQA(str(records), str(tmp_path), num_frames=4).load()
    dataset = VideoQA(str(records), str(tmp_path), num_frames=4, on_missing="skip")
    with pytest.warns(UserWarning, match="skipped 1 of 3 questions"):
        dataset.load()
    assert dataset.skipped == 1 and len(dataset) == 2
    item = dataset[1]
    assert item["record"].options == ["A. sofa", "B. bed"] and item["frames"].shape == (4, 32, 32, 3)


def test_vsibench_downloads_a_pinned_snapshot_and_extracts_videos(tmp_path, monkeypatch):
    """The Hub call is replaced by a local snapshot folder laid out as the real one (parquet + video zips)."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "snapshots" / sha
    videos = tmp_path / "raw"
    _video_tree(videos)
    write_records(RECORDS, snapshot / "test-00000-of-00001.parquet")
    for name in ("arkitscenes", "scannet", "scannetpp"):
        with zipfile.ZipFile(snapshot / f"{name}.zip", "w") as zf:
            for file in (videos / name).glob("*.mp4") if (videos / name).exists() else []:
                zf.write(file, f"{name}/{file.name}")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs["revision"], kwargs["repo_type"]))
        return str(snapshot)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    bench = VSIBench(revision=sha, num_frames=3, on_missing="skip", cache_dir=str(tmp_path / "cache"))
    bench.prepare()
    with pytest.warns(UserWarning, match="skipped 1"):
        bench.load()
    assert calls[0] == (vsibench_module.VSIBENCH_REPO, sha, "dataset")
    assert bench.resolved_revision == sha
    assert bench[0]["frames"].shape == (3, 32, 32, 3)
