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
MODES = ("dense", "keyword", "hybrid")
DEFAULT_CANDIDATES = 50
RERANK_DEFAULT = "minilm-rerank"  # the catalogue's default for the rerank task (store/catalogue.py's test checks)


@click.command()
@click.argument("words", nargs=-1, metavar="QUERY [FILE]...")
@click.option("--corpus", "corpus", multiple=True, metavar="FILE", shell_complete=complete_file_names,
              help="Lines to search (a file, or - for stdin); repeat for several. FILEs after QUERY are added.")
@click.option("--index", "index_path", metavar="INDEX", shell_complete=complete_file_names,
              help="Search an index built with `squeeze index build`: every argument is a query (none: one per "
                   "line of stdin), and only the queries are embedded.")
@click.option("-k", "--top-k", "k", type=click.IntRange(1, MAX_TOP_K), default=5, show_default=True,
              help="How many of the nearest texts.")
@click.option("--mode", type=click.Choice(MODES), default="dense", show_default=True,
              help="With --index: rank by embeddings (dense), by the words of the query (keyword: BM25), or "
                   "both, fused by reciprocal rank (hybrid).")
@click.option("--rerank", "reranker", is_flag=False, flag_value=RERANK_DEFAULT, metavar="[MODEL]",
              help=f"Rerank the best --candidates with a cross-encoder (default {RERANK_DEFAULT}) and print the best "
                   "-k by its score, with the search's own as retrieval_score. Put it after QUERY, or give MODEL.")
@click.option("--candidates", type=click.IntRange(1, MAX_TOP_K), default=DEFAULT_CANDIDATES, show_default=True,
              metavar="N", help="How many of the best go to the cross-encoder (--rerank), and how many of the best "
                                "by embeddings and by keywords are fused (--mode hybrid).")
@chunk_options("each chunk ranked on its own, with its character offsets")
@model_options
@output_options
@pass_environment
def similar(env: Environment, output: OutputOptions, model: ModelOptions, words: tuple[str, ...],
            corpus: tuple[str, ...], index_path: str | None, k: int, mode: str, reranker: str | None, candidates: int,
            chunk: int | None, overlap: int) -> None:
    """The texts nearest to QUERY by cosine similarity of their embeddings.

    \b
      squeeze similar "refund policy" faq.txt          the corpus embedded as it is read
      squeeze index build faq.txt -o faq.sqidx          once; then, embedding only the queries:
      squeeze similar --index faq.sqidx "refund policy" "opening hours"
      squeeze similar --index faq.sqidx --mode hybrid "invoice E-1042"

    A corpus is read and embedded one batch at a time (only the best k are kept); one row per result,
    best first. With --index, one JSON line per query: {"query", "results": [...]}; --mode keyword
    ranks the index's texts by BM25 (no model runs), --mode hybrid fuses the best --candidates of each
    ranking: a text's score is the sum over the two of 1 / (60 + its rank), reciprocal rank fusion.
    --rerank reads the query with each of the best --candidates through a cross-encoder and ranks by that.
    """
    rerank = _reranker(model, reranker) if reranker is not None else None
    if index_path is not None:
        if corpus:
            raise click.UsageError("--index and --corpus are two corpora: give one")
        if chunk is not None or overlap:
            raise click.UsageError("an index is chunked when it is built (index build --chunk), not when searched")
        _similar_in_index(env, output, model, index_path, list(words), k, mode, max(candidates, k), rerank)
        return
    if mode != "dense":
        raise click.UsageError(f"--mode {mode} searches an index's words: build one with `squeeze index build` "
                               "and give --index INDEX")
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
    hits = nearest(pipeline.task, query, batches(), max(candidates, k) if rerank else k, cut)
    rows = [{**hit["source"], "rank": rank, "score": hit["score"], "text": hit["text"],
             **{key: hit[key] for key in ("truncated", "tokens") if key in hit}}
            for rank, hit in enumerate(hits, 1)]
    if rerank is not None:
        rows = _reranked(_load_reranker(env, output, rerank, query), query, rows, k)
    columns = ["rank", "score", *(["retrieval_score"] if rerank else []), "text", "file", "line"]
    open_writer(output.format, list(output.fields or columns), env, output.color,
                files=files or (STDIN,)).write_batch([output.select(row) for row in rows])
    if cut:
        env.notice(truncation_notice(len(cut), texts, pipeline.task.max_length, pipeline.runtime.max_length))


def _reranker(model: ModelOptions, name: str) -> ModelOptions:
    """The model options of the cross-encoder `--rerank` names (the run's precision, threads and batch
    size; its own revision and window), refusing what cannot be a model before anything loads: most
    likely a query that --rerank took for its MODEL."""
    from ..store import catalogue

    hub_id = "/" in name and not any(c.isspace() for c in name) and not os.path.isfile(name)
    if not (catalogue.by_alias(name) or os.path.isdir(name) or hub_id):
        raise click.BadParameter(f"{name!r} is not a model alias, a Hub id or a directory (put --rerank after the "
                                 "query, or give it a model: --rerank minilm-rerank)", param_hint="--rerank")
    return dataclasses.replace(model, model=name, revision=None, max_length=None)


