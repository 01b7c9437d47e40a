"""squeeze tasks as a Ray Data batch-inference step, and the run behind `squeeze run-distributed`.

As a step in your own Ray Data pipeline (any dataset with a "text" column; other columns pass through):

    import ray
    from squeezecli.integrations.raydata import BatchInference

    ds = ray.data.read_text("reviews/")
    ds = ds.map_batches(BatchInference, fn_constructor_kwargs={"task": "sentiment"}, batch_size=256,
                        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=4))

Each actor loads the model once (`squeezecli.load`: the cached int8 entry, pulled and quantized once per
node on first use) and runs every batch through the CLI's own `Pipeline`, which sorts the batch by length
and cuts it into model batches, as the CLI does with each window of its input.

`run` is the command's side: the driver reads the input files (so they need not exist on the workers'
machines), the cluster runs the model, and the driver writes the rows, in input order, to one file in the
output directory. This module imports Ray and pyarrow at module level: only the command's run and Ray
workers import it, never the CLI at start-up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from ..environment import Environment
from ..errors import InputError, NetworkError, SqueezeError
from ..io import outfile
from ..io.batches import batched
from ..io.record import Record
from ..io.writers import row_for, to_json

OutputFormat = Literal["jsonl", "parquet"]

LOOPBACK = "127.0.0.1"
RESULTS = "results"  # the output file's name, before its .jsonl or .parquet suffix

# The columns `records_dataset` makes: where each record came from, its text, and (JSON lines input) the
# record's other fields as one JSON object, so that any mix of JSON types survives Arrow's typed columns.
SOURCE_COLUMNS = ("file", "line")
FIELDS_COLUMN = "fields"
_INPUT_SCHEMA = pa.schema([("file", pa.string()), ("line", pa.int64()), ("text", pa.string()),
                          (FIELDS_COLUMN, pa.string())])


class BatchInference:
    """A squeeze task as a callable class for `Dataset.map_batches`: one model per actor, loaded once.

    `task` and `model` are `squeezecli.load`'s, as are `load_options` (precision, batch_size, top_k,
    labels, questions, ...). A batch (pyarrow or numpy format) must have `text_column`; the output has
    every other input column, then the task's result fields (label, score, embedding, entities, ...) as
    columns, which replace an input column of the same name, as a result field does in the CLI's rows.
    """

    def __init__(self, task: str, model: str | None = None, *, text_column: str = "text",
                 **load_options: Any) -> None:
        from ..api import load

        self.text_column = text_column
        self.error: SqueezeError | None = None
        try:
            self.pipeline = load(task, model, **load_options)
        except SqueezeError as error:
            # Ray reports an actor whose constructor failed as text only. Raised from the first batch, the
            # error reaches the driver as itself (see `run`) and the CLI reports it in one line.
            self.error = error

    def __call__(self, batch: pa.Table | Mapping[str, Any]) -> pa.Table:
        if self.error is not None:
            raise self.error
        if isinstance(batch, pa.Table):
            texts = batch.column(self.text_column).to_pylist()
            columns: dict[str, Any] = {name: batch.column(name) for name in batch.column_names}
        else:
            texts = [str(text) for text in batch[self.text_column]]
            columns = dict(batch)
        del columns[self.text_column]
        results = self.pipeline(texts)
        for name in _field_names(results):
            columns[name] = pa.array([result.get(name) for result in results])
        return pa.table(columns)


@contextlib.contextmanager
def connected(address: str | None, *, quiet: bool = False, verbose: bool = False) -> Iterator[None]:
    """Connected to a Ray cluster for the duration.

    `address` None starts a local cluster for the run, on loopback only, with a CPU per core, and stops it
    afterwards; "auto" joins the cluster running on this machine (`ray start`, or RAY_ADDRESS); anything
    else is the address of one to join. A connection this process already has (a notebook, the tests) is
    used as it is and left open.
    """
    if ray.is_initialized():
        yield
        return
    # Ray's INFO lines (cluster started, dataset plans) are for Ray developers; its warnings show only
    # with `verbose`, and the workers' output only unless `quiet`.
    settings: dict[str, Any] = {"logging_level": logging.WARNING if verbose else logging.ERROR,
                                "log_to_driver": not quiet}
    if address is None:
        start_local_cluster(os.cpu_count() or 1, **settings)
    else:
        try:
            ray.init(address=address, **settings)
        except ConnectionError as exc:
            raise NetworkError(f"no Ray cluster at {address}: {str(exc).splitlines()[0]}",
                               hint="start one with `ray start --head`, or leave out --address to start one "
                                    "for this run") from None
    try:
        yield
    finally:
        ray.shutdown()


def _map(dataset: Any, task: str, model: str | None, load_options: dict[str, Any], rows_per_block: int, workers: int,
         cpus_per_worker: int) -> Any:
    """The dataset mapped through BatchInference actors; a worker that dies is an error squeeze reports,
    not one to retry (a restartable actor whose arguments live in the object store also makes Ray's core
    worker log an error line on the user's terminal)."""
    return dataset.map_batches(
        BatchInference,
        fn_constructor_kwargs={"task": task, "model": model, **load_options},
        batch_size=rows_per_block,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=max(1, min(workers, dataset.num_blocks()))),
        num_cpus=cpus_per_worker,
        runtime_env={"env_vars": worker_environment()},
        max_restarts=0,
    )


