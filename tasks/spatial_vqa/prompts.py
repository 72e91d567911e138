"""Prompts: the three vsGRPO training modes (spec §1.3) and the official VSI-Bench evaluation prompt (§2.3).

Training prompt (:func:`training_prompt`)::

    {question}
    [Options:\\n{options, one per line}]        only when the record has options
    {TRAINING_INSTRUCTIONS[mode]}

The strings of :data:`TRAINING_INSTRUCTIONS` are the paper's, verbatim; how the paper joins them to the question is
not stated, a newline is used here. Evaluation prompt (:func:`vsibench_prompt`), as ``vsibench_doc_to_text``::

    NA:   "{pre_prompt}\\n{question}\\n{na_post_prompt}"
    MCA:  "{pre_prompt}\\n{question}\\nOptions:\\n{options joined by \\n}\\n{mca_post_prompt}"
"""

from __future__ import annotations

from zoo.tasks.spatial_vqa.records import MCA_QUESTION_TYPES, NA_QUESTION_TYPES, VQARecord

#: The three vsGRPO training modes: T (think), O (observe), V (vanilla, the headline model).
PROMPT_MODES = ("think", "observe", "vanilla")

#: Training-time instructions of vsGRPO-T / -O / -V (paper §3, quoted exactly).
TRAINING_INSTRUCTIONS = {
    "think": (
        "Please think step by step and enclose your thinking process in <think> </think> tags and then provide "
        "the short answer with one or two words or a number in <answer> </answer>."
    ),
    "observe": (
        "Please observe carefully and analyze what you see that helps you to solve the question in the video and "
        "enclose it in <observe> </observe> tag, and then provide the short answer with one or two words or a "
        "number in <answer> </answer>."
    ),
    "vanilla": "Please provide the short answer with one or two words or a number.",
}

#: Inference-time NA post-prompts of the paper's Table 1 (pass one as ``na_post_prompt`` to :func:`vsibench_prompt`).
INFERENCE_POST_PROMPTS = {
    "think": "Let's think step by step and then answer the question using a single word or phrase.",
    "observe": "Please observe the video first and then answer the question using a single word or phrase.",
    "vanilla": "Please answer the question using a single word or phrase.",
}

VSIBENCH_PRE_PROMPT = "These are frames of a video."
VSIBENCH_NA_POST_PROMPT = "Please answer the question using a single word or phrase."
VSIBENCH_MCA_POST_PROMPT = "Answer with the option's letter from the given choices directly."


def _options_block(options: list[str]) -> str:
    return "Options:\n" + "\n".join(options)


def training_prompt(record: VQARecord, mode: str) -> str:
    """The vsGRPO training prompt of ``record`` in ``mode`` (``think`` / ``observe`` / ``vanilla``)."""
    if mode not in TRAINING_INSTRUCTIONS:
        raise ValueError(f"unknown prompt mode {mode!r}; expected one of {PROMPT_MODES}")
    parts = [record.question]
    if record.options:
        parts.append(_options_block(record.options))
    parts.append(TRAINING_INSTRUCTIONS[mode])
    return "\n".join(parts)


def vsibench_prompt(
    record: VQARecord,
    *,
    pre_prompt: str = VSIBENCH_PRE_PROMPT,
    na_post_prompt: str = VSIBENCH_NA_POST_PROMPT,
    mca_post_prompt: str = VSIBENCH_MCA_POST_PROMPT,
) -> str:
    """The official VSI-Bench prompt (``vsibench_doc_to_text``), with the same three overridable parts."""
    if record.question_type in NA_QUESTION_TYPES:
        return f"{pre_prompt}\n{record.question}\n{na_post_prompt}"
    if record.question_type in MCA_QUESTION_TYPES:
        if not record.options:
            raise ValueError(
                f"record {record.id} ({record.question_type}) has no options: the VSI-Bench prompt needs lettered "
                "options for multiple-choice questions; use a training prompt mode for option-less records"
            )
        return "\n".join([pre_prompt, record.question, _options_block(record.options), mca_post_prompt])
    raise ValueError(f"unknown question_type {record.question_type!r}")


def build_prompt(record: VQARecord, mode: str) -> str:
    """Prompt for ``mode``: one of :data:`PROMPT_MODES` (training prompts) or ``"vsibench"`` (official eval)."""
    return vsibench_prompt(record) if mode == "vsibench" else training_prompt(record, mode)
