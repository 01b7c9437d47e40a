"""Hostile input through the real CLI: random bytes, NUL bytes, mixed encodings, JSON of the wrong types,
one 10 MB line, 100,000 blank lines.

What must hold every time: no traceback, no hang, memory that does not grow with the input, an error (if
any) on one line naming the file and line, and every good line before it with its own result -- the one
the Python API gives for that line's text. The property tests run in process (CliRunner, fast); the
hang, memory and pipe cases run a real `python -m squeezecli`.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import factory
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from processes import run_measured, squeeze_env

import squeezecli
from squeezecli.cli import squeeze
from squeezecli.errors import ExitStatus

ROOT = Path(__file__).resolve().parent.parent
BOM = b"\xef\xbb\xbf"
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random-weight DistilBERT sentiment model. Its weights are three times the factory's default
    scale, which spreads its scores (0.6 to 0.85) so that a result given to the wrong line shows, without
    saturating them at 1.0."""
    directory = tmp_path_factory.mktemp("hostile") / "distilbert-sst2"
    factory.build(directory, "distilbert", "sequence", scale=0.15)
    return directory


@pytest.fixture(scope="module")
def reference(model_dir):
    """The Python API on the same model: the result each line's text must get."""
    return squeezecli.load("sentiment", str(model_dir), precision="fp32")


def sentiment(model_dir, *args, input=None):
    return CliRunner().invoke(squeeze, ["sentiment", "--model", str(model_dir), "--precision", "fp32", *args],
                              input=input, catch_exceptions=False)


def rows_of(stdout: str) -> list[dict]:
    """JSON Lines end at "\n" only: a field may hold U+0085 or U+2028 raw, which str.splitlines splits at."""
    return [json.loads(line) for line in stdout.split("\n") if line]


# -- what the input means: an oracle written from the spec, on the bytes -----------------------------


def physical_lines(data: bytes) -> list[bytes]:
    """Lines as readline() cuts them: at b"\\n" only; "\\r\\n" and "\\n" are the ending, a lone "\\r" is text."""
    pieces = data.split(b"\n")
    lines = [piece[:-1] if piece.endswith(b"\r") else piece for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])  # the last line has no newline and so keeps a trailing "\r"
    if lines and lines[0].startswith(BOM):
        lines[0] = lines[0][len(BOM):]
    return lines


def expected_texts(data: bytes, errors: str) -> tuple[list[tuple[int, str]], int | None]:
    """(line number, text) of every non-blank line before the first one strict decoding rejects, and that
    line's number (None if there is none, or with errors="replace")."""
    good = []
    for number, raw in enumerate(physical_lines(data), start=1):
        try:
            text = raw.decode("utf-8", errors=errors)
        except UnicodeDecodeError:
            return good, number
        if text.strip():
            good.append((number, text))
    return good, None


def assert_each_line_got_its_own_result(rows, good, reference, **source):
    """Each row is the API's result for its line, a cut line's mark (`truncated`, `tokens`) included."""
    assert [row["line"] for row in rows] == [number for number, _ in good]
    expected = reference([text for _, text in good]) if good else []
    for row, want in zip(rows, expected):
        cut = {key: want[key] for key in ("truncated", "tokens") if key in want}
        assert row == {**source, "line": row["line"], "label": want["label"],
                       "score": pytest.approx(want["score"], abs=1e-5), **cut}


def assert_one_line_error(stderr: str, starts_with: str):
    lines = stderr.splitlines()
    assert "Traceback" not in stderr
    assert 1 <= len(lines) <= 2, stderr  # the message, and perhaps its hint
    assert lines[0].startswith(f"squeeze: error: {starts_with}"), stderr
    if len(lines) == 2:
        assert lines[1].startswith("  hint: ")


# -- strategies ---------------------------------------------------------------------------------------

line_bytes = st.one_of(
    st.text(max_size=40).map(lambda text: text.encode("utf-8")),
    st.text(st.characters(max_codepoint=255), max_size=40).map(lambda text: text.encode("latin-1")),
    st.binary(max_size=40),
    st.sampled_from([b"", b" ", b"\t\x0b\x0c", b"\x00", b"\x00\x00 a \x00", BOM, b"\r", b"\xff\xfe", b"\xc3",
                     b"\xed\xa0\x80", "caf\u00e9".encode("latin-1"), "\u2028\u0085".encode("utf-8")]),
)
documents = st.builds(lambda lines, final_newline: b"\n".join(lines) + (b"\n" if final_newline else b""),
                      st.lists(line_bytes, max_size=12), st.booleans())

