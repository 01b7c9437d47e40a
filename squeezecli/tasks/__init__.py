"""The tasks: what each does with a model's output (classify.py, zeroshot.py, qa.py, ner.py, embed.py),
on the shared `Task` (base.py), and the table of tasks every front end is generated from (table.py:
options, checks, columns, views.py, and how eval scores them, evaluation.py beside metrics.py). They
run on `model/` (heads from `checkpoint/`, int8 vectors from `precision/`) and batch through `io/`; the
CLI imports only the table at start-up, which names each task class (`module:Class`) and imports the one
a command runs. A task class has `head` (the Encoder head it runs), `__init__(runtime, **options)` (the
task's options, and `max_length`, `batch_size`), `__call__(texts) -> list[dict]` and `length_of(text)`.

May import: `errors`, `environment`, `io`, `checkpoint`, `model`, `precision`.
"""

from __future__ import annotations

from .table import DEFAULT_TEMPLATE, TASKS, TaskSpec, spec, task_class

__all__ = ["DEFAULT_TEMPLATE", "TASKS", "TaskSpec", "spec", "task_class"]
