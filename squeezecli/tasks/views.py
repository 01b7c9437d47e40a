"""How a task's nested results read in a table: one line of text per result, for people (JSON lines and
CSV carry the results as they are). Named by each task's row in table.py; no torch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _scored(pairs: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{label} {score:.4f}" for label, score in pairs)


def ranked_labels(result: dict[str, Any]) -> dict[str, Any]:
    """classify --top-k/--all-scores: "POSITIVE 0.9900, NEGATIVE 0.0100"."""
    return {"labels": _scored((entry["label"], entry["score"]) for entry in result["labels"])}


def zero_shot(result: dict[str, Any]) -> dict[str, Any]:
    """classify --labels: "sports 0.7000, politics 0.3000"."""
    return {"labels": _scored(zip(result["labels"], result["scores"]))}


def entities(result: dict[str, Any]) -> dict[str, Any]:
    """Entities as "Ada Lovelace (PER), London (LOC)"."""
    return {"entities": ", ".join(f"{entity['text']} ({entity['label']})" for entity in result["entities"])}


def answers(result: dict[str, Any]) -> dict[str, Any]:
    """Each question followed by its answers as "text (score)", "-" for no answer."""
    by_question: dict[str, list[str]] = {}
    for answer in result["answers"]:
        shown = "-" if answer["answer"] is None else answer["answer"]
        by_question.setdefault(answer["question"], []).append(f"{shown} ({answer['score']:.4f})")
    return {"answers": "; ".join(f"{question} {', '.join(answers)}" for question, answers in by_question.items())}


def chunks(result: dict[str, Any]) -> dict[str, Any]:
    """embed --chunk: each chunk's character span, "0-118, 97-240"."""
    return {"chunks": ", ".join(f"{chunk['start']}-{chunk['end']}" for chunk in result["chunks"])}