utf8_lines = st.text(max_size=60).map(lambda text: text.replace("\n", " ").replace("\r", " ").encode("utf-8"))
latin1_lines = st.text(st.characters(min_codepoint=0xA0, max_codepoint=0xFF), min_size=1, max_size=20).map(
    lambda text: text.encode("latin-1"))


# -- properties -----------------------------------------------------------------------------------------


@PROPERTY
@given(data=documents)
@example(data=b"\x00\n\x00a\x00\n" + b"\xff" * 3 + b"\n\n   \nok\r\n")
@example(data=BOM + b"first\r\n\xe9t\xe9\nlast")
def test_with_errors_replace_every_non_blank_line_gets_its_result(model_dir, reference, data):
    result = sentiment(model_dir, "--errors", "replace", input=data)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    good, _ = expected_texts(data, "replace")
    assert_each_line_got_its_own_result(rows_of(result.stdout), good, reference, file="-")


@PROPERTY
@given(data=documents)
@example(data=b"good one\n\nstill good\n\xe9t\xe9 latin-1\nnever reached\n")
def test_strict_decoding_stops_at_the_first_bad_line_after_the_good_ones(model_dir, reference, data):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "mixed.txt"
        path.write_bytes(data)
        result = sentiment(model_dir, str(path))
    good, bad_line = expected_texts(data, "strict")
    assert_each_line_got_its_own_result(rows_of(result.stdout), good, reference, file=str(path))
    if bad_line is None:
        assert result.exit_code == 0 and result.stderr == ""
    else:
        assert result.exit_code == ExitStatus.INPUT
        assert_one_line_error(result.stderr, f"{path}:{bad_line}: invalid UTF-8")


@PROPERTY
@given(lines=st.lists(st.one_of(utf8_lines, latin1_lines), min_size=1, max_size=10))
def test_latin1_lines_among_utf8_lines(model_dir, reference, lines):
    data = b"\n".join(lines) + b"\n"
    strict = sentiment(model_dir, input=data)
    good, bad_line = expected_texts(data, "strict")
    assert_each_line_got_its_own_result(rows_of(strict.stdout), good, reference, file="-")
    if bad_line is not None:
        assert strict.exit_code == ExitStatus.INPUT
        assert_one_line_error(strict.stderr, f"<stdin>:{bad_line}: invalid UTF-8")
    replaced = sentiment(model_dir, "--errors", "replace", input=data)
    assert replaced.exit_code == 0
    assert_each_line_got_its_own_result(rows_of(replaced.stdout), expected_texts(data, "replace")[0], reference,
                                        file="-")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
# Any string, lone surrogates included: JSON can spell them ("\ud800"), UTF-8 cannot.
any_text = st.text(st.characters(exclude_categories=()), max_size=30)
json_lines = st.one_of(
    st.builds(lambda text, extra: json.dumps({"text": text, **extra}), any_text,
              st.dictionaries(st.sampled_from(["id", "label", "line"]), json_values, max_size=2)),
    st.builds(lambda value: json.dumps({"text": value}), json_values),
    json_values.map(json.dumps),
    st.text(max_size=20).map(lambda text: text.replace("\n", " ")),  # not JSON at all, or blank
)


def jsonl_problem(line: str) -> str | None:
    """Why the reader must reject this non-blank line, as the start of its message; None if it is good."""
    def not_json(constant):  # Python's json reads NaN and Infinity; RFC 8259 has no such values
        raise ValueError(constant)

    def finite(literal):
        if abs(float(literal)) == float("inf"):
            raise ValueError(literal)  # 1e999: valid JSON, but no float holds it
        return float(literal)

    try:
        value = json.loads(line, parse_constant=not_json, parse_float=finite)
    except ValueError:
        return "not valid JSON"
    if not isinstance(value, dict):
        return "expected a JSON object"
    if "text" not in value:
        return 'no "text" field'
    if not isinstance(value["text"], str):
        return 'field "text" is'
    if any(0xD800 <= ord(char) <= 0xDFFF for char in value["text"]):
        return 'field "text" contains an unpaired surrogate'
    return None