def _load_reranker(env: Environment, output: OutputOptions, model: ModelOptions, query: str) -> Any:
    return load("rerank", model, env, output.quiet, query=query)


def _reranked(pipeline: Any, query: str, rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """`rows` (a search's results for `query`, best first) ranked by the cross-encoder, the best `k`:
    each with the cross-encoder's `score` and the search's as `retrieval_score`; equal scores keep the
    search's order."""
    from ..io.pipeline import best_first

    pipeline.task.set_query(query)
    results = pipeline([row["text"] for row in rows])
    ranked = best_first(((result["score"], (row, result)) for row, result in zip(rows, results)), k)
    reranked = []
    for rank, score, (row, result) in ranked:
        marks = {key: result[key] for key in ("truncated", "tokens") if key in result}
        reranked.append({**row, **marks, "rank": rank, "score": score, "retrieval_score": row["score"]})
    return reranked


def _similar_in_index(env: Environment, output: OutputOptions, model: ModelOptions, path: str, queries: list[str],
                      k: int, mode: str, depth: int, rerank: ModelOptions | None = None) -> None:
    from ..io import index as index_file

    index = index_file.open_index(path)
    if mode != "dense":
        index.require_keywords()  # before a model loads
    pipeline = None
    if mode != "keyword":
        pipeline = load("embed", _index_model(model, index.meta), env, output.quiet)
    from ..tasks import search

    if pipeline is not None:
        search.check_model(index, pipeline.task)
    reranker = _load_reranker(env, output, rerank, "?") if rerank is not None else None
    shape = resolved_format(output.format, env)
    nested, table = shape == "jsonl", shape == "table"
    columns = ["query", "rank", "score", *(["retrieval_score"] if reranker else []), "text", "file", "line"]
    writer = open_writer(output.format, list(output.fields or columns), env, output.color)
    texts = queries if queries else (record.text for record in read_records([], env=env))
    for group in batched(texts, search.QUERIES_PER_SCAN):
        results = [search.hits(index, ranked) for ranked in _ranked(index, pipeline, group, depth if reranker else k,
                                                                     mode, depth)]
        if reranker is not None:
            results = [_reranked(reranker, query, hits, k) for query, hits in zip(group, results)]
        if nested:  # --fields picks the fields of each result
            writer.write_batch([{"query": query, "results": [output.select(hit) for hit in hits]}
                                for query, hits in zip(group, results)])
        else:  # a table or CSV: one row per result, the query on its first
            writer.write_batch([output.select({"query": query if hit["rank"] == 1 or not table else "",
                                               **hit}) for query, hits in zip(group, results) for hit in hits])


def _ranked(index: Any, pipeline: Any, queries: list[str], k: int, mode: str, depth: int) -> list[list[tuple[int, float]]]:
    """Per query, the best `k` (id, score) of the index by `mode`: dense (cosine), keyword (BM25) or
    hybrid (the best `depth` of each, fused by reciprocal rank)."""
    from ..tasks import search

    if mode == "keyword":
        return [index.keyword_top_k(query, k) for query in queries]
    dense = list(search.top_k(index, pipeline.task.vectors(queries), k if mode == "dense" else depth))
    if mode == "dense":
        return dense
    return [search.fuse([by_vectors, index.keyword_top_k(query, depth)], k)
            for query, by_vectors in zip(queries, dense)]


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
    """Build, extend, upgrade and describe similarity indexes (files `squeeze similar --index` searches)."""


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


@index.command("upgrade")
@click.argument("index_path", metavar="INDEX", shell_complete=complete_file_names)
@pass_environment
def upgrade(env: Environment, index_path: str) -> None:
    """Bring INDEX to this squeeze's format: an index built before keyword search gets the full-text table
    of its texts (`similar --mode keyword/hybrid`), in one transaction; nothing is embedded again."""
    from ..io import index as index_file

    if index_file.upgrade(index_path):
        env.notice(f"upgraded {index_path} to index format {index_file.VERSION} (keyword search)")
    else:
        env.notice(f"{index_path} is already index format {index_file.VERSION}")


@index.command("info")
@click.argument("index_path", metavar="INDEX", shell_complete=complete_file_names)
@json_option("JSON even on a terminal.")
@pass_environment
def info(env: Environment, index_path: str, as_json: bool) -> None:
    """Describe INDEX: its model, vectors, chunking, size and when it was built."""
    from ..io import index as index_file

    index = index_file.open_index(index_path)
    record = {**index.meta, "keywords": index.keywords, "items": len(index), "size": os.path.getsize(index_path),
              "path": index_path}
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
