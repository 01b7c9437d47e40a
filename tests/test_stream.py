"""Input side: files/stdin -> records (line numbers, JSONL, documents, decoding errors) -> ordered batches."""

import dataclasses
import io
import json
import itertools
import os
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from squeezecli.errors import ExitStatus, InputError
from squeezecli.io.batches import batched, run_bucketed
from squeezecli.io.progress import progress_for, total_bytes
from squeezecli.io.record import Record
from squeezecli.io.records import read_records


def write(tmp_path, name, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def set_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


# --- lines -------------------------------------------------------------------------------------------


def test_blank_lines_are_skipped_but_keep_their_line_numbers(tmp_path):
    path = write(tmp_path, "a.txt", b"first\n\n   \nsecond\r\n\nthird")
    records = list(read_records([path]))
    assert [r.text for r in records] == ["first", "second", "third"]
    assert [r.source for r in records] == [{"file": path, "line": n} for n in (1, 4, 6)]
    assert all(r.extra == {} for r in records)


def test_only_the_line_ending_is_stripped(tmp_path):
    path = write(tmp_path, "a.txt", b"  indented\tand tabbed  \r\ncr\rinside\n")
    assert [r.text for r in read_records([path])] == ["  indented\tand tabbed  ", "cr\rinside"]


def test_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    path = write(tmp_path, "bom.txt", b"\xef\xbb\xbfhello\n\xef\xbb\xbfsecond keeps it\n")
    assert [r.text for r in read_records([path])] == ["hello", "\ufeffsecond keeps it"]


def test_nul_bytes_are_text(tmp_path):
    path = write(tmp_path, "nul.txt", b"a\x00b\n")
    assert [r.text for r in read_records([path])] == ["a\x00b"]


def test_files_are_read_in_order_and_named_in_sources(tmp_path):
    one = write(tmp_path, "one.txt", b"a\nb\n")
    two = write(tmp_path, "two.txt", b"c\n")
    records = list(read_records([one, two]))
    assert [(r.source["file"], r.source["line"], r.text) for r in records] == [(one, 1, "a"), (one, 2, "b"), (two, 1, "c")]


def test_dash_and_no_paths_read_stdin(tmp_path, monkeypatch):
    set_stdin(monkeypatch, "héllo\n\nwörld\n".encode())
    records = list(read_records(["-"]))
    assert [(r.text, r.source) for r in records] == [
        ("héllo", {"file": "-", "line": 1}),
        ("wörld", {"file": "-", "line": 3}),
    ]
    set_stdin(monkeypatch, b"x\n")
    assert [r.source for r in read_records([])] == [{"file": "-", "line": 1}]


def test_stdin_between_files(tmp_path, monkeypatch):
    path = write(tmp_path, "f.txt", b"file\n")
    set_stdin(monkeypatch, b"stdin\n")
    assert [r.text for r in read_records([path, "-", path])] == ["file", "stdin", "file"]


def test_a_line_is_yielded_before_the_next_one_arrives(monkeypatch):
    """`tail -f log | squeeze ...`: a complete line is processed without waiting for more input."""
    read_end, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(os.fdopen(read_end, "rb")))
    os.write(write_end, b"first\nsec")
    records = read_records(["-"])
    got: list[Record] = []
    reader = threading.Thread(target=lambda: got.append(next(records)))
    reader.start()
    reader.join(timeout=10)
    try:
        assert not reader.is_alive(), "the reader waited for more input than one line"
        assert got[0].text == "first"
    finally:
        os.write(write_end, b"ond\n")
        os.close(write_end)
        reader.join()
    assert [r.text for r in records] == ["second"]
    sys.stdin.close()


def test_on_read_reports_every_byte(tmp_path):
    data = b"one\n\nthree\r\nlast without newline"
    path = write(tmp_path, "a.txt", data)
    seen: list[int] = []
    list(read_records([path], on_read=seen.append))
    assert sum(seen) == len(data)
    assert len(seen) == 4  # one call per physical line, blank ones included


# --- decoding ----------------------------------------------------------------------------------------


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = write(tmp_path, "latin1.txt", "ok\n\ncafé\n".encode("latin-1"))
    records = read_records([path])
    assert next(records).text == "ok"  # the error comes when the bad line is reached, not before
    with pytest.raises(InputError) as caught:
        next(records)
    assert f"{path}:3:" in caught.value.message
    assert "0xe9" in caught.value.message
    assert "--errors replace" in caught.value.hint
    assert caught.value.status == ExitStatus.INPUT


def test_invalid_utf8_on_stdin_is_named_stdin(monkeypatch):
    set_stdin(monkeypatch, b"\xff\n")
    with pytest.raises(InputError, match="<stdin>:1:"):
        list(read_records(["-"]))