@PROPERTY
@given(lines=st.lists(json_lines, min_size=1, max_size=8))
@example(lines=['{"text": "fine", "id": 1}', '{"text": 42}', '{"text": "unreached"}'])
@example(lines=['{"text": "ok"}', "[1, 2]", '{"text": "x"}'])
@example(lines=['{"text": "ok", "line": "mine", "label": 3}', '{"text": "\\ud800"}'])
@example(lines=['{"text": "", "id": "\\u0085"}', '{"text": "a\\u2028b", "id": "\\u2029"}'])  # raw in the output
def test_jsonl_of_the_wrong_types_is_a_one_line_error_after_the_good_lines(model_dir, reference, lines):
    result = sentiment(model_dir, "--jsonl", input="\n".join(lines) + "\n")
    good, extras, failure = [], [], None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        problem = jsonl_problem(line)
        if problem is not None:
            failure = (number, problem)
            break
        value = json.loads(line)
        good.append((number, value.pop("text")))
        extras.append(value)
    rows = rows_of(result.stdout)
    # A result field wins over an input field of the same name; other input fields are carried through.
    assert_each_line_got_its_own_result([{k: v for k, v in row.items() if k in ("file", "line", "label", "score")}
                                         for row in rows], good, reference, file="-")
    for row, extra in zip(rows, extras):
        assert {k: v for k, v in row.items() if k not in ("file", "line", "label", "score")} == {
            k: v for k, v in extra.items() if k not in ("file", "line", "label", "score")}
    if failure is None:
        assert result.exit_code == 0, result.stderr
    else:
        assert result.exit_code == ExitStatus.INPUT
        assert_one_line_error(result.stderr, f"<stdin>:{failure[0]}: {failure[1]}")


def test_nul_bytes_are_text_and_a_line_of_only_nul_still_gets_a_result(model_dir, reference):
    data = b"a\x00b\n\x00\n\x00\x00\x00\n"
    result = sentiment(model_dir, input=data)
    assert result.exit_code == 0, result.stderr
    assert_each_line_got_its_own_result(rows_of(result.stdout), expected_texts(data, "strict")[0], reference,
                                        file="-")


# -- real processes: hangs, memory, pipes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def blank_run(model_dir, tmp_path_factory):
    """100,000 blank lines, then one word: nothing to do for 100,000 lines. Also the baseline of time and
    memory (interpreter, torch, model) that the long-line run is measured against."""
    path = tmp_path_factory.mktemp("blank") / "blank.txt"
    path.write_bytes(b"\n" * 100_000 + b"  \t \r\n" * 3 + b"done\n")
    return run_measured(["sentiment", "--model", str(model_dir), "--precision", "fp32"], path, timeout=120)


def test_100000_blank_lines_are_skipped_and_counted(blank_run):
    status, stdout, stderr, _, _ = blank_run
    assert status == 0, stderr
    assert "Traceback" not in stderr
    assert [row["line"] for row in rows_of(stdout.decode())] == [100_004]


