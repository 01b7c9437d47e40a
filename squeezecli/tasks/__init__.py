"""The tasks: what each does with a model's output (classify.py, zeroshot.py, qa.py, ner.py, embed.py),
on the shared `Task` (base.py). They import `model/`, `io/` and `errors`; the CLI never imports them
at start-up: this registry only names them (`module:Class`), and `task_class` imports the one a command
needs. A task class has `head` (the Encoder head it runs), `__init__(runtime, **options)` (the task's
options, and `max_length`, `batch_size`), `__call__(texts) -> list[dict]` and `length_of(text)`.

May import: `errors`, `environment`, `io`, `checkpoint`, `model`, `precision`.
"""

from __future__ import annotations

import importlib

DEFAULT_TEMPLATE = "This example is {}."  # the zero-shot hypothesis, as transformers' pipeline words it

TASKS: dict[str, str] = {
    "sentiment": "classify:Classify",
    "classify": "classify:Classify",
    "zero-shot": "zeroshot:ZeroShot",
    "qa": "qa:QuestionAnswering",
    "ner": "ner:TokenClassification",
    "embed": "embed:Embed",
}


def task_class(name: str) -> type:
    """The class that runs task `name` (a key of TASKS)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    module_name, class_name = TASKS[name].split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)