def start_local_cluster(num_cpus: int, **settings: Any) -> None:
    """Start a one-node Ray cluster whose servers all listen on 127.0.0.1 only, and connect to it.

    Needs `squeezecli.cli.distributed.loopback_only_ray()` before ray was first imported: without it Ray puts
    the node on the machine's routable address, listening on every interface; that is refused here.
    """
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK, **settings)
    node_address = ray.util.get_node_ip_address()
    if node_address != LOOPBACK:
        ray.shutdown()
        raise RuntimeError(f"the local Ray node is on {node_address}, not loopback: "
                           "call squeezecli.cli.distributed.loopback_only_ray() before importing ray")


def worker_environment(env: Environment | None = None) -> dict[str, str]:
    """The driver's squeeze settings (environment.SETTINGS: the cache, the Hub, offline mode, the kernel;
    never a token), for the workers' runtime_env, so they find the models the driver found."""
    return dict((env or Environment.from_os()).settings)


def records_dataset(records: Iterable[Record], rows_per_block: int) -> ray.data.Dataset:
    """A dataset of `records`, read here on the driver, one block per `rows_per_block` records.

    Each block is put in the object store as it is read, so the driver holds one block at a time.
    """
    blocks = [ray.put(_input_table(chunk)) for chunk in batched(records, rows_per_block)]
    return ray.data.from_arrow_refs(blocks or [ray.put(_INPUT_SCHEMA.empty_table())])


def _input_table(records: Sequence[Record]) -> pa.Table:
    return pa.table({
        "file": [record.source["file"] for record in records],
        "line": [record.source.get("line") for record in records],  # None for a whole document (--doc)
        "text": [record.text for record in records],
        # ensure_ascii: a lone surrogate a JSON escape spelled stays an escape, which Arrow strings accept.
        FIELDS_COLUMN: [json.dumps(record.extra, ensure_ascii=True) if record.extra else None for record in records],
    }, schema=_INPUT_SCHEMA)


def run(
    records: Iterable[Record],
    task: str,
    model: str | None,
    load_options: Mapping[str, Any],
    output_dir: Path,
    output_format: OutputFormat,
    *,
    rows_per_block: int,
    workers: int | None = None,
    cpus_per_worker: int = 1,
    quiet: bool = False,
) -> tuple[Path, int, int]:
    """Run `task` over `records` on the connected cluster; return the results file, its row count, and
    how many of its rows were cut to the model's window (marked "truncated").

    One block is one window of the CLI (`rows_per_block` records): sorted by length and cut into model
    batches inside the actor. `workers` actors (default: as many as the cluster's CPUs allow) each reserve
    `cpus_per_worker` CPUs. The results file is written under a temporary name and renamed when complete.
    """
    check_output(output_dir, output_format)
    with _data_context(progress_bars=not quiet):
        dataset = records_dataset(records, rows_per_block)
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_worker))
        with warnings.catch_warnings():
            # max_restarts has no named parameter yet, and passing it as a keyword is "deprecated".
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            results = _map(dataset, task, model, load_options, rows_per_block, workers, cpus_per_worker)
        target = check_output(output_dir, output_format)
        writer = JsonLinesFile(target) if output_format == "jsonl" else ParquetFile(target)
        count = cut = 0
        try:
            with writer:
                for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
                    rows = cli_rows(batch)
                    writer.write(rows)
                    count += len(rows)
                    cut += sum(1 for row in rows if row.get("truncated"))
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, SqueezeError):  # a worker's model failed to load: the CLI's own message
                raise exc.cause from None
            raise
    return target, count, cut


