"""The README's examples are squeeze's real output.

Every ```console and ```pycon block of README.md is run, in order, in one session on a terminal, against
the loopback Hub serving the catalogue's models (see tests/readme_examples.py for the session and for
what is normalised), and must print what the README shows. When squeeze's output changes on purpose,
`python tests/readme_examples.py --update` rewrites the README's examples.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
import readme_examples
from readme_examples import Block, Step, parse_blocks, same_output, screen

README_TEXT = readme_examples.README.read_text(encoding="utf-8")
BLOCKS = parse_blocks(README_TEXT)


@pytest.fixture(scope="module")
def transcripts() -> list[str]:
    from squeezecli.environment import Environment
    from squeezecli.precision.int8 import int8_backend

    if int8_backend(Environment.from_os().kernel) is None:
        pytest.skip("the examples show int8 runs; on a CPU without an int8 kernel squeeze runs fp32 and says so")
    return [actual for _, actual in readme_examples.run_all(BLOCKS)]


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[block.name for block in BLOCKS])
def test_example_shows_what_squeeze_prints(transcripts, index):
    block, actual = BLOCKS[index], transcripts[index]
    if not same_output(block, actual):
        pytest.fail(readme_examples.explain(block, actual), pytrace=False)


def _squeeze_commands() -> set[tuple[str, ...]]:
    """The squeeze (sub)commands the README's console examples run, e.g. ("models", "pull")."""
    from squeezecli.cli import squeeze

    groups = {name for name, command in squeeze.commands.items() if hasattr(command, "commands")}
    used = set()
    for block in BLOCKS:
        if block.kind != "console":
            continue
        for step in block.steps:
            words = shlex.split(step.source.replace("\\\n", " "))
            for at, word in enumerate(words):
                if word == "squeeze" and at + 1 < len(words):
                    used.add(tuple(words[at + 1 : at + 3]) if words[at + 1] in groups else (words[at + 1],))
    return used


# Needs a Ray cluster, which the examples' session does not have; "More than one machine" shows it.
WITHOUT_EXAMPLES = {"run-distributed"}


def test_every_command_has_an_example():
    from squeezecli.cli import squeeze

    commands = {
        (name, sub) if hasattr(command, "commands") else (name,)
        for name, command in squeeze.commands.items() if not command.hidden and name not in WITHOUT_EXAMPLES
        for sub in (getattr(command, "commands", None) or [None])
    }
    missing = commands - _squeeze_commands()
    assert not missing, f"README.md has no example of: {sorted(' '.join(c) for c in missing)}"


def test_zero_shot_and_model_classification_both_have_examples():
    steps = [step.source for block in BLOCKS for step in block.steps]
    assert any(re.search(r"squeeze classify .*--labels", step) for step in steps)
    assert any(re.search(r"squeeze classify .*(-m|--model) ", step) for step in steps)


def test_the_test_commands_are_what_ci_runs():
    ci = (readme_examples.ROOT / ".ci" / "run").read_text(encoding="utf-8")
    shown = re.search(r"Test it .*?\n\n((?:    [^\n]+\n)+)", README_TEXT, re.DOTALL)
    assert shown, "README.md's Set up section lost its 'Test it' commands"
    readme_commands = [part for line in shown[1].splitlines() for part in line.strip().split(" && ")]
    # .ci/run runs each in its own venv: `.venv-user/bin/python x` is `python x` in that venv.
    ci_commands = [re.sub(r"^\.venv[\w-]*/bin/python ", "python ", line.strip().replace("pip install -q", "pip install"))
                   for line in ci.splitlines() if re.match(r"\s*(pip |python -m pytest|\.venv[\w-]*/bin/python )", line)]
    assert readme_commands == ci_commands


def test_the_run_it_line_is_what_the_user_environment_suite_runs():
    import sys

    sys.path.insert(0, str(readme_examples.ROOT / "tests" / "user_env"))
    import smoke

    assert smoke.readme_run_line().startswith("pip install torch==2.13.0 && pip install -e . && ")
    assert smoke.readme_run_line().endswith("| squeeze sentiment")


# -- the helper itself: how transcripts are read and compared ----------------------------------------


def _block(kind: str, body: str) -> Block:
    return Block(kind, body, 0, len(body), 1)


def test_console_steps_and_continuations_are_read_as_typed():
    steps = _block("console", "$ printf 'a\\n' \\\n  | squeeze sentiment\nPOSITIVE\n$ echo $?\n0\n").steps
    assert steps == [
        Step("printf 'a\\n' \\\n  | squeeze sentiment", "$ printf 'a\\n' \\\n  | squeeze sentiment\n", "POSITIVE\n"),
        Step("echo $?", "$ echo $?\n", "0\n"),
    ]


def test_pycon_statements_span_their_continuation_lines():
    steps = _block("pycon", ">>> def f():\n...     return 1\n>>> f()\n1\n").steps
    assert [step.source for step in steps] == ["def f():\n    return 1", "f()"]
    assert steps[1].output == "1\n"