def test_errors_replace_substitutes_replacement_character(tmp_path):
    path = write(tmp_path, "latin1.txt", "café\n".encode("latin-1"))
    assert [r.text for r in read_records([path], errors="replace")] == ["caf\ufffd"]


# --- paths -------------------------------------------------------------------------------------------


def test_missing_file_fails_before_any_file_is_read(tmp_path, monkeypatch):
    good = write(tmp_path, "good.txt", b"a\n")
    missing = str(tmp_path / "typo.txt")
    # read_records itself raises, before a single record is pulled from the good files.
    with pytest.raises(InputError) as caught:
        read_records([good, good, missing])
    assert caught.value.message == f"{missing}: no such file"
    assert caught.value.status == ExitStatus.INPUT


def test_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        read_records([str(tmp_path)])


def test_unreadable_file_is_an_input_error(tmp_path, monkeypatch):
    path = write(tmp_path, "secret.txt", b"a\n")
    # chmod 0 does not stop root (tests may run as root), so access() is told to refuse.
    monkeypatch.setattr(os, "access", lambda p, mode: p != path)
    with pytest.raises(InputError, match="secret.txt: permission denied"):
        read_records([path])


# --- JSON lines --------------------------------------------------------------------------------------


def test_jsonl_takes_the_text_field_and_carries_the_others(tmp_path):
    path = write(tmp_path, "in.jsonl", b'{"id": 7, "text": "hello", "meta": {"a": [1]}}\n\n{"text": "bye"}\n')
    records = list(read_records([path], unit="jsonl"))
    assert [(r.text, r.source, r.extra) for r in records] == [
        ("hello", {"file": path, "line": 1}, {"id": 7, "meta": {"a": [1]}}),
        ("bye", {"file": path, "line": 3}, {}),
    ]


def test_jsonl_field_option(tmp_path):
    path = write(tmp_path, "in.jsonl", '{"body": "straße", "text": 3}\n'.encode())
    [record] = read_records([path], unit="jsonl", field="body")
    assert record.text == "straße"
    assert record.extra == {"text": 3}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"text": "unterminated}', "not valid JSON"),
        (b'["text"]', "expected a JSON object, got an array"),
        (b'{"body": "x"}', 'no "text" field'),
        (b'{"text": 12}', 'field "text" is a number, not a string'),
        (b'{"text": null}', 'field "text" is null, not a string'),
        (b'{"text": ["a"]}', 'field "text" is an array, not a string'),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_bad_json_line_names_file_and_line(tmp_path, line, expected):
    path = write(tmp_path, "in.jsonl", b'{"text": "fine"}\n\n' + line + b"\n")
    records = read_records([path], unit="jsonl")
    assert next(records).text == "fine"
    with pytest.raises(InputError) as caught:
        next(records)
    assert caught.value.message.startswith(f"{path}:3: ")
    assert expected in caught.value.message


def test_jsonl_lone_surrogate_is_a_decoding_error(tmp_path):
    path = write(tmp_path, "in.jsonl", b'{"text": "a\\ud800b"}\n')
    with pytest.raises(InputError, match="1: .*surrogate"):
        list(read_records([path], unit="jsonl"))
    [record] = read_records([path], unit="jsonl", errors="replace")
    assert record.text == "a\ufffdb"


# --- CSV and TSV -------------------------------------------------------------------------------------


def test_csv_rows_take_the_text_column_carry_the_others_and_start_where_they_start(tmp_path):
    data = ('\ufeffid,text,channel\r\n'
            '1,"Crashes on login, every time.",email\r\n'
            '\r\n'
            '2,"Love it!\nSecond line, ""quoted"".",chat\r\n'
            '3,,chat\r\n'
            '4,plain,\r\n').encode()
    path = write(tmp_path, "in.csv", data)
    records = list(read_records([path], unit="csv"))
    assert [(r.text, r.source, r.extra) for r in records] == [
        ("Crashes on login, every time.", {"file": path, "line": 2}, {"id": "1", "channel": "email"}),
        ('Love it!\nSecond line, "quoted".', {"file": path, "line": 4}, {"id": "2", "channel": "chat"}),
        ("", {"file": path, "line": 6}, {"id": "3", "channel": "chat"}),
        ("plain", {"file": path, "line": 7}, {"id": "4", "channel": ""}),
    ]


def test_tsv_and_the_field_option(tmp_path):
    path = write(tmp_path, "in.tsv", "body\ttext\nstraße, with a comma\t7\n".encode())
    [record] = read_records([path], unit="tsv", field="body")
    assert (record.text, record.extra) == ("straße, with a comma", {"text": "7"})