def check_output(output_dir: Path, output_format: OutputFormat) -> Path:
    """The results file in `output_dir` (made if missing), checked to be writable as io/outfile.py's rule
    says (an existing results file is replaced; a directory, device or FIFO of its name is refused)."""
    target = output_dir / f"{RESULTS}.{output_format}"
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise outfile.failure(target, exc) from None
    outfile.check(target, force=True)
    return target


@contextlib.contextmanager
def _data_context(*, progress_bars: bool) -> Iterator[None]:
    """Ray Data's settings for a run, restored afterwards. A dataset copies the context when it is made,
    so the dataset must be made inside."""
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars,
             context.raise_original_map_exception)
    context.execution_options.preserve_order = True  # rows come back in input order, as the CLI prints them
    context.enable_progress_bars = progress_bars
    # A batch's exception reaches the driver as itself, not as Ray Data's UserCodeException around it.
    context.raise_original_map_exception = True
    try:
        yield
    finally:
        (context.execution_options.preserve_order, context.enable_progress_bars,
         context.raise_original_map_exception) = saved


def cli_rows(batch: pa.Table) -> list[dict[str, Any]]:
    """A batch of `BatchInference` output over `records_dataset` -> the rows the CLI prints for it."""
    result_names = [name for name in batch.column_names if name not in (*SOURCE_COLUMNS, FIELDS_COLUMN)]
    rows = []
    for row in batch.to_pylist():
        source = {"file": row["file"]} if row["line"] is None else {"file": row["file"], "line": row["line"]}
        fields = row.get(FIELDS_COLUMN)
        record = Record("", source, json.loads(fields) if fields else {})
        rows.append(row_for(record, {name: row[name] for name in result_names}))
    return rows


def _field_names(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key of `rows`, in order of first appearance."""
    return list(dict.fromkeys(name for row in rows for name in row))


class JsonLinesFile:
    """Rows as the CLI prints them, into `path`, written as every output file is (io/outfile.py)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: Any = None

    def __enter__(self) -> JsonLinesFile:
        self._writing = outfile.writing(self._path)
        self._file = open(self._writing.__enter__(), "w", encoding="utf-8")
        return self

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        # As JsonLinesWriter writes stdout, but a full disk is this file's (io/outfile.py names it).
        for row in rows:
            try:
                line = to_json(row) + "\n"
                line.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate from a JSON escape: written as JSON escapes
                line = to_json(row, ensure_ascii=True) + "\n"
            self._file.write(line)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            self._file.close()
        except OSError as exc:
            if error is None:
                kind, error, traceback = type(exc), exc, exc.__traceback__
        if error is None:
            self._writing.__exit__(None, None, None)
        else:
            self._writing.__exit__(kind, error, traceback)


class ParquetFile:
    """Rows as one Parquet file with one type per column, in bounded memory.

    Arrow infers each batch's types on its own: a batch whose NER lines found no entity has a list of
    nulls where the next has a list of structs, and a JSON field absent from a batch has no column. Each
    batch is written as a part; at the end the parts' schemas are unified (nulls take the other parts'
    types, int64 widens to double) and the parts are copied, cast, into the one file.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._parts_dir = path.with_name(f".{path.name}.parts")
        self._parts: list[Path] = []
        self._schemas: list[pa.Schema] = []

    def __enter__(self) -> ParquetFile:
        shutil.rmtree(self._parts_dir, ignore_errors=True)
        self._parts_dir.mkdir(parents=True)
        return self

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        table = pa.table({name: _typed_column(name, [row.get(name) for row in rows]) for name in _field_names(rows)})
        part = self._parts_dir / f"{len(self._parts):06d}.parquet"
        pq.write_table(table, part)
        self._parts.append(part)
        self._schemas.append(table.schema)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if error is None:
                self._merge()
        finally:
            shutil.rmtree(self._parts_dir, ignore_errors=True)

    def _merge(self) -> None:
        try:
            schema = pa.unify_schemas(self._schemas, promote_options="permissive") if self._schemas else pa.schema([])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise _mixed_types(str(exc)) from None
        with outfile.writing(self._path) as partial, pq.ParquetWriter(partial, schema) as writer:
            for part in self._parts:
                table = pq.read_table(part)
                columns = [table.column(field.name) if field.name in table.column_names
                           else pa.nulls(table.num_rows, field.type) for field in schema]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema.remove_metadata()).cast(schema))


def _typed_column(name: str, values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _mixed_types(f"field {name!r}: {exc}") from None


def _mixed_types(detail: str) -> InputError:
    return InputError(f"--format parquet needs one type per column ({detail.splitlines()[0]})",
                      hint="--format jsonl keeps every value as it is")
