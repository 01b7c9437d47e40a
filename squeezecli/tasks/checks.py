"""What can be refused in a task's options before any model loads (the table's `check` hooks use these):
each refusal is a UsageError (status 2) naming the option, with a hint of what it accepts. What needs the
model (its token window, its tokenizer: qa's stride beside the question, --chunk) is checked by the task's
constructor on the model's preview, its config and tokenizer, before its weights are read (api.load).
Torch-free: the CLI runs these before it imports torch.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UsageError

# The most candidate labels: each text is read once per label (one NLI pair each), held for the text.
MAX_LABELS = 1000
# qa's window when --max-length is not given is at most this (transformers' max_seq_len default), so a
# --stride this long never fits, whatever the model.
QA_DEFAULT_WINDOW = 384
EXAMPLE_TEMPLATE = "This text is about {}."
DEFAULT_TEMPLATE = "This example is {}."  # the zero-shot hypothesis, as transformers' pipeline words it


def split_labels(labels: str | Sequence[str]) -> list[str]:
    """The candidate labels: a comma-separated string (as the pipeline splits it) or a list, stripped."""
    items = labels.split(",") if isinstance(labels, str) else list(labels)
    return [label.strip() for label in items]


def check_labels(labels: str | Sequence[str]) -> list[str]:
    """--labels names at least one label, none empty, none twice, at most MAX_LABELS."""
    names = split_labels(labels)
    if not any(names):
        raise UsageError("--labels names no label", hint="give the candidate labels separated by commas: --labels sports,politics")
    if not all(names):
        raise UsageError(f"--labels has an empty label ({','.join(names)!r})",
                         hint="separate the labels with single commas: --labels sports,politics")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UsageError(f"--labels names {name!r} twice", hint="give each candidate label once")
        seen.add(name)
    if len(names) > MAX_LABELS:
        raise UsageError(f"--labels names {len(names):,} labels; at most {MAX_LABELS:,}",
                         hint="each label is one pass of the model per text: classify with a model of those labels")
    return names


def check_template(template: str) -> None:
    """--template has exactly one {} (where the label goes) and no other replacement field."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as error:  # a lone { or }
        raise UsageError(f"--template {template!r} is not a template: {error}",
                         hint=f"mark where the label goes with {{}} and double other braces ({{{{ }}}}), e.g. {EXAMPLE_TEMPLATE!r}") from None
    if fields != [("", "", None)]:
        found = "no {}" if not fields else f"{len(fields)} replacement fields" if len(fields) > 1 else "a field other than {}"
        raise UsageError(f"--template {template!r} has {found}; it needs exactly one {{}} where the label goes",
                         hint=f"e.g. {EXAMPLE_TEMPLATE!r}; double other braces ({{{{ }}}})")


def check_zero_shot_only(labels: object, template_given: bool, multi_label: bool) -> None:
    """--template and --multi-label apply to zero-shot only, that is with --labels."""
    if labels is None:
        given = [name for name, present in (("--template", template_given), ("--multi-label", multi_label)) if present]
        if given:
            raise UsageError(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to zero-shot classification",
                             hint="add --labels A,B,C, or leave it out to classify with the model's own labels")


def zero_shot(given: Mapping[str, Any]) -> None:
    """Zero-shot's --labels and --template (the labels given)."""
    check_labels(given["labels"])
    check_template(given.get("template") or DEFAULT_TEMPLATE)


def not_zero_shot(given: Mapping[str, Any]) -> None:
    """classify with the model's own labels: zero-shot's options do not apply."""
    check_zero_shot_only(None, given.get("template") not in (None, DEFAULT_TEMPLATE), bool(given.get("multi_label")))


def qa(given: Mapping[str, Any]) -> None:
    """qa's questions, --stride against the window, and --lines against --doc."""
    check_questions(given.get("questions") or ())
    check_stride(given.get("stride"), given.get("max_length"))
    if given.get("lines") and given.get("doc"):
        raise UsageError("--lines reads each line as a context, --doc each file: give one",
                         hint="qa reads each file (or stdin) as one context unless --lines is given")


def check_questions(questions: Sequence[str]) -> None:
    """Every -q/--question has some text."""
    if not questions:
        raise UsageError("qa needs a question: -q QUESTION")
    for number, question in enumerate(questions, 1):
        if not question.strip():
            which = f"question {number} of {len(questions)}" if len(questions) > 1 else "the question"
            raise UsageError(f"-q/--question: {which} is empty", hint="every -q/--question needs some text")


def check_stride(stride: int | None, max_length: int | None) -> None:
    """--stride (the overlap of a long context's windows) shorter than the window: --max-length if given,
    else at most QA_DEFAULT_WINDOW. The room a question leaves needs the tokenizer (tasks/qa.py)."""
    if stride is None:
        return
    window = max_length if max_length is not None else QA_DEFAULT_WINDOW
    if stride >= window:
        said = f"--max-length {max_length}" if max_length is not None else f"qa's window (at most {window} tokens)"
        raise UsageError(f"--stride {stride} must be less than {said}: windows overlap by part of themselves",
                         hint=f"give --stride 0 to {window - 1}, or leave it out (half the window, at most 128)")