@pytest.mark.parametrize(("data", "where", "expected"), [
    (b'id,text\n1,fine\n2,"never closed\n3,x\n', 3, "not valid CSV (a quoted field is not closed)"),
    (b'id,text\n1,fine\n2,x,y\n', 3, "3 fields where the header has 2"),
    (b'id,body\n1,x\n', 1, 'no "text" column (the header has: id, body)'),
    (b'text,text\n1,x\n', 1, "the header names the column 'text' more than once"),
    (b'id,text\n1,fine\n2,caf\xe9\n', 3, "invalid UTF-8 (byte 0xe9 at byte 6 of the line)"),
    (b'id,text\n1,"a"b\n', 2, "not valid CSV"),
])
def test_bad_csv_names_file_and_line(tmp_path, data, where, expected):
    path = write(tmp_path, "in.csv", data)
    with pytest.raises(InputError) as caught:
        list(read_records([path], unit="csv"))
    assert caught.value.message.startswith(f"{path}:{where}: {expected}"), caught.value.message


def test_a_csv_field_may_be_long_but_not_endless(tmp_path):
    long = "word " * 100_000  # 500 kB, beyond the csv module's default field limit
    path = write(tmp_path, "in.csv", f'text\n"{long}"\n'.encode())
    [record] = read_records([path], unit="csv")
    assert record.text == long
    endless = write(tmp_path, "endless.csv", b'text\n"' + b"x\n" * (9 << 20))  # 18 MB in one open quote
    with pytest.raises(InputError, match=r"endless.csv:2: not valid CSV"):
        list(read_records([endless], unit="csv"))


# --- Parquet -----------------------------------------------------------------------------------------


def write_parquet(tmp_path, name, columns: dict, row_group_size: int | None = None) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / name)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def test_parquet_rows_take_the_text_column_and_carry_the_others_as_json_values(tmp_path):
    import datetime

    texts = [f"text number {i}" for i in range(2500)]
    texts[3], texts[4] = None, "  "  # a null and a blank text are skipped, their rows still counted
    when = datetime.datetime(2026, 12, 1, 20, 0)
    path = write_parquet(tmp_path, "in.parquet", {
        "id": list(range(2500)), "body": texts, "score": [0.5] * 2499 + [float("nan")],
        "tags": [["a", "b"]] * 2500, "at": [when] * 2500,
    }, row_group_size=1000)  # several row groups, and batches across them
    records = list(read_records([path], unit="parquet", field="body"))
    assert len(records) == 2498
    assert [(r.source["row"], r.text) for r in records[:4]] == [(1, "text number 0"), (2, "text number 1"),
                                                               (3, "text number 2"), (6, "text number 5")]
    assert records[0].source == {"file": path, "row": 1}
    assert records[0].extra == {"id": 0, "score": 0.5, "tags": ["a", "b"], "at": "2026-12-01T20:00:00"}
    assert records[-1].extra["score"] == "nan" and records[-1].source["row"] == 2500


def test_parquet_from_stdin(tmp_path, monkeypatch):
    path = write_parquet(tmp_path, "in.parquet", {"text": ["one", "two"]})
    with open(path, "rb") as stream:
        set_stdin(monkeypatch, stream.read())
    assert [r.text for r in read_records([], unit="parquet")] == ["one", "two"]


@pytest.mark.parametrize(("columns", "expected"), [
    ({"body": ["x"]}, 'no "text" column (the header has: body)'),
    ({"text": [1, 2]}, 'the "text" column holds int64, not text'),
])
def test_bad_parquet_columns_are_one_line_errors(tmp_path, columns, expected):
    path = write_parquet(tmp_path, "in.parquet", columns)
    with pytest.raises(InputError) as caught:
        list(read_records([path], unit="parquet"))
    assert caught.value.message == f"{path}: {expected}" and caught.value.status == ExitStatus.INPUT


def test_a_file_that_is_not_parquet_and_parquet_without_pyarrow(tmp_path, monkeypatch):
    path = write(tmp_path, "in.parquet", b"text\nnot parquet at all\n")
    with pytest.raises(InputError, match=r"in.parquet: not a Parquet file \("):
        list(read_records([path], unit="parquet"))
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match="reading Parquet needs pyarrow") as caught:
        list(read_records([path], unit="parquet"))
    assert "squeezecli[parquet]" in caught.value.hint


# --- documents ---------------------------------------------------------------------------------------


