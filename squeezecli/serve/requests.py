"""What a `POST /v1/tasks/{task}` request's options become, read off the task table (tasks/table.py): the
server is one generator over the table, so every row is served and a new row needs nothing here.

A request names the row's options as the command line does, by their Python names (`top_k`, `labels`,
`questions`, ...), with JSON values of the option's type; each is checked as Click checks the flag (an
int within its bounds, a choice among its choices, a list for a repeatable option). Then the row's own
check runs, the row that runs is resolved (`classify` with `labels` runs `zero-shot`), and its
constructor arguments are made, exactly as the CLI makes them: a command run through a server and in
process run the same task with the same arguments.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..io.batches import MAX_BATCH_SIZE  # a request's batch_size, bounded as the command line's --batch-size
from ..store import catalogue
from ..tasks.table import Option, TaskSpec


def task_arguments(spec: TaskSpec, options: dict[str, Any], model: str | None, *, max_length: Any = None,
                   batch_size: Any = None) -> tuple[str, dict[str, Any]]:
    """(the row that runs, its task's constructor arguments) for a request's options; UsageError for
    what the CLI would refuse with status 2."""
    values = {name: coerced(option_named(spec, name), value) for name, value in options.items()}
    given = spec.given(values, model=model)
    max_length = None if max_length is None else _whole(max_length, "max_length", 1, None)
    spec.check({**given, "max_length": max_length})  # as the CLI's check: qa's stride against it
    ran = spec.resolve(given)
    arguments = ran.arguments(given, model_id(ran.name, model))
    if max_length is not None:
        arguments["max_length"] = max_length
    if batch_size is not None:
        arguments["batch_size"] = _whole(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
    return ran.name, arguments


def option_named(spec: TaskSpec, name: str) -> Option:
    for option in spec.options:
        if option.name == name:
            return option
    names = ", ".join(option.name for option in spec.options) or "none"
    raise UsageError(f"{spec.name} has no option {name!r}", hint=f"its options: {names}")


def coerced(option: Option, value: Any) -> Any:
    """`value` (from JSON) as the option's type, or UsageError as Click would refuse the flag."""
    if option.multiple:
        if not isinstance(value, list):
            raise UsageError(f"option {option.name!r} takes a list")
        return tuple(_one(option, item) for item in value)
    return None if value is None and not option.required else _one(option, value)


def _one(option: Option, value: Any) -> Any:
    if option.type == "flag":
        if not isinstance(value, bool):
            raise UsageError(f"option {option.name!r} takes true or false")
        return value
    if option.type == "int":
        return _whole(value, option.name, option.min, option.max)
    if not isinstance(value, str):
        raise UsageError(f"option {option.name!r} takes a string")
    if option.type == "choice" and value not in option.choices:
        raise UsageError(f"option {option.name!r} takes one of {', '.join(option.choices)}, not {value!r}")
    return value


def _whole(value: Any, name: str, least: int | None, most: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"option {name!r} takes a whole number")
    if (least is not None and value < least) or (most is not None and value > most):
        bounds = f"at least {least}" if most is None else f"from {least} to {most}"
        raise UsageError(f"option {name!r} is {value}; it must be {bounds}")
    return value


def model_id(task: str, model: str | None) -> str:
    """The Hub id (or path) `task` runs for `model` (the defaults that depend on the model read it, as
    QA's "no answer" does)."""
    return catalogue.hub_id(model or catalogue.default_for(task))
