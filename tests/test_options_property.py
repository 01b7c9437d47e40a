"""A property of every task command and of `squeeze serve`: whatever its options' values and
combinations, it ends with a status of the README's table and never a traceback or an "internal error".
Random options (hypothesis) over the task commands, run in-process on tiny random models; most examples
are refused before any model loads, the rest run on one line of input. `serve`'s are checked up to the
server's start, which is replaced here: what is refused never binds a port, what is accepted reaches it
with the options as given.
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
        "rerank": {"-q": TEXTS, "-k": INTS},
    }[task]
    flags += {"classify": ["--multi-label", "--all-scores"], "sentiment": ["--all-scores"], "qa": ["--lines"],
              "rerank": ["--keep-order"]}.get(task, [])
    values = {**common, **own}

    @st.composite
    def draw(draw_one) -> list[str]:
        args: list[str] = []
        for name, strategy in values.items():
            # Each option in about a quarter of the examples; qa's question and rerank's query in most (they
            # are required).
            if draw_one(st.integers(0, 3)) == 0 or (name == "-q" and draw_one(st.booleans())):
                args += [name, draw_one(strategy)]
        args += [flag for flag in flags if draw_one(st.integers(0, 4)) == 0]
        return args

    return draw()


@pytest.fixture(scope="module")
def models(default_models):
    return {"sentiment": default_models["sentiment"], "classify": default_models["zero-shot"],
            "qa": default_models["qa"], "ner": default_models["ner"], "embed": default_models["embed"],
            "rerank": default_models["rerank"]}


def test_every_task_command_is_covered():
    from squeezecli.tasks.table import TASKS

    assert {name for name, spec in TASKS.items() if spec.command} == set(COVERED)


COVERED = ["sentiment", "classify", "qa", "ner", "embed", "rerank"]


@pytest.mark.parametrize("task", COVERED)
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


# -- serve ----------------------------------------------------------------------------------------------

HOSTS = st.sampled_from(["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2", "0.0.0.0", "::", "", " ", "example.com",
                         "999.1.1.1", "a b"])
SERVE_OPTIONS = {"--host": HOSTS, "--port": INTS, "--api-key": TEXTS, "-m": TEXTS, "--max-models": INTS,
                 "--queue": INTS, "--max-texts": INTS, "--max-bytes": st.sampled_from(["1023", "1024", "1073741824",
                                                                                       "1073741825", "x"]),
                 "--batch-size": INTS, "--threads": INTS,
                 "--precision": st.sampled_from(["auto", "fp32", "bf16", "int8", "fp16"])}


@st.composite
def serve_options(draw_one) -> list[str]:
    args: list[str] = []
    for name, strategy in SERVE_OPTIONS.items():
        if draw_one(st.integers(0, 2)) == 0:
            args += [name, draw_one(strategy)]
    return args


def test_no_serve_options_give_a_traceback_or_an_undocumented_status(monkeypatch):
    import squeezecli.serve.server as server

    started = []
    monkeypatch.setattr(server, "serve", lambda settings, env: started.append(settings) or 0)
    monkeypatch.delenv("SQUEEZE_API_KEY", raising=False)

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(serve_options())
    def check(args: list[str]) -> None:
        started.clear()
        result = CliRunner().invoke(cli.squeeze, ["serve", *args], prog_name="squeeze")
        stderr = result.stderr
        assert result.exit_code in DOCUMENTED, (args, result.exit_code, stderr)
        assert "Traceback" not in stderr and "internal error" not in stderr, (args, stderr)
        if result.exit_code != 0:
            assert not started, args  # refused before the server would have bound its port
            errors = [line for line in stderr.splitlines() if line.startswith("squeeze: error: ")]
            assert len(errors) == 1, (args, stderr)
            return
        (chosen,) = started  # accepted: the server starts with the options as given
        given = dict(zip(args[::2], args[1::2]))
        assert chosen.host == given.get("--host", "127.0.0.1") and chosen.api_key == given.get("--api-key")
        assert chosen.models == tuple(value for name, value in zip(args[::2], args[1::2]) if name == "-m")

    check()