def test_numbers_may_differ_a_little_and_nothing_else_may():
    block = _block("console", '$ squeeze x\n{"label":"POSITIVE","score":0.5123}\n')
    assert same_output(block, '$ squeeze x\n{"label":"POSITIVE","score":0.5161}\n')
    assert not same_output(block, '$ squeeze x\n{"label":"POSITIVE","score":0.5423}\n')
    assert not same_output(block, '$ squeeze x\n{"label":"NEGATIVE","score":0.5123}\n')
    assert not same_output(block, '$ squeeze x\n{"label":"POSITIVE","score":0.5123,"extra":1}\n')
    assert not same_output(block, '$ squeeze y\n{"label":"POSITIVE","score":0.5123}\n')


def test_sizes_and_times_are_not_compared_but_the_table_around_them_is():
    block = _block("console", "$ squeeze models list\nmodel   int8    last used\nbert    2.4 MB  just now\n")
    assert same_output(block, "$ squeeze models list\nmodel   int8      last used\nbert    251.1 kB  12 min ago\n")
    assert not same_output(block, "$ squeeze models list\nmodel   int8    last used\nroberta 2.4 MB  just now\n")


def test_of_doctor_only_the_row_names_are_compared():
    block = _block("console", "$ squeeze doctor\ntorch   2.13.0, 2 threads\npackages  a 1,\n          b 2\n")
    assert same_output(block, "$ squeeze doctor\ntorch   2.14.1, 8 threads\npackages  a 3, b 4\n")
    assert not same_output(block, "$ squeeze doctor\ntorch   2.13.0, 2 threads\n")


def test_the_screen_is_what_a_terminal_shows_after_a_progress_bar_is_erased():
    # Rich draws a two-line display, then moves back up over it and erases it.
    written = "results\r\n\x1b[?25l\x1b[1mreading\x1b[0m\r\n━━━━ 10%\r\x1b[2K\x1b[1A\x1b[2K\x1b[?25hdone\r\n"
    assert screen(written) == "results\ndone\n"


def test_a_failure_shows_the_diff_and_how_to_regenerate():
    block = _block("console", "$ squeeze x\nold line\n")
    message = readme_examples.explain(block, "$ squeeze x\nnew line\n")
    assert "-old line" in message and "+new line" in message
    assert readme_examples.UPDATE_COMMAND in message


def test_update_rewrites_only_the_blocks():
    text = "intro\n```console\n$ squeeze a\nold\n```\nmiddle\n```pycon\n>>> 1\n2\n```\nend\n"
    blocks = parse_blocks(text)
    rewritten = readme_examples.updated(text, [(blocks[0], "$ squeeze a\nnew\n"), (blocks[1], ">>> 1\n1\n")])
    assert rewritten == "intro\n```console\n$ squeeze a\nnew\n```\nmiddle\n```pycon\n>>> 1\n1\n```\nend\n"


def test_a_real_terminal_shows_progress_in_records_then_erases_it(tmp_path):
    """In a pty (stderr a terminal, results to a file): the display counts records done of the total,
    with their rate, and leaves nothing on the screen once the run is over."""
    import sys

    from processes import on_a_terminal, squeeze_env

    big = tmp_path / "big.txt"
    big.write_text("".join(f"line {i}\n" for i in range(20_000)), encoding="utf-8")
    with (tmp_path / "out.jsonl").open("wb") as out:
        status, shown = on_a_terminal([sys.executable, "-m", "squeezecli", "echo-lines", str(big), "--batch-size", "8"],
                                      stdout=out, cwd=tmp_path, env=squeeze_env(COLUMNS="100", TERM="xterm"))
    assert status == 0
    assert "/20,000 records" in shown, shown[-500:]
    assert screen(shown).strip() == ""  # erased: the terminal is as it was
    assert (tmp_path / "out.jsonl").read_text().count("\n") == 20_000


def test_loading_is_a_step_of_its_own_on_a_terminal_and_notices_go_above_it(tmp_path):
    """In a pty: "loading MODEL (PRECISION)…" while the model loads (its first-use notice printed above
    it), erased once it is loaded; then the records display; in the end only the notice stays."""
    import sys

    import factory
    from processes import on_a_terminal, squeeze_env

    factory.build(tmp_path / "tiny", "bert", "sequence")
    (tmp_path / "in.txt").write_text("good\nbad\n", encoding="utf-8")
    with (tmp_path / "out.jsonl").open("wb") as out:
        status, shown = on_a_terminal(
            [sys.executable, "-m", "squeezecli", "sentiment", "-m", str(tmp_path / "tiny"), "--precision", "int8",
             "in.txt"], stdout=out, cwd=tmp_path, env=squeeze_env(tmp_path / "caches", COLUMNS="100", TERM="xterm"))
    assert status == 0, shown
    assert f"{tmp_path.name}/tiny (int8)…" in shown and "loading …" in shown and "/2 records" in shown
    final = screen(shown)
    assert "loading …" not in final and "/2 records" not in final
    assert final.strip().startswith("squeeze: ") and "quantizing it to int8" in final
    assert (tmp_path / "out.jsonl").read_text().count("\n") == 2


