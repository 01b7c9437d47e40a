"""`squeeze serve`: the options of the server and their checks; the server itself is squeezecli.serve.
Every option is checked before a model loads or a port is bound."""

from __future__ import annotations

import click

from ..environment import API_KEY_ENV, Environment
from ..errors import UsageError
from ..precision.names import PRECISIONS
from ..io.batches import MAX_BATCH_SIZE
from .options import check_threads, complete_models, pass_environment


@click.command()
@click.option("-m", "--model", "models", multiple=True, metavar="NAME", shell_complete=complete_models,
              help="A model to load at start (alias, Hub id or local directory); repeat for several. Others load "
                   "on first request, unless the server is off loopback, where only these may be named.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on. Any but loopback needs --api-key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="The port to listen on (0: any free one, said on stderr).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="The precision every model runs at (as the task commands' --precision).")
@click.option("--api-key", metavar="KEY", envvar=API_KEY_ENV, show_envvar=True,
              help="Require 'Authorization: Bearer KEY' on every request but /health. Never printed.")
@click.option("--max-models", type=click.IntRange(1, 64), default=4, show_default=True, metavar="N",
              help="Models kept loaded at most; past it the least recently used one not given with -m is unloaded.")
@click.option("--queue", "queue_texts", type=click.IntRange(1, 1 << 20), default=4096, show_default=True, metavar="TEXTS",
              help="Texts waiting or running at most, across clients; past it requests get 503 with Retry-After.")
@click.option("--max-texts", type=click.IntRange(1, 65536), default=1024, show_default=True, metavar="N",
              help="Texts in one request at most (413 past it).")
@click.option("--max-bytes", type=click.IntRange(1024, 1 << 30), default=8 * 1024 * 1024, show_default=True, metavar="BYTES",
              help="Bytes in one request body at most (413 past it).")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=32, show_default=True,
              help="Texts per model call; texts of concurrent requests are batched together.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N", help="CPU threads for the models (default: torch's choice).")
@pass_environment
def serve(env: Environment, models: tuple[str, ...], host: str, port: int, precision: str, api_key: str | None,
          max_models: int, queue_texts: int, max_texts: int, max_bytes: int, batch_size: int,
          threads: int | None) -> None:
    """Keep models loaded and answer over HTTP: OpenAI's /v1/embeddings, text-embeddings-inference's
    /embed, /predict and /rerank, squeeze's /v1/tasks/TASK (which the task commands use when SQUEEZE_SERVER names
    this server), /health and /metrics.

    \b
      squeeze serve -m minilm-embed
      SQUEEZE_SERVER=http://127.0.0.1:8080 squeeze embed notes.txt

    SIGTERM or Ctrl-C stops accepting requests, answers those in flight, and exits (0 after SIGTERM).
    """
    check_threads(threads)
    from ..serve.server import Settings, is_loopback, serve as run_server

    if any(not name.strip() for name in models):
        raise click.BadParameter("is empty; name a model", param_hint="'-m' / '--model'")
    if api_key is not None and not api_key.strip():
        raise UsageError(f"the API key is empty (--api-key or {API_KEY_ENV})")
    if not is_loopback(host) and api_key is None:
        raise UsageError(f"--host {host} is not loopback: other machines could reach the server",
                         hint=f"set an API key with --api-key or {API_KEY_ENV} (clients send 'Authorization: Bearer KEY')")
    if not is_loopback(host) and not models:
        raise UsageError(f"--host {host} is not loopback: only the models given with -m are served there",
                         hint="name them with -m")
    settings = Settings(host=host, port=port, models=models, precision=precision, api_key=api_key,
                        max_models=max_models, queue_texts=queue_texts, max_texts=max_texts, max_bytes=max_bytes,
                        batch_size=batch_size, threads=threads)
    status = run_server(settings, env)
    if status:
        raise SystemExit(status)

