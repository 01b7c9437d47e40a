"""A property of every task command: whatever its options' values and combinations, it ends with a
status of the README's table and never a traceback or an "internal error". Random options (hypothesis)
over the task commands, run in-process on tiny random models; most examples are refused before any
model loads, the rest run on one line of input.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squeezecli import cli
from squeezecli.errors import ExitStatus

# Status 1 is "none of the others, or a bug": no option value is either.
DOCUMENTED = {int(status) for status in ExitStatus} - {ExitStatus.ERROR}

# Values an option may get: the sensible, the edge, the absurd.
INTS = st.sampled_from(["0", "1", "2", "3", "7", "64", "100", "256", "257", "100000", "-1", "1e3", "x", ""])
TEXTS = st.sampled_from(["", " ", ",", ",,", "a", "a,a", "a,b", "sports, politics", "{}", "{} {}", "{0}", "{x}",
                         "{} {} {0} {x}", "This is {}.", "{", "}", "é", "\x1b[2J", "a" * 300])
FLAG = st.booleans()


def task_options(task: str) -> st.SearchStrategy[list[str]]:
    """Random options of `task`'s command, each present or not."""
    common = {"--batch-size": INTS, "--max-length": INTS, "--threads": INTS, "--field": TEXTS,
              "--format": st.sampled_from(["auto", "jsonl", "csv", "table", "npy"]),
              "--precision": st.sampled_from(["fp32", "bf16"])}
    flags = ["--doc", "--jsonl"]
    own = {
        "sentiment": {"--top-k": INTS, "--chunk": INTS, "--overlap": INTS, "--aggregate": st.sampled_from(["mean", "max"])},
        "classify": {"--labels": TEXTS, "--template": TEXTS, "--top-k": INTS, "--chunk": INTS, "--overlap": INTS},
        "qa": {"-q": TEXTS, "--stride": INTS, "--top-k": INTS, "--max-answer-len": INTS},
        "ner": {"--aggregation": st.sampled_from(["none", "simple", "first", "average", "max"])},
        "embed": {"--chunk": INTS, "--overlap": INTS, "--pool": st.sampled_from(["mean", "max", "first"])},
    }[task]
    flags += {"classify": ["--multi-label", "--all-scores"], "sentiment": ["--all-scores"], "qa": ["--lines"]}.get(task, [])
    values = {**common, **own}

    @st.composite
    def draw(draw_one) -> list[str]:
        args: list[str] = []
        for name, strategy in values.items():
            # Each option in about a quarter of the examples; qa's question in most (it is required).
            if draw_one(st.integers(0, 3)) == 0 or (name == "-q" and draw_one(st.booleans())):
                args += [name, draw_one(strategy)]
        args += [flag for flag in flags if draw_one(st.integers(0, 4)) == 0]
        return args

    return draw()


@pytest.fixture(scope="module")
def models(default_models):
    return {"sentiment": default_models["sentiment"], "classify": default_models["zero-shot"],
            "qa": default_models["qa"], "ner": default_models["ner"], "embed": default_models["embed"]}


@pytest.mark.parametrize("task", ["sentiment", "classify", "qa", "ner", "embed"])
def test_no_options_give_a_traceback_or_an_undocumented_status(models, task, tmp_path):
    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(task_options(task))
    def check(args: list[str]) -> None:
        command = [task, "-m", str(models[task]), *args]
        result = CliRunner().invoke(cli.squeeze, command, input="Ada Lovelace wrote the first program.\n",
                                    prog_name="squeeze")
        stderr = result.stderr
        assert result.exit_code in DOCUMENTED, (command, result.exit_code, stderr)
        assert "Traceback" not in stderr and "internal error" not in stderr, (command, stderr)
        if result.exit_code != 0:
            errors = [line for line in stderr.splitlines() if line.startswith("squeeze: error: ")]
            assert len(errors) == 1, (command, stderr)

    check()
