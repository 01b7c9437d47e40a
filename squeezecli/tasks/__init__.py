"""Task registry: the CLI's task names -> task classes, imported only when a command runs.

Every task module imports torch, so this module only names them (`module:Class`); `task_class` imports
the one a command needs. A task class has:

- `head`: the Encoder head it runs ("sequence", "token", "qa" or "base");
- `__init__(runtime, **options)`: the task's CLI options (top_k, labels, ...);
- `__call__(texts) -> list[dict]`: one JSON-serialisable result per text, in input order;
- `length_of(text) -> int`: a cheap token-length estimate, used to batch texts of similar length.
"""

from __future__ import annotations

import importlib

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
