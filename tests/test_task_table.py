"""The table of tasks (squeezecli/tasks/table.py) is the one place a task is written: every row has a
command, a run-distributed subcommand, an eval task and a `squeezecli.load` entry, generated; a row
added to the table (a throwaway task, here) is all four without a command file touched."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import factory
import pytest

from squeezecli.cli import squeeze
from squeezecli.errors import ExitStatus
from squeezecli.tasks.table import TASKS

ROOT = Path(__file__).resolve().parent.parent


def flags_of(command) -> set[str]:
    return {flag for param in command.params for flag in (*param.opts, *param.secondary_opts)}


def declared_flags(options) -> set[str]:
    return {part for option in options for flag in option.flags for part in flag.split("/")}


@pytest.mark.parametrize("spec", list(TASKS.values()), ids=list(TASKS))
def test_every_row_has_a_command_a_subcommand_an_eval_task_and_an_api_entry(spec):
    if spec.command:
        command = squeeze.commands[spec.name]
        assert declared_flags(spec.options) <= flags_of(command)
        assert command.help.startswith(spec.help.split("\n")[0])
        subcommand = squeeze.commands["run-distributed"].commands[spec.name]
        assert declared_flags(spec.options) <= flags_of(subcommand)
    else:  # zero-shot is what classify runs with --labels
        assert spec.name not in squeeze.commands
        assert TASKS["classify"].resolve({"labels": "a,b"}) is spec
    evaluate = squeeze.commands["eval"]
    assert spec.name in evaluate.params[0].type.choices
    assert declared_flags(spec.evaluation.options) <= flags_of(evaluate)
    task_class = spec.task_class()  # what squeezecli.load runs for the name
    assert (task_class.head, task_class.chunkable) == (spec.head, spec.chunkable)


def test_the_commands_are_the_rows():
    commands = {name for name, spec in TASKS.items() if spec.command}
    assert commands <= set(squeeze.commands)
    assert set(squeeze.commands["run-distributed"].commands) == commands
    assert set(squeeze.commands["eval"].params[0].type.choices) == {n for n, s in TASKS.items() if s.evaluation}


THROWAWAY = '''
from squeezecli.tasks.base import Task
from squeezecli.tasks.evaluation import Evaluator


class Shout(Task):
    head = "base"

    def __init__(self, runtime, *, times=1, **options):
        super().__init__(runtime, **options)
        self.times = times

    def __call__(self, texts):
        return [{"shout": text.upper() * self.times} for text in texts]


class Echoed(Evaluator):
    headline = ("accuracy",)

    def parse_gold(self, record, value):
        return str(value)

    def prediction(self, result):
        return result["shout"]

    def score(self, predictions):
        return {"accuracy": sum(g == p for g, p in zip(self.gold, predictions)) / len(predictions)}
'''

DRIVER = '''
import json, sys
from squeezecli.errors import UsageError
from squeezecli.tasks.table import TASKS, Evaluation, Option, TaskSpec


def check(given):
    if given["times"] > 3:
        raise UsageError("--times is at most 3")


TASKS["shout"] = TaskSpec(
    "shout", "throwaway.task:Shout", "base", help="Shout each line.", brief="Shout each line.",
    columns=lambda given: ["shout", "text"], check=check, arguments=lambda given, model: {"times": given["times"]},
    options=(Option("times", ("--times",), type="int", min=1, default=1, help="How many times."),),
    evaluation=Evaluation("throwaway.task:Echoed"))

from click.testing import CliRunner
import squeezecli
from squeezecli.cli import squeeze

model = sys.argv[1]
found = {}


def invoke(name, args, input=None):
    result = CliRunner().invoke(squeeze, args, input=input)
    found[name] = {"status": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}


invoke("help", ["--help"])
invoke("command", ["shout", "--times", "2", "--model", model, "--precision", "fp32"], input="ab\\ncd\\n")
invoke("refused", ["shout", "--times", "9"], input="ab\\n")
invoke("distributed_help", ["run-distributed", "shout", "--help"])
invoke("distributed_refused", ["run-distributed", "shout", "--times", "9", "-o", "out"], input="ab\\n")
invoke("eval", ["eval", "shout", "--labels-from", "gold", "--precision", "fp32", "--model", model, "--json"],
       input='{"text": "ab", "gold": "AB"}\\n{"text": "cd", "gold": "XX"}\\n')
found["api"] = squeezecli.load("shout", model, precision="fp32", times=3)(["a", "b"])
print(json.dumps(found))
'''


def test_a_row_added_to_the_table_is_a_command_a_subcommand_an_eval_task_and_an_api_entry(tmp_path):
    package = tmp_path / "throwaway"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "task.py").write_text(textwrap.dedent(THROWAWAY))
    (tmp_path / "driver.py").write_text(DRIVER)
    model = tmp_path / "model"
    factory.build(model, "bert", "base")
    done = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(model)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**__import__("os").environ,
                                                          "PYTHONPATH": f"{ROOT}:{tmp_path}"})
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert "shout" in found["help"]["stdout"] and "Shout each line." in found["help"]["stdout"]

    command = found["command"]
    assert command["status"] == 0, command["stderr"]
    assert [(row["line"], row["shout"]) for row in map(json.loads, command["stdout"].splitlines())] == [
        (1, "ABAB"), (2, "CDCD")]
    # refused by the row's check before any model loads (no model named: loading would fail with status 4)
    assert found["refused"]["status"] == ExitStatus.USAGE
    assert "--times is at most 3" in found["refused"]["stderr"]

    assert "--times" in found["distributed_help"]["stdout"]
    assert found["distributed_refused"]["status"] == ExitStatus.USAGE
    assert "--times is at most 3" in found["distributed_refused"]["stderr"]

    assert found["eval"]["status"] == 0, found["eval"]["stderr"]
    report = json.loads(found["eval"]["stdout"])
    assert report["task"] == "shout" and report["precisions"]["fp32"]["accuracy"] == 0.5

    assert found["api"] == [{"shout": "AAA"}, {"shout": "BBB"}]


def test_a_rows_given_fills_defaults_and_refuses_unknown_names():
    from squeezecli.errors import UsageError

    given = TASKS["qa"].given({"questions": ("Who?",)}, model="m")
    assert given["top_k"] == 1 and given["max_answer_len"] == 15 and given["no_answer"] is None
    assert given["model"] == "m" and given["format"] is None
    assert TASKS["qa"].arguments(given, "deepset/roberta-base-squad2")["handle_impossible_answer"] is True
    with pytest.raises(UsageError, match="has no option 'topk'"):
        TASKS["qa"].given({"topk": 3})
    with pytest.raises(UsageError, match="--template .no slot. has no {}"):
        TASKS["classify"].check(TASKS["classify"].given({"labels": "a,b", "template": "no slot"}))


def test_the_catalogues_task_names_are_rows_and_their_defaults_have_the_rows_head():
    from squeezecli.store import catalogue

    defaulted = set(catalogue.TASKS) | set(catalogue.TASK_ALIASES)
    assert defaulted <= set(TASKS)
    assert {model.task for model in catalogue.MODELS} <= set(TASKS)
    for name in defaulted:
        assert catalogue.by_alias(catalogue.default_for(name)).head == TASKS[name].head, name
