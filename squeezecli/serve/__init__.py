"""`squeeze serve`: models kept warm behind HTTP, for the shell and for any OpenAI or TEI client, and the
client the CLI's task commands use to run through such a server.

    server.py     the process: uvicorn, the -m models loaded at start, the drain on SIGTERM
    app.py        the ASGI app: the API key, bounded request bodies, errors as JSON, /health, /metrics
    endpoints.py  the routes' shapes: OpenAI /v1/embeddings and /v1/models, TEI /embed, /predict, /rerank,
                  squeeze's own /v1/tasks/{task}
    batching.py   the queue bound and the model workers that batch every client's texts together
    pool.py       the models loaded, least recently used unloaded past a count
    requests.py   a /v1/tasks request's options read off the task table
    metrics.py    the Prometheus text of /metrics
    client.py     the CLI's side: the standard library's http.client only, no torch, no Starlette

The server modules import Starlette and uvicorn; this file and client.py import neither, and nothing
here imports torch at module level (the CLI imports client.py for every task command).

May import: `api` (loading a model for a task), `tasks` (the task table), `store` (model names), `io`,
`errors`, `environment`, `_version`.
"""