def test_eval_shows_a_records_bar_per_precision_on_a_terminal_then_erases_it(tmp_path):
    """In a pty: `squeeze eval` over 300 records draws one bar per precision, named by it, counting the
    records of that pass; the report alone stays (stdout to a file here, so stderr is the screen)."""
    import sys

    import factory
    from processes import on_a_terminal, squeeze_env

    factory.build(tmp_path / "tiny", "bert", "sequence")
    (tmp_path / "gold.jsonl").write_text("".join(f'{{"text": "review {i}", "gold": {i % 2}}}\n' for i in range(300)),
                                         encoding="utf-8")
    with (tmp_path / "report.json").open("wb") as out:
        status, shown = on_a_terminal(
            [sys.executable, "-m", "squeezecli", "eval", "sentiment", "-m", str(tmp_path / "tiny"), "--labels-from",
             "gold", "--precision", "int8,fp32", "gold.jsonl"], stdout=out, cwd=tmp_path,
            env=squeeze_env(tmp_path / "caches", COLUMNS="100", TERM="xterm"))
    assert status == 0, shown
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown).replace("\r", "\n")
    drawn = [line.strip() for line in plain.splitlines() if "/300 records" in line]
    for precision in ("int8", "fp32"):
        assert any(line.startswith(f"{precision} ") for line in drawn), shown[-800:]
    assert any("300/300 records" in line for line in drawn)
    assert "/300 records" not in screen(shown)
    assert json.loads((tmp_path / "report.json").read_text())["records"] == 300


SNAPSHOT_80 = """\
file      line     length   text
────────────────────────────────────────────────────────────────────────────────
one.txt   1        5        alpha
one.txt   2        89       The plot made no sense and the ending dragged on fo…
two.txt   1        4        beta
"""


@pytest.mark.parametrize("columns", [80, 200])
def test_a_table_on_a_real_terminal_at_80_and_200_columns(tmp_path, columns):
    """Snapshot of a table on a pty: narrow columns as wide as their content, the text taking the rest of
    the line at any width (cut with an ellipsis only where it does not fit), file and line with two inputs."""
    import sys

    from processes import on_a_terminal, squeeze_env

    long = "The plot made no sense and the ending dragged on for what felt like hours, and then more."
    (tmp_path / "one.txt").write_text(f"alpha\n{long}\n", encoding="utf-8")
    (tmp_path / "two.txt").write_text("beta\n", encoding="utf-8")
    status, shown = on_a_terminal([sys.executable, "-m", "squeezecli", "echo-lines", "one.txt", "two.txt",
                                   "--fields", "file,line,length,text", "--no-color"],
                                  cwd=tmp_path, env=squeeze_env(COLUMNS=str(columns), LINES="40", TERM="xterm"))
    assert status == 0, shown
    if columns == 80:
        assert screen(shown) == SNAPSHOT_80
        return
    header, rule, *rows = [line.rstrip() for line in screen(shown).splitlines()]
    assert header.split() == ["file", "line", "length", "text"] and len(rule) == columns
    assert [row.split()[:3] for row in rows] == [["one.txt", "1", "5"], ["one.txt", "2", str(len(long))],
                                                 ["two.txt", "1", "4"]]
    assert header.index("text") == SNAPSHOT_80.index("text")  # the narrow columns do not grow
    assert rows[1].endswith(long)  # at 200 columns there is room for all of the text


def test_colour_on_a_real_terminal_and_off_with_no_color(tmp_path):
    import sys

    import factory
    from processes import on_a_terminal, squeeze_env

    factory.build(tmp_path / "tiny", "distilbert", "sequence")
    (tmp_path / "in.txt").write_text("good\nbad\n", encoding="utf-8")
    command = [sys.executable, "-m", "squeezecli", "sentiment", "-m", "tiny", "--precision", "fp32", "in.txt"]
    env = squeeze_env(tmp_path / "caches", COLUMNS="100", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    coloured = on_a_terminal(command, cwd=tmp_path, env=env)[1]
    label = r"(?:NEGATIVE|POSITIVE)"
    assert re.search(rf"\x1b\[1m{label}", coloured) and re.search(r"\x1b\[3[123]m0\.\d{4}", coloured)
    for plain in (on_a_terminal([*command, "--no-color"], cwd=tmp_path, env=env)[1],
                  on_a_terminal(command, cwd=tmp_path, env={**env, "NO_COLOR": "1"})[1]):
        assert re.search(label, plain) and not re.search(r"\x1b\[3[0-7]m", plain)  # bold is not a colour
