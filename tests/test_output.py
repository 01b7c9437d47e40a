"""Output side: rows -> JSON lines, CSV, TSV, Rich tables; one flush per batch; user text never markup."""

import csv
import io
import json
import sys

import pytest

from squeezecli.io.record import Record
from squeezecli.io.writers import DelimitedWriter, JsonLinesWriter, open_writer, row_for


class CountingStream(io.StringIO):
    def __init__(self):
        super().__init__()
        self.flushes = 0
        self.lines_at_flush: list[int] = []

    def flush(self):
        self.flushes += 1
        self.lines_at_flush.append(self.getvalue().count("\n"))
        super().flush()


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def stdout(capsys, monkeypatch):
    """What the writers print on stdout (a pipe, not a terminal), read with `stdout()`."""
    monkeypatch.setenv("COLUMNS", "80")
    return lambda: capsys.readouterr().out


def test_row_order_is_source_then_result_then_extras():
    record = Record("hi", {"file": "in.jsonl", "line": 4}, {"id": 9, "label": "from input", "line": 100})
    row = row_for(record, {"label": "POSITIVE", "score": 0.9})
    assert list(row) == ["file", "line", "label", "score", "id"]
    # Carried fields never overwrite the source or the result.
    assert row == {"file": "in.jsonl", "line": 4, "label": "POSITIVE", "score": 0.9, "id": 9}


def test_jsonl_one_compact_object_per_row_and_one_flush_per_batch():
    out = CountingStream()
    writer = JsonLinesWriter(out)
    writer.write_batch([{"file": "-", "line": 1, "text": "naïve 東京", "spans": [{"label": "LOC"}]}, {"text": "b"}])
    writer.write_batch([{"text": "c"}])
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"file": "-", "line": 1, "text": "naïve 東京", "spans": [{"label": "LOC"}]},
        {"text": "b"},
        {"text": "c"},
    ]
    assert "naïve 東京" in lines[0]  # not \u-escaped
    assert out.lines_at_flush == [2, 3]


def test_jsonl_text_the_stream_cannot_encode_is_escaped_not_lost():
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    JsonLinesWriter(out).write_batch([{"text": "ok é"}, {"text": "lone \ud800"}])
    first, second = raw.getvalue().decode("utf-8").splitlines()
    assert json.loads(first) == {"text": "ok é"}
    assert json.loads(second) == {"text": "lone \ud800"}


@pytest.mark.parametrize(("delimiter", "dialect"), [(",", "excel"), ("\t", "excel-tab")])
def test_delimited_header_once_nested_values_as_json(delimiter, dialect):
    out = CountingStream()
    writer = DelimitedWriter(out, delimiter)
    writer.write_batch([
        {"file": "a.txt", "line": 1, "text": 'comma, "quote"\tand tab', "spans": [{"start": 0}], "ok": True},
        {"file": "a.txt", "line": 2, "text": "second", "spans": [], "ok": False},
    ])
    writer.write_batch([{"file": "a.txt", "line": 3, "text": "third", "unexpected": 1}])
    writer.write_batch([])
    rows = list(csv.reader(io.StringIO(out.getvalue()), dialect=dialect))
    assert rows == [
        ["file", "line", "text", "spans", "ok"],
        ["a.txt", "1", 'comma, "quote"\tand tab', '[{"start": 0}]', "true"],
        ["a.txt", "2", "second", "[]", "false"],
        ["a.txt", "3", "third", "", ""],
    ]
    assert out.lines_at_flush == [3, 4]
    assert "\r" not in out.getvalue()


def test_auto_is_jsonl_in_a_pipe(stdout):
    open_writer("auto").write_batch([{"text": "[PER] x"}])
    assert json.loads(stdout()) == {"text": "[PER] x"}


def test_auto_is_a_table_on_a_terminal(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    open_writer("auto").write_batch([{"text": "hello", "score": 0.5}])
    assert "hello" in terminal.getvalue()
    assert "0.5000" in terminal.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(terminal.getvalue())


def test_table_prints_user_text_literally(stdout):
    texts = ["[PER] Ada met [LOC] London", "[bold]x[/bold]", "[link=http://e.com]y[/link] :smile:"]
    open_writer("table").write_batch([{"text": t, "n": i} for i, t in enumerate(texts)])
    printed = stdout()
    for text in texts:
        assert text in printed
    assert "\x1b" not in printed


def test_table_header_once_columns_line_up_and_long_text_is_cut(stdout):
    writer = open_writer("table", columns=["label", "text", "score"])
    long_text = "word " * 100
    writer.write_batch([{"label": "POSITIVE", "text": "short", "score": 0.25, "hidden": "not shown"}])
    writer.write_batch([{"label": "NEGATIVE", "text": long_text, "score": 0.75}])
    printed = stdout()
    lines = [line for line in printed.splitlines() if line.strip()]
    assert sum("label" in line for line in lines) == 1, printed
    assert "hidden" not in printed and "not shown" not in printed
    first_row, second_row = [line for line in lines if "POSITIVE" in line or "NEGATIVE" in line]
    assert first_row.index("short") == second_row.index("word")
    assert first_row.index("0.2500") == second_row.index("0.7500")
    assert "…" in second_row
    assert all(len(line) <= 80 for line in lines)


def test_table_keeps_each_record_on_one_row(stdout):
    open_writer("table").write_batch([{"text": "a document\nwith\tlines", "n": 1}])
    assert "a document with lines" in stdout()


def test_empty_input_prints_nothing(stdout):
    for fmt in ("jsonl", "csv", "tsv", "table"):
        open_writer(fmt).write_batch([])
    assert stdout() == ""


ROWS = [{"file": "reviews.txt", "line": 1, "label": "NEGATIVE", "score": 0.9731,
         "text": "The plot made no sense and the ending dragged on for what felt like hours, " * 3},
        {"file": "reviews.txt", "line": 12, "label": "POSITIVE", "score": 0.5012, "text": "Fine."}]


@pytest.mark.parametrize("width", [80, 200])
def test_table_widths_come_from_the_content_and_text_takes_the_rest(monkeypatch, width):
    """At 80 and 200 columns: labels, numbers and file names as wide as their widest value (and header),
    the text column everything else, cut with an ellipsis; rows exactly the terminal's width."""
    monkeypatch.setenv("COLUMNS", str(width))
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    open_writer("table", columns=["file", "line", "label", "score", "text"], color=False).write_batch(ROWS)
    import re

    header, rule, first, second = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue()).splitlines()
    assert header.split() == ["file", "line", "label", "score", "text"]
    # Each narrow column is its widest cell, or the room left for later batches' wider ones (file names
    # 16, line numbers 6, labels 10), plus the 3-space gap; "0.9731" is 6.
    assert header.index("line") == 16 + 3 and header.index("label") == 19 + 6 + 3
    assert header.index("score") == 28 + 10 + 3 and header.index("text") == 41 + 6 + 3
    assert len(first.rstrip()) == width == len(rule) and first.rstrip().endswith("…")
    assert second.split() == ["reviews.txt", "12", "POSITIVE", "0.5012", "Fine."]