def test_doc_mode_reads_each_file_as_one_record(tmp_path, monkeypatch):
    one = write(tmp_path, "one.txt", b"Paris is the capital.\n\nIt is in France.\n")
    empty = write(tmp_path, "empty.txt", b"\n  \n")
    set_stdin(monkeypatch, b"from stdin\n")
    records = list(read_records([one, empty, "-"], unit="doc"))
    assert [(r.text, r.source) for r in records] == [
        ("Paris is the capital.\n\nIt is in France.\n", {"file": one}),
        ("from stdin\n", {"file": "-"}),
    ]


def test_doc_mode_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "doc.txt", b"line one\nline two\nbad \xff here\n")
    with pytest.raises(InputError, match=r"doc\.txt:3: invalid UTF-8 \(byte 0xff at byte 5"):
        list(read_records([path], unit="doc"))
    [record] = read_records([path], unit="doc", errors="replace")
    assert "bad \ufffd here" in record.text


# --- batching ----------------------------------------------------------------------------------------


def test_batched_pulls_only_what_each_batch_needs():
    pulled = []
    source = (pulled.append(i) or i for i in itertools.count())
    batches = batched(source, 3)
    assert next(batches) == [0, 1, 2]
    assert pulled == [0, 1, 2]
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []


def lengths_of_batches(texts, batch_size, window):
    seen_batches = []

    def process(batch):
        seen_batches.append([len(t) for t in batch])
        return [t.upper() for t in batch]

    pairs = list(run_bucketed(texts, len, batch_size, window, process))
    return pairs, seen_batches


def test_run_bucketed_sorts_within_a_window_and_restores_input_order():
    texts = ["ccc", "a", "bbbbb", "dd", "e", "ffff", "gg"]
    pairs, batches = lengths_of_batches(texts, batch_size=2, window=4)
    assert pairs == [(t, t.upper()) for t in texts]
    # window 1: lengths 3,1,5,2 -> batches 1,2 | 3,5, run from the one holding the first record ("ccc");
    # window 2: 1,4,2 -> 1,2 | 4
    assert batches == [[3, 5], [1, 2], [1, 2], [4]]


def test_the_first_result_of_20000_lines_is_written_before_the_second_batch_starts(tmp_path):
    """Per-batch streaming: the first line's batch runs first and its results are written (and flushed)
    at once, whatever the window's length order; every later batch too, each before the next starts."""
    from squeezecli.environment import Environment
    from squeezecli.io.pipeline import InputOptions, OutputOptions, run_pipeline

    lines = [("word " * (1 + (i * 7919) % 50)).strip() for i in range(20_000)]  # lengths in no order
    path = write(tmp_path, "big.txt", ("\n".join(lines) + "\n").encode())
    out = io.StringIO()
    env = dataclasses.replace(Environment.from_os(), stdin=None, stdout=out, stdout_is_terminal=False,
                              stderr_is_terminal=False, stdout_is_pipe=True)
    written_before = []

    def process_batch(records):
        written_before.append(out.getvalue().count("\n"))
        return [{"n": len(record.text)} for record in records]

    run_pipeline(InputOptions((path,), "line", None, "strict"), OutputOptions("jsonl", True), batch_size=32,
                 length_of=lambda record: len(record.text), process_batch=process_batch, env=env)
    assert written_before[0] == 0 and written_before[1] >= 1  # line 1's result was out before batch 2
    assert all(later >= earlier for earlier, later in zip(written_before, written_before[1:]))
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["line"] for row in rows] == list(range(1, 20_001))
    assert [row["n"] for row in rows] == [len(line) for line in lines]


@given(
    texts=st.lists(st.text(max_size=12), max_size=60),
    batch_size=st.integers(1, 8),
    extra_window=st.integers(0, 20),
)
def test_run_bucketed_pairs_every_record_with_its_own_result(texts, batch_size, extra_window):
    window = batch_size + extra_window
    pairs, batches = lengths_of_batches(texts, batch_size, window)
    assert pairs == [(t, t.upper()) for t in texts]
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert all(b == sorted(b) for b in batches)


def test_run_bucketed_streams_window_by_window():
    """The first results come out before the second window is read, even from an endless input: after the
    one batch that holds the first record."""
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield i

    processed = []

    def process(batch):
        processed.extend(batch)
        return [-x for x in batch]

    pairs = run_bucketed(endless(), lambda x: -x, batch_size=2, window=6, process_batch=process)
    assert next(pairs) == (0, 0)
    assert pulled == list(range(6))
    assert sorted(processed) == [0, 1]  # longest first (length -x): batches 5,4 | 3,2 | 1,0; 0's ran first
    assert list(itertools.islice(pairs, 6)) == [(i, -i) for i in range(1, 7)]
    assert pulled == list(range(12))


