"""The CLI plumbing end to end, through the hidden model-free `echo-lines` command: input -> batches ->
writer, and every way a run can end (exit status, one-line message, never a traceback).

In-process tests use Click's CliRunner; the pipe, signal and import tests run a real `python -m squeezecli`.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from processes import foreground_signals

import squeezecli
from squeezecli import cli
from squeezecli.cli import options
from squeezecli.errors import ExitStatus, ModelError
from squeezecli.io import pipeline

REPO = Path(__file__).resolve().parents[1]


def run(args, input=None, env=None):
    return CliRunner().invoke(cli.squeeze, args, input=input, env=env, prog_name="squeeze", catch_exceptions=False)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines()]


# --- the happy path ----------------------------------------------------------------------------------


def test_echo_lines_from_files_and_stdin(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("first\n\nthird line\n")
    result = run(["echo-lines", str(path), "-"], input="from stdin\n")
    assert result.exit_code == 0, result.stderr
    assert json_lines(result.stdout) == [
        {"file": str(path), "line": 1, "text": "first", "length": 5},
        {"file": str(path), "line": 3, "text": "third line", "length": 10},
        {"file": "-", "line": 1, "text": "from stdin", "length": 10},
    ]
    assert result.stderr == ""


def test_echo_lines_keeps_input_order_across_batches_and_windows():
    texts = [("x" * (n * 7 % 23)) + str(n) for n in range(200)]
    result = run(["echo-lines", "--batch-size", "3"], input="\n".join(texts) + "\n")
    assert [row["text"] for row in json_lines(result.stdout)] == texts
    assert [row["line"] for row in json_lines(result.stdout)] == list(range(1, 201))


def test_jsonl_fields_are_carried_through():
    lines = ['{"id": 1, "body": "hello", "length": "from input"}', '{"id": 2, "body": "hi"}']
    result = run(["echo-lines", "--field", "body"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.stderr
    assert json_lines(result.stdout) == [
        {"file": "-", "line": 1, "text": "hello", "length": 5, "id": 1},
        {"file": "-", "line": 2, "text": "hi", "length": 2, "id": 2},
    ]


def test_csv_format():
    result = run(["echo-lines", "--format", "csv"], input="a, b\n")
    assert result.stdout == 'file,line,text,length\n-,1,"a, b",4\n'


def test_doc_mode_is_one_record_per_file(tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("para one\n\npara two\n")
    result = run(["echo-lines", "--doc", str(doc)])
    assert json_lines(result.stdout) == [{"file": str(doc), "text": "para one\n\npara two\n", "length": 19}]


def test_empty_input_prints_nothing():
    for fmt in ("auto", "jsonl", "csv", "table"):
        result = run(["echo-lines", "--format", fmt], input="\n\n")
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_version_and_hidden_command():
    assert run(["--version"]).stdout == f"squeeze {squeezecli.__version__}\n"
    help_text = run(["--help"]).stdout
    assert "Exit status" in help_text
    assert "echo-lines" not in help_text


# --- errors users make ------------------------------------------------------------------------------


def assert_one_error(result, status, message_part):
    assert result.exit_code == status
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("squeeze: error: ")
    assert message_part in lines[0]
    assert all(line.startswith("  hint: ") for line in lines[1:])
    assert len(lines) <= 2


def test_missing_third_file_fails_before_any_output(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("a\n")
    result = run(["echo-lines", str(good), str(good), str(tmp_path / "typo.txt")])
    assert_one_error(result, ExitStatus.INPUT, "typo.txt: no such file")
    assert result.stdout == ""


def test_directory_is_an_input_error(tmp_path):
    assert_one_error(run(["echo-lines", str(tmp_path)]), ExitStatus.INPUT, "is a directory")


def test_invalid_utf8_names_the_line_and_hints_at_replace(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\n\xc3\x28 broken\n")
    result = run(["echo-lines", str(path)])
    assert_one_error(result, ExitStatus.INPUT, "bad.txt:2: invalid UTF-8")
    assert "--errors replace" in result.stderr
    replaced = run(["echo-lines", "--errors", "replace", str(path)])
    assert [row["text"] for row in json_lines(replaced.stdout)] == ["fine", "\ufffd( broken"]


def test_malformed_jsonl_names_the_line():
    result = run(["echo-lines", "--jsonl"], input='{"text": "ok"}\n{"text": \n')
    assert_one_error(result, ExitStatus.INPUT, "<stdin>:2: not valid JSON")


def test_library_errors_keep_their_status_and_hint(monkeypatch):
    def fail(*args, **kwargs):
        raise ModelError("no model called 'nope'", hint="see `squeeze models list`")

    monkeypatch.setattr(pipeline, "open_writer", fail)
    result = run(["echo-lines"], input="a\n")
    assert result.exit_code == ExitStatus.MODEL
    assert result.stderr == "squeeze: error: no model called 'nope'\n  hint: see `squeeze models list`\n"


@pytest.mark.parametrize(
    "args",
    [
        ["echo-lines", "--doc", "--jsonl"],
        ["echo-lines", "--doc", "--field", "body"],
        ["echo-lines", "--format", "xml"],
        ["echo-lines", "--batch-size", "0"],
        ["echo-lines", "--no-such-option"],
        ["no-such-command"],
    ],
)
def test_usage_errors_exit_2_in_squeezes_one_message_style(args):
    result = run(args, input="")
    assert result.exit_code == ExitStatus.USAGE
    message, hint = result.stderr.splitlines()  # one line, and one hint: no "Usage:" block, no "Error:"
    assert message.startswith("squeeze: error: ") and "Usage" not in result.stderr
    listed = "commands" if args == ["no-such-command"] else "options"
    command = "squeeze" if args == ["no-such-command"] else "squeeze echo-lines"
    assert hint == f"  hint: '{command} --help' lists the {listed}"
    assert result.stdout == ""


@pytest.mark.parametrize("args, says", [
    (["sentiment", "-m", ""], "Invalid value for '-m' / '--model': is empty"),
    (["sentiment", "-m", "  "], "Invalid value for '-m' / '--model': is empty"),
    (["embed", "--max-length", "1", "-m", "{model}"], "--max-length 1 leaves no room for text"),
])
def test_options_a_run_cannot_use_exit_2(args, says, tmp_path):
    import factory

    model = tmp_path / "model"
    factory.build(model, "bert", "base")
    result = run([arg.format(model=model) for arg in args], input="text\n")
    assert result.exit_code == ExitStatus.USAGE, result.stderr
    assert result.stderr.startswith(f"squeeze: error: {says}")


def test_the_offline_hint_names_the_switch_that_is_on(hub):
    by_flag = run(["embed", "--offline", "--precision", "fp32"], input="text\n")
    assert by_flag.exit_code == ExitStatus.NETWORK and "without --offline" in by_flag.stderr
    assert "HF_HUB_OFFLINE" not in by_flag.stderr
    by_variable = run(["embed", "--precision", "fp32"], input="text\n", env={"HF_HUB_OFFLINE": "1"})
    assert by_variable.exit_code == ExitStatus.NETWORK and "with HF_HUB_OFFLINE unset" in by_variable.stderr


# --- how a run can end otherwise ---------------------------------------------------------------------


def fail_in_writer(monkeypatch, exc):
    def write_batch(self, rows):
        raise exc

    monkeypatch.setattr("squeezecli.io.writers.JsonLinesWriter.write_batch", write_batch)


def test_bug_is_one_line_internal_error_with_debug_hint(monkeypatch):
    fail_in_writer(monkeypatch, RuntimeError("boom"))
    result = run(["echo-lines"], input="a\n")
    assert result.exit_code == ExitStatus.ERROR
    assert result.stderr == "squeeze: internal error: RuntimeError: boom\n  hint: set SQUEEZE_DEBUG=1 for the traceback\n"


def test_squeeze_debug_prints_the_traceback(monkeypatch):
    fail_in_writer(monkeypatch, RuntimeError("boom"))
    result = run(["echo-lines"], input="a\n", env={"SQUEEZE_DEBUG": "1"})
    assert result.exit_code == ExitStatus.ERROR
    assert "Traceback" in result.stderr
    assert "in write_batch" in result.stderr
    assert result.stderr.splitlines()[-1] == "squeeze: internal error: RuntimeError: boom"


def test_keyboard_interrupt_exits_130_quietly(monkeypatch):
    fail_in_writer(monkeypatch, KeyboardInterrupt())
    result = run(["echo-lines"], input="a\n")
    assert result.exit_code == ExitStatus.INTERRUPTED
    assert result.stderr.strip() == ""


def test_broken_pipe_exits_141_quietly(monkeypatch):
    fail_in_writer(monkeypatch, BrokenPipeError())
    result = run(["echo-lines"], input="a\n")
    assert result.exit_code == ExitStatus.BROKEN_PIPE
    assert result.stderr == ""


def test_main_returns_the_status_when_not_standalone(capsys):
    assert cli.squeeze.main(["echo-lines", "/no/such/file"], standalone_mode=False) == ExitStatus.INPUT
    assert "no such file" in capsys.readouterr().err


# --- shared option decorators ------------------------------------------------------------------------


def test_option_groups_reach_the_command_as_objects(tmp_path):
    seen = {}

    @click.command()
    @options.input_options
    @options.output_options
    @options.model_options
    @click.option("--question")
    def task(inputs, output, model, question):
        seen.update(inputs=inputs, output=output, model=model, question=question)

    path = tmp_path / "a.jsonl"
    path.write_text("")
    args = [str(path), "--field", "body", "--format", "tsv", "--quiet", "-m", "org/model", "--precision", "fp32",
            "--threads", "2", "--question", "why?"]
    result = CliRunner().invoke(task, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert seen["inputs"] == options.InputOptions((str(path),), "jsonl", "body", "strict")
    assert seen["output"] == options.OutputOptions("tsv", True)
    assert seen["model"] == options.ModelOptions("org/model", None, 32, None, 2, "fp32", False)
    assert seen["question"] == "why?"

    defaults = CliRunner().invoke(task, [], catch_exceptions=False)
    assert defaults.exit_code == 0
    assert seen["inputs"] == options.InputOptions((), "line", None, "strict")
    assert seen["model"] == options.ModelOptions(None, None, 32, None, None, "auto", False)


# --- a real process with real pipes ------------------------------------------------------------------


def squeeze_env():
    env = {key: value for key, value in os.environ.items() if key != "SQUEEZE_DEBUG"}
    # Works whether or not the package is installed: the checkout comes first on the path.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


SQUEEZE = [sys.executable, "-m", "squeezecli"]


def run_process(args, tmp_path, input=b""):
    return subprocess.run(SQUEEZE + args, input=input, capture_output=True, cwd=tmp_path, env=squeeze_env(),
                          timeout=60)


def test_help_does_not_import_torch(tmp_path):
    probe = (
        "import sys\n"
        "from squeezecli.cli import main\n"
        "sys.argv = ['squeeze', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "assert 'torch' not in sys.modules, 'squeeze --help imported torch'\n"
    )
    probed = subprocess.run([sys.executable, "-c", probe], capture_output=True, cwd=tmp_path, env=squeeze_env(),
                            timeout=60)
    assert probed.returncode == 0, probed.stderr.decode()


def test_squeeze_help_process_never_imports_torch(tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "squeezecli", "--help"], capture_output=True,
                            cwd=tmp_path, env=squeeze_env(), timeout=60)
    assert result.returncode == 0
    assert b"Usage: squeeze" in result.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.decode().splitlines()]
    assert "squeezecli.cli" in imported  # the probe saw the CLI's imports
    assert not [name for name in imported if name.split(".")[0] == "torch"]


def test_process_missing_file_is_one_line_exit_3(tmp_path):
    result = run_process(["echo-lines", "missing.txt"], tmp_path)
    assert result.returncode == ExitStatus.INPUT
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "squeeze: error: missing.txt: no such file",
        "  hint: check the path; use - to read stdin",
    ]


def test_process_empty_input_prints_nothing(tmp_path):
    result = run_process(["echo-lines"], tmp_path, input=b"")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_process_output_to_head_ends_quietly(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("".join(f"line number {n} with some padding text\n" for n in range(200_000)))
    command = shlex.join(SQUEEZE) + " echo-lines big.txt 2>stderr.txt | head -1; echo ${PIPESTATUS[0]} >status.txt"
    shell = subprocess.run(["bash", "-c", command], capture_output=True, cwd=tmp_path, env=squeeze_env(), timeout=60)
    assert json.loads(shell.stdout)["line"] == 1
    assert (tmp_path / "stderr.txt").read_text() == ""
    assert int((tmp_path / "status.txt").read_text()) == ExitStatus.BROKEN_PIPE


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread signal masks from Linux's /proc")
def test_ctrl_c_is_left_to_the_main_thread_while_a_reader_thread_waits_on_stdin(tmp_path):
    """The kernel may hand a process's SIGINT to any thread that does not block it; one handled on the
    reader thread (blocked reading stdin) would leave the main thread asleep, and Ctrl-C would hang."""
    with subprocess.Popen(SQUEEZE + ["echo-lines", "--batch-size", "1"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=squeeze_env(),
                          preexec_fn=foreground_signals) as process:
        try:
            process.stdin.write(b"line\n")
            process.stdin.flush()
            assert json.loads(process.stdout.readline())["text"] == "line"
            others = [task for task in Path(f"/proc/{process.pid}/task").iterdir() if task.name != str(process.pid)]
            assert others  # the reader thread
            for task in others:
                blocked = next(line for line in (task / "status").read_text().splitlines() if line.startswith("SigBlk:"))
                assert int(blocked.split()[1], 16) & (1 << (signal.SIGINT - 1)), task.name
            process.send_signal(signal.SIGINT)
            status = process.wait(timeout=30)
        finally:
            process.kill()
    assert status == ExitStatus.INTERRUPTED


def test_process_ctrl_c_on_endless_stdin_exits_130_quietly(tmp_path):
    with subprocess.Popen(SQUEEZE + ["echo-lines", "--batch-size", "1"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=squeeze_env(),
                          preexec_fn=foreground_signals) as process:
        try:
            # One window (8 batches of 1) makes the first result appear: the process is then inside the
            # pipeline, blocked on a stdin that stays open.
            process.stdin.write(b"".join(b"line %d\n" % n for n in range(8)))
            process.stdin.flush()
            assert json.loads(process.stdout.readline())["text"] == "line 0"
            process.send_signal(signal.SIGINT)
            status = process.wait(timeout=30)
        finally:
            process.kill()
        stderr = process.stderr.read()
    assert status == ExitStatus.INTERRUPTED
    assert b"Traceback" not in stderr
    assert stderr.strip() == b""


# --- output fields and skipped records -------------------------------------------------------------------


def test_fields_picks_and_orders_the_output_fields(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 7, "text": "hello"}\n{"text": "hi"}\n', encoding="utf-8")
    result = run(["echo-lines", "--jsonl", str(path), "--fields", "length,id,text,line"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ['{"length":5,"id":7,"text":"hello","line":1}',
                                          '{"length":2,"id":null,"text":"hi","line":2}']
    csv = run(["echo-lines", "--jsonl", str(path), "--fields", "line,id", "--format", "csv"])
    assert csv.stdout == "line,id\n1,7\n2,\n"
    empty = run(["echo-lines", str(path), "--fields", " , "])
    assert empty.exit_code == ExitStatus.USAGE and "--fields" in empty.stderr


def test_on_error_skip_leaves_malformed_records_out_and_counts_them(tmp_path):
    lines = ['{"text": "a"}', "not json", '{"x": 1}', "[1]", '{"text": "b"}', '{"text": 5}', "{", "{", '{"text": "c"}']
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stopped = run(["echo-lines", "--jsonl", str(path)])
    assert stopped.exit_code == ExitStatus.INPUT and f"{path}:2: not valid JSON" in stopped.stderr
    skipped = run(["echo-lines", "--jsonl", str(path), "--on-error", "skip"])
    assert skipped.exit_code == 0, skipped.stderr
    assert [row["line"] for row in json_lines(skipped.stdout)] == [1, 5, 9]
    assert skipped.stderr.splitlines() == [
        f"squeeze: skipped 6 malformed records ({path}:2, {path}:3, {path}:4, {path}:6, {path}:7 and 1 more); "
        "the first: not valid JSON (Expecting value at column 1)"]
    table = tmp_path / "in.csv"
    table.write_text("id,text\n1,fine\n2,too,many\n3,also fine\n", encoding="utf-8")
    rows = run(["echo-lines", "--csv", str(table), "--on-error", "skip"])
    assert [row["line"] for row in json_lines(rows.stdout)] == [2, 4] and f"({table}:3)" in rows.stderr
    invalid = tmp_path / "bytes.txt"
    invalid.write_bytes(b"good\ncaf\xe9\nalso good\n")
    lines_out = run(["echo-lines", str(invalid), "--on-error", "skip"])
    assert [row["text"] for row in json_lines(lines_out.stdout)] == ["good", "also good"]
    assert "invalid UTF-8" in lines_out.stderr


@pytest.mark.parametrize("args, says", [
    (["sentiment", "--overlap", "3"], "--overlap applies to chunks"),
    (["classify", "--labels", "a,b", "--aggregate", "max"], "--aggregate applies to chunks"),
    (["embed", "--pool", "mean"], "--pool applies to chunks"),
    (["embed", "--chunk", "10", "--overlap", "10"], "--overlap 10 must be less than --chunk 10"),
    (["index", "build", "-o", "x.sqidx", "--overlap", "2"], "--overlap applies to chunks"),
])
def test_chunk_options_that_cannot_work_fail_before_any_model_is_loaded(args, says, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a model load would fail with exit 5: it must not start
    monkeypatch.setenv("SQUEEZE_CACHE_DIR", str(tmp_path / "cache"))
    result = run(args, input="text\n")
    assert result.exit_code == ExitStatus.USAGE, result.stderr
    assert result.stderr.startswith(f"squeeze: error: {says}")