@pytest.mark.parametrize("files, expected", [(["reviews.txt"], 11), (["a.txt", "reviews.txt", "b.txt"], 11),
                                             (["x"], 4), (["-"], 4), (["d/" * 30 + "long.txt"], 32)])
def test_a_file_column_is_as_wide_as_the_input_names_when_they_are_known(monkeypatch, files, expected):
    """Given the inputs' names, the file column is the widest of them (and the header), at most 32: no
    room kept for later batches, whose names are among them; a longer path is shown by its end."""
    monkeypatch.setenv("COLUMNS", "80")
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    rows = [{**row, "file": files[-1]} for row in ROWS]
    open_writer("table", columns=["file", "label", "text"], color=False, files=files).write_batch(rows)
    import re

    header, _, first, _ = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue()).splitlines()
    assert header.index("label") == expected + 3
    assert first.startswith(files[-1] if len(files[-1]) <= 32 else "…" + files[-1][-31:])


def test_table_colours_labels_and_scores_unless_told_not_to(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    shown = {}
    for case, color, no_color_env in [("colour", True, False), ("--no-color", False, False), ("NO_COLOR", True, True)]:
        if no_color_env:
            monkeypatch.setenv("NO_COLOR", "1")
        terminal = FakeTerminal()
        monkeypatch.setattr(sys, "stdout", terminal)
        open_writer("table", columns=["label", "score", "text"], color=color).write_batch(ROWS)
        shown[case] = terminal.getvalue()
    assert "\x1b[1mNEGATIVE" in shown["colour"] and "\x1b[32m0.9731" in shown["colour"]  # bold; green from 0.8
    assert "\x1b[33m0.5012" in shown["colour"]  # yellow from 0.5
    for plain in ("--no-color", "NO_COLOR"):  # no colour (bold is not one)
        assert "NEGATIVE" in shown[plain] and not any(f"\x1b[3{n}m" in shown[plain] for n in range(8))


def test_a_table_of_several_inputs_says_which_file_and_line_each_row_is(tmp_path, monkeypatch):
    import dataclasses

    from squeezecli.environment import Environment
    from squeezecli.io.pipeline import InputOptions, OutputOptions, run_pipeline

    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("alpha\n")
    two.write_text("beta\n\ngamma\n")
    monkeypatch.setenv("COLUMNS", "100")
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    env = dataclasses.replace(Environment.from_os(), stdout=terminal, stdout_is_terminal=True, stdout_is_pipe=False)

    def run(files):
        terminal.seek(0)
        terminal.truncate()
        run_pipeline(InputOptions(tuple(map(str, files)), "line", None, "strict"), OutputOptions("auto", True, color=False),
                     batch_size=4, length_of=lambda r: 1, process_batch=lambda rs: [{"n": len(r.text)} for r in rs],
                     columns=["n", "text"], env=env)
        import re

        return [line.split() for line in re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue()).splitlines()]

    assert run([one])[0] == ["n", "text"]  # one source: no file column
    rows = run([one, two])
    assert rows[0] == ["file", "line", "n", "text"]
    shown = [row[0] for row in rows[2:]]  # long paths by their end, so the file's name shows
    assert all(len(path) <= 32 and path.startswith("…") and str(tmp_path).endswith(path[1:].rsplit("/", 1)[0])
               for path in shown)
    assert [(p.rsplit("/", 1)[1], *rest) for p, *rest in rows[2:]] == [
        ("one.txt", "1", "5", "alpha"), ("two.txt", "1", "4", "beta"), ("two.txt", "3", "5", "gamma")]


def test_left_cut_keeps_the_end_that_fits_in_cells():
    from rich.cells import cell_len

    from squeezecli.io.writers import left_cut

    assert left_cut("short.txt", 32) == "short.txt"
    long = "/data/" + "x" * 40 + "/reviews.txt"
    assert left_cut(long, 20) == "…" + long[-19:]
    wide = "/データ/東京/レビュー.txt"  # two cells a character
    cut = left_cut(wide, 12)
    assert cut.startswith("…") and wide.endswith(cut[1:]) and cell_len(cut) <= 12 and cell_len(cut) >= 11
