"""`squeeze similar` and the `squeeze index` group: nearest texts by embedding, from a corpus embedded
on the fly or from an index file built once (io/index.py is the format, tasks/search.py the search).

An index remembers its model: `index add` and `similar --index` use it (at its commit) unless -m names
one, and refuse another model's vectors.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import click

from ..environment import Environment
from ..io.batches import WINDOW_BATCHES, batched
from ..io.pipeline import InputOptions, OutputOptions
from ..io.progress import progress_for
from ..io.records import STDIN, check_paths, read_records
from ..io.writers import open_writer, print_json, print_rich, resolved_format
from ..tasks.base import MAX_TOP_K
from . import views
from .options import (
    ModelOptions,
    complete_file_names,
    input_options,
    json_option,
    model_options,
    output_options,
    pass_environment,
    with_options,
)
from .tasks import chunk_options, load, truncation_notice

VECTOR_CHOICES = ("int8", "float16", "float32")


@click.command()
@click.argument("words", nargs=-1, metavar="QUERY [FILE]...")
@click.option("--corpus", "corpus", multiple=True, metavar="FILE", shell_complete=complete_file_names,
              help="Lines to search (a file, or - for stdin); repeat for several. FILEs after QUERY are added.")
@click.option("--index", "index_path", metavar="INDEX", shell_complete=complete_file_names,
              help="Search an index built with `squeeze index build`: every argument is a query (none: one per "
                   "line of stdin), and only the queries are embedded.")
@click.option("-k", "--top-k", "k", type=click.IntRange(1, MAX_TOP_K), default=5, show_default=True,
              help="How many of the nearest texts.")
@chunk_options("each chunk ranked on its own, with its character offsets")
@model_options
@output_options
@pass_environment
def similar(env: Environment, output: OutputOptions, model: ModelOptions, words: tuple[str, ...],
            corpus: tuple[str, ...], index_path: str | None, k: int, chunk: int | None, overlap: int) -> None:
    """The texts nearest to QUERY by cosine similarity of their embeddings.

    \b
      squeeze similar "refund policy" faq.txt          the corpus embedded as it is read
      squeeze index build faq.txt -o faq.sqidx          once; then, embedding only the queries:
      squeeze similar --index faq.sqidx "refund policy" "opening hours"

    A corpus is read and embedded one batch at a time (only the best k are kept); one row per result,
    best first. With --index, one JSON line per query: {"query", "results": [...]}.
    """
    if index_path is not None:
        if corpus:
            raise click.UsageError("--index and --corpus are two corpora: give one")
        if chunk is not None or overlap:
            raise click.UsageError("an index is chunked when it is built (index build --chunk), not when searched")
        _similar_in_index(env, output, model, index_path, list(words), k)
        return
    if not words:
        raise click.UsageError("give a QUERY (and the corpus as FILEs, --corpus or stdin), or --index INDEX")
    query, files = words[0], (*words[1:], *corpus)
    check_paths(files)
    pipeline = load("embed", model, env, output.quiet, chunk=chunk, overlap=overlap)
    from ..tasks.embed import nearest

    texts = 0

    def batches() -> Iterator[list[tuple[str, Any]]]:
        nonlocal texts
        for batch in batched(read_records(files, env=env), model.batch_size):
            texts += len(batch)
            if chunk is None:
                yield [(record.text, record.source) for record in batch]
                continue
            spans = pipeline.task.chunk_spans([record.text for record in batch])
            yield [(record.text[start:end], {**record.source, "start": start, "end": end})
                   for record, own in zip(batch, spans) for start, end in own]

    cut: list[Any] = []
    hits = nearest(pipeline.task, query, batches(), k, cut)
    rows = [{**hit["source"], "rank": rank, "score": hit["score"], "text": hit["text"],
             **{key: hit[key] for key in ("truncated", "tokens") if key in hit}}
            for rank, hit in enumerate(hits, 1)]
    open_writer(output.format, list(output.fields or ["rank", "score", "text", "file", "line"]), env, output.color,
                files=files or (STDIN,)).write_batch([output.select(row) for row in rows])
    if cut:
        env.notice(truncation_notice(len(cut), texts, pipeline.task.max_length, pipeline.runtime.max_length))


def _similar_in_index(env: Environment, output: OutputOptions, model: ModelOptions, path: str, queries: list[str],
                      k: int) -> None:
    from ..io import index as index_file
    from ..tasks import search

    index = index_file.open_index(path)
    pipeline = load("embed", _index_model(model, index.meta), env, output.quiet)
    search.check_model(index, pipeline.task)
    shape = resolved_format(output.format, env)
    nested, table = shape == "jsonl", shape == "table"
    writer = open_writer(output.format, list(output.fields or ["query", "rank", "score", "text", "file", "line"]), env,
                         output.color)
    texts = queries if queries else (record.text for record in read_records([], env=env))
    for group in batched(texts, search.QUERIES_PER_SCAN):
        vectors = pipeline.task.vectors(group)  # [Q, D]
        results = [search.hits(index, ranked) for ranked in search.top_k(index, vectors, k)]
        if nested:  # --fields picks the fields of each result
            writer.write_batch([{"query": query, "results": [output.select(hit) for hit in hits]}
                                for query, hits in zip(group, results)])
        else:  # a table or CSV: one row per result, the query on its first
            writer.write_batch([output.select({"query": query if hit["rank"] == 1 or not table else "",
                                               **hit}) for query, hits in zip(group, results) for hit in hits])


def _index_model(model: ModelOptions, meta: dict[str, Any]) -> ModelOptions:
    """The model options for an index: its own model at its commit, unless -m names one, and its window
    unless --max-length says otherwise."""
    model = dataclasses.replace(model, max_length=model.max_length or meta["max_length"])
    if model.model:
        return model
    revision = model.revision or (meta.get("commit") if not os.path.isabs(str(meta["model"])) else None)
    return dataclasses.replace(model, model=meta["model"], revision=revision)


# -- squeeze index ----------------------------------------------------------------------------------------


@click.group("index")
def index() -> None:
    """Build, extend and describe similarity indexes (files `squeeze similar --index` searches)."""


def _index_input(command: Any) -> Any:
    """The input and model options, and --quiet, for the commands that embed records into an index."""
    return with_options(input_options(model_options(command)), [
        click.option("--quiet", is_flag=True, help="No progress bar and no summary line."),
    ])


@index.command("build")
@click.option("-o", "--output", "target", required=True, metavar="INDEX", shell_complete=complete_file_names,
              help="The index file to write (conventionally NAME.sqidx); a symlink is followed. Never a directory, "
                   "device or FIFO.")
@click.option("--vectors", type=click.Choice(VECTOR_CHOICES), default="float16", show_default=True,
              help="How vectors are stored: float16 (half of float32, scores within 1e-4), int8 (a quarter, with "
                   "a scale per vector; scores within ~2e-3) or float32.")
@click.option("--force", is_flag=True, help="Replace INDEX if it exists.")
@chunk_options("one vector per chunk, searched on its own, with its character offsets")
@_index_input
@pass_environment
def build(env: Environment, inputs: InputOptions, model: ModelOptions, quiet: bool, target: str, vectors: str,
          force: bool, chunk: int | None, overlap: int) -> None:
    """Embed FILEs (or stdin) once into an index file, for `squeeze similar --index`.

    Each text (or, with --chunk, each chunk of one) becomes one vector, stored with its text and where it
    came from (file, line or row, and the input's other fields). The file is written whole or not at all.
    """
    from ..io import index as index_file
    from ..tasks import search

    index_file.check_target(target, force=force)  # before the model loads
    pipeline = load("embed", model, env, quiet, chunk=chunk, overlap=overlap)
    with index_file.creating(target, search.index_meta(pipeline.task, vectors), force=force) as index:
        texts, items, cut = _add_records(env, inputs, model, quiet, pipeline, index)
    _report(env, quiet, pipeline, target, texts, items, cut, vectors, "indexed")


@index.command("add")
@click.argument("index_path", metavar="INDEX", shell_complete=complete_file_names)
@_index_input
@pass_environment
def add(env: Environment, inputs: InputOptions, model: ModelOptions, quiet: bool, index_path: str) -> None:
    """Add FILEs (or stdin) to INDEX, embedded with the index's own model and chunking.

    The new items are committed at the end, all at once: an interrupted `add` adds nothing.
    """
    from ..io import index as index_file
    from ..tasks import search

    check_paths(inputs.files)
    meta = index_file.open_index(index_path).meta
    pipeline = load("embed", _index_model(model, meta), env, quiet, chunk=meta["chunk"], overlap=meta["overlap"])
    with index_file.adding(index_path) as index:
        search.check_model(index, pipeline.task)
        texts, items, cut = _add_records(env, inputs, model, quiet, pipeline, index)
    _report(env, quiet, pipeline, index_path, texts, items, cut, meta["vectors"], "added")


def _add_records(env: Environment, inputs: InputOptions, model: ModelOptions, quiet: bool, pipeline: Any,
                 index: Any) -> tuple[int, int, int]:
    """Embed the inputs into `index`, a window of batches at a time; (texts, items, texts cut)."""
    from ..tasks import search

    texts = items = cut = 0
    with progress_for(inputs.files, quiet=quiet, env=env, prints_results=False, unit=inputs.unit) as progress:
        for window in batched(inputs.read(on_read=progress.read, env=env), WINDOW_BATCHES * model.batch_size):
            new = search.items(pipeline.task, window, index.meta["vectors"])
            index.append(new)
            progress.done(len(window))
            texts, items = texts + len(window), items + len(new)
            cut += len({item[1] for item in new if item[4] is not None})
    return texts, items, cut


def _report(env: Environment, quiet: bool, pipeline: Any, path: str, texts: int, items: int, cut: int,
            vectors: str, done: str) -> None:
    if cut:
        env.notice(truncation_notice(cut, texts, pipeline.task.max_length, pipeline.runtime.max_length,
                                     chunkable=done == "indexed"))
    if not quiet:
        size = os.path.getsize(path)
        env.notice(f"{done} {texts:,} text{'s' if texts != 1 else ''} as {items:,} {vectors} vector"
                   f"{'s' if items != 1 else ''} {'into' if done == 'indexed' else 'to'} {path} ({views.size(size)})")


@index.command("info")
@click.argument("index_path", metavar="INDEX", shell_complete=complete_file_names)
@json_option("JSON even on a terminal.")
@pass_environment
def info(env: Environment, index_path: str, as_json: bool) -> None:
    """Describe INDEX: its model, vectors, chunking, size and when it was built."""
    from ..io import index as index_file

    index = index_file.open_index(index_path)
    record = {**index.meta, "items": len(index), "size": os.path.getsize(index_path), "path": index_path}
    index.close()
    if as_json or not env.stdout_is_terminal:
        print_json(env, record)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in {**record, "size": views.size(record["size"])}.items():
        table.add_row(name, Text("-" if value is None else ", ".join(value) if isinstance(value, list) else str(value)))
    print_rich(env, table)


COMMANDS = [similar, index]
