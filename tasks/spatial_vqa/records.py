"""The question record shared by every spatial-VQA source, and its JSON / JSONL / parquet IO.

A record has exactly the VSI-Bench fields (spec ``vsgrpo_vsibench.md`` §2.1) plus a video reference:

============== ======================================================================================
``id``          int, unique within a file
``dataset``     source of the scene: ``arkitscenes`` / ``scannet`` / ``scannetpp`` (VSI-Bench), ``synthvsi``
``scene_name``  scene identifier within ``dataset``
``question_type`` one of :data:`QUESTION_TYPES` (the VSI-Bench names)
``question``    the question text (no prompt around it; prompts are built by :mod:`.prompts`)
``options``     list of ``"A. sofa"``-style strings for multiple-choice records; empty for numerical ones and
                for VSI-100k-style training records (which are answered with a word, e.g. ``"left"``)
``ground_truth`` str: an option letter (multiple choice with options), a word (no options), or a number
``video``       path of the video relative to the data root; VSI-Bench: ``"{dataset}/{scene_name}.mp4"``;
                SynthVSI: ``"{scene_name}"`` (the key of the scene's rendered frames in the split cache)
============== ======================================================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

#: Numerical-answer task types, scored by mean relative accuracy (VSI-Bench ``NA_QUESTION_TYPES``).
NA_QUESTION_TYPES = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation")
#: The three relative-direction subtypes; VSI-Bench averages them into one task.
REL_DIRECTION_SUBTYPES = ("object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard")
#: Multiple-choice task types, scored by exact match (VSI-Bench ``MCA_QUESTION_TYPES``).
MCA_QUESTION_TYPES = (*REL_DIRECTION_SUBTYPES, "object_rel_distance", "route_planning", "obj_appearance_order")
#: Every question type a record may carry.
QUESTION_TYPES = NA_QUESTION_TYPES + MCA_QUESTION_TYPES
#: The eight VSI-Bench tasks in the order of the paper's tables (relative direction merged).
TASKS = (
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
    "object_rel_distance",
    "object_rel_direction",
    "route_planning",
    "obj_appearance_order",
)


def task_of(question_type: str) -> str:
    """The VSI-Bench task a question type is aggregated into (the three rel-direction subtypes share one)."""
    if question_type not in QUESTION_TYPES:
        raise ValueError(f"unknown question_type {question_type!r}; expected one of {QUESTION_TYPES}")
    return "object_rel_direction" if question_type in REL_DIRECTION_SUBTYPES else question_type


@dataclass
class VQARecord:
    """One spatial video question (the VSI-Bench schema plus ``video``; see the module docstring)."""

    id: int
    dataset: str
    scene_name: str
    question_type: str
    question: str
    options: list[str] = field(default_factory=list)
    ground_truth: str = ""
    video: str = ""

    def __post_init__(self) -> None:
        task_of(self.question_type)  # validates the type
        self.id = int(self.id)
        self.options = [str(o) for o in (self.options if self.options is not None else [])]
        self.ground_truth = str(self.ground_truth)
        if not self.video:
            self.video = f"{self.dataset}/{self.scene_name}.mp4"

    @property
    def is_numerical(self) -> bool:
        """True for the four numerical-answer (MRA-scored) question types."""
        return self.question_type in NA_QUESTION_TYPES

    def to_dict(self) -> dict:
        """The record as a plain dict (the file row)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> VQARecord:
        """Build a record from a mapping; extra keys are ignored, missing required keys are an error."""
        names = {f.name for f in fields(cls)}
        required = {"id", "dataset", "scene_name", "question_type", "question", "ground_truth"}
        missing = required - set(row)
        if missing:
            raise KeyError(f"record is missing field(s) {sorted(missing)}; it has {sorted(row)}")
        return cls(**{k: v for k, v in row.items() if k in names})


_COLUMNS = [f.name for f in fields(VQARecord)]


def write_records(records: Iterable[VQARecord], path: str | Path) -> Path:
    """Write records to ``.json`` (a list), ``.jsonl`` (one per line) or ``.parquet``, chosen by suffix."""
    path = Path(path)
    rows = [r.to_dict() for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows, schema=_arrow_schema()) if rows else _arrow_schema().empty_table()
        pq.write_table(table, path)
    else:
        raise ValueError(f"{path}: unsupported record file suffix {path.suffix!r}; use .json, .jsonl or .parquet")
    return path


def read_records(path: str | Path) -> list[VQARecord]:
    """Read records written by :func:`write_records`, or VSI-Bench's own parquet (``test-00000-of-00001``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"record file {path} does not exist")
    if path.suffix == ".json":
        rows = json.loads(path.read_text())
    elif path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        raise ValueError(f"{path}: unsupported record file suffix {path.suffix!r}; use .json, .jsonl or .parquet")
    records = []
    for i, row in enumerate(rows):
        try:
            records.append(VQARecord.from_dict(row))
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"{path}: row {i} is not a valid record: {err}") from err
    return records


def _arrow_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.int64()),
            ("dataset", pa.string()),
            ("scene_name", pa.string()),
            ("question_type", pa.string()),
            ("question", pa.string()),
            ("options", pa.list_(pa.string())),
            ("ground_truth", pa.string()),
            ("video", pa.string()),
        ]
    )