def test_run_bucketed_rejects_a_wrong_number_of_results():
    with pytest.raises(ValueError, match="2 results for 3 records"):
        list(run_bucketed(["a", "b", "c"], len, 3, 3, lambda batch: batch[:2]))


# --- progress ----------------------------------------------------------------------------------------


def test_total_bytes_only_for_regular_files(tmp_path):
    one = write(tmp_path, "one.txt", b"12345")
    two = write(tmp_path, "two.txt", b"123")
    assert total_bytes([one, two]) == 8
    assert total_bytes([one, "-"]) is None
    assert total_bytes(["/dev/null"]) is None


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(
    ("quiet", "stderr_is_terminal", "stdout_is_terminal"),
    [(True, True, False), (False, False, False), (False, True, True)],
)
def test_no_progress_when_quiet_or_stderr_is_not_a_terminal_or_results_go_to_it(
    tmp_path, monkeypatch, quiet, stderr_is_terminal, stdout_is_terminal
):
    path = write(tmp_path, "a.txt", b"a\n")
    stderr = FakeTerminal() if stderr_is_terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(sys, "stdout", FakeTerminal() if stdout_is_terminal else io.StringIO())
    with progress_for([path], quiet=quiet) as progress:
        list(read_records([path], on_read=progress.read))
    assert stderr.getvalue() == ""


def test_no_progress_when_results_go_into_a_pipe(tmp_path, monkeypatch):
    """`squeeze sentiment big.txt | head` on a terminal: head prints there too, so a bar would cut into it."""
    path = write(tmp_path, "a.txt", b"a\n")
    stderr = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    read_end, write_end = os.pipe()
    with open(read_end, "rb"), open(write_end, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        with progress_for([path], quiet=False) as progress:
            list(read_records([path], on_read=progress.read))
    assert stderr.getvalue() == ""


@pytest.mark.parametrize(("use_stdin", "expected"), [(False, "1,000/1,000 records"), (True, "1,000 records")])
def test_progress_counts_records_done_of_the_total_known_up_front(tmp_path, monkeypatch, use_stdin, expected):
    data = b"x" * 999 + b"\n"
    path = write(tmp_path, "big.txt", data * 500 + b"\n\n" + data * 500)  # blank lines are not records
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    set_stdin(monkeypatch, data * 1000)
    paths = ["-"] if use_stdin else [path]
    with (tmp_path / "results.jsonl").open("w") as results:  # results go to a file
        monkeypatch.setattr(sys, "stdout", results)
        with progress_for(paths, quiet=False) as progress:
            records = list(read_records(paths, on_read=progress.read))
            for _ in records:
                progress.done(1)
    assert len(records) == 1000
    assert expected in terminal.getvalue()


def test_records_are_counted_up_front_only_where_that_is_cheap_and_exact(tmp_path):
    from squeezecli.io.progress import count_records

    lines = write(tmp_path, "a.txt", b"one\n\n  \ntwo\n")
    assert count_records([lines, lines], "line") == 4 and count_records([lines], "jsonl") == 2
    assert count_records([lines, lines], "doc") == 2
    assert count_records([lines], "csv") is None and count_records(["-"], "line") is None  # rows span lines; a pipe


def test_live_windows_hold_what_has_arrived():
    """A slow producer (tail -f) gets a result per record without waiting for a full window."""
    gate = threading.Event()

    def slow():
        yield "first"
        gate.wait(5)
        yield "second"

    pairs = run_bucketed(slow(), len, batch_size=4, window=8, process_batch=lambda b: [t.upper() for t in b], live=True)
    assert next(pairs) == ("first", "FIRST")  # would block for ever if the window waited for 8 records
    gate.set()
    assert list(pairs) == [("second", "SECOND")]


def test_live_windows_fill_from_a_fast_source_and_keep_order():
    texts = [str(i) * (i % 7 + 1) for i in range(1000)]
    sizes = []

    def process(batch):
        sizes.append(len(batch))
        return [t[::-1] for t in batch]

    pairs = list(run_bucketed(iter(texts), len, batch_size=10, window=50, process_batch=process, live=True))
    assert pairs == [(t, t[::-1]) for t in texts]
    assert max(sizes) == 10


def test_live_read_error_comes_after_the_records_before_it():
    def broken():
        yield "good"
        yield "also good"
        raise InputError("bad UTF-8 at line 3")

    got = []
    with pytest.raises(InputError, match="line 3"):
        for pair in run_bucketed(broken(), len, batch_size=2, window=4, process_batch=lambda b: b, live=True):
            got.append(pair[0])
    assert got == ["good", "also good"]