def test_a_10_mb_line_is_truncated_in_bounded_time_and_memory(model_dir, reference, blank_run, tmp_path):
    """One 10 MB line of words and one 2 MB word between two short lines: the long ones are cut to the
    model's 128 tokens, so their cost must not grow with their length beyond reading them."""
    words = b"good bad film plot actor the a wonderful terrible x ".split()
    ten_mb = b" ".join(words[i * 7 % len(words)] for i in range(2_000_000))[: 10 * 1024 * 1024]
    one_word = b"supercalifragilistic" * (2 * 1024 * 1024 // 20)
    path = tmp_path / "long.txt"
    path.write_bytes(b"before it\n" + ten_mb + b"\n" + one_word + b"\nafter it\n")
    status, stdout, stderr, peak, _ = run_measured(
        ["sentiment", "--model", str(model_dir), "--precision", "fp32"], path, timeout=180)
    assert status == 0, stderr
    assert "Traceback" not in stderr
    rows = rows_of(stdout.decode())
    # The first 128 tokens of each long line lie within its first 4 kB, so the API's result for that prefix
    # is the one truncation must give the whole line (without making this test tokenize 12 MB itself);
    # the cut line's whole length is its word count (each of these words is one token).
    good = [(1, "before it"), (2, ten_mb[:4096].decode()), (3, one_word[:4096].decode()), (4, "after it")]

    def whole_line(texts):  # the 4 kB prefix's result, with the whole line's length
        results = reference(texts)
        assert results[1]["truncated"] is True and "truncated" not in results[2]  # a giant word is one [UNK]
        return [{**results[0]}, {**results[1], "tokens": len(ten_mb.split())}, *results[2:]]

    assert_each_line_got_its_own_result(rows, good, whole_line, file="-")
    assert stderr.strip().splitlines()[-1].startswith("squeeze: 1 of 4 texts was longer than the 128-token window")

    _, _, _, baseline_peak, _ = blank_run
    input_size = path.stat().st_size
    # Holding the line, its decoded text and a copy or two is fine; tokenizing all 12 MB at once (hundreds of
    # bytes per token in the tokenizer), or counting it in pieces large enough to leave tens of MB in the
    # heap, is not: the model reads 128 tokens. (About 3.5 times the input on EPYC; docs/performance.md.)
    assert peak - baseline_peak < 6 * input_size, (
        f"peak RSS {peak / 2**20:.0f} MiB, {(peak - baseline_peak) / 2**20:.0f} MiB above the "
        f"{baseline_peak / 2**20:.0f} MiB of a run without long lines, for {input_size / 2**20:.0f} MiB of input")


def test_many_short_lines_stream_in_constant_memory(tmp_path):
    """40 MB of lines through the model-free echo-lines command (the same reader, windows and writer): the
    peak must not grow with the input, since only one window of records is held at a time."""
    line = b"lorem ipsum dolor sit amet " * 37 + b"\n"  # 1000 bytes
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_bytes(line * 100)
    large.write_bytes(line * 40_000)
    _, _, _, small_peak, _ = run_measured(["echo-lines"], small, timeout=60)
    status, stdout, stderr, large_peak, _ = run_measured(["echo-lines"], large, timeout=120)
    assert status == 0, stderr
    assert stdout.count(b"\n") == 40_000
    assert large_peak - small_peak < 16 * 2**20, f"{(large_peak - small_peak) / 2**20:.0f} MiB more for 40 MB"


def test_random_bytes_through_a_pipe(model_dir, reference, tmp_path):
    """A real pipe, written while squeeze reads it, with --errors replace: every line gets its result."""
    data = bytes((i * 7919 + (i >> 3) * 104729) % 256 for i in range(60_000))  # ~230 newlines, every byte value
    process = subprocess.Popen(
        [sys.executable, "-m", "squeezecli", "sentiment", "--model", str(model_dir), "--precision", "fp32",
         "--errors", "replace"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=squeeze_env(tmp_path))
    stdout, stderr = process.communicate(data, timeout=120)
    assert process.returncode == 0, stderr.decode(errors="replace")
    good, _ = expected_texts(data, "replace")
    cut = sum(1 for row in reference([text for _, text in good]) if row.get("truncated"))
    assert stderr.decode().splitlines() == ([f"squeeze: {cut} of {len(good)} texts were longer than the 128-token "
                                             f'window and cut to it (their JSON results say "truncated": true); '
                                             f"--chunk TOKENS reads all of each"]
                                            if cut else [])
    assert len(good) > 100
    assert_each_line_got_its_own_result(rows_of(stdout.decode()), good, reference, file="-")


def test_a_bad_line_on_a_stdin_that_stays_open_ends_the_run(model_dir, reference, tmp_path):
    """Like `tail -f log | squeeze`: the writer never closes the pipe. The error must still end the run at
    once, after the results of the lines before it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "squeezecli", "sentiment", "--model", str(model_dir), "--precision", "fp32"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=squeeze_env(tmp_path))
    try:
        process.stdin.write("fine words\nmore fine words\n".encode() + "d\u00e9j\u00e0 vu\n".encode("latin-1"))
        process.stdin.flush()
        status = process.wait(timeout=120)
        stdout, stderr = process.stdout.read(), process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
        process.stdin.close()
    assert status == ExitStatus.INPUT, stderr
    assert_one_line_error(stderr, "<stdin>:3: invalid UTF-8")
    assert_each_line_got_its_own_result(rows_of(stdout.decode()), [(1, "fine words"), (2, "more fine words")],
                                        reference, file="-")
