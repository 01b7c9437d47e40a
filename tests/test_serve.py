"""`squeeze serve` as a real process on a loopback port, with real clients: the CLI through it prints what
the in-process run prints; the official openai client and TEI-shaped requests get what `squeeze embed`
and the classifiers give; many clients at once; the queue bound; every fault a client can cause, with
its status and message; the API key; SIGTERM with requests in flight.

One server for most of the module (tiny random models from tests/factory.py, fp32 so that results are
exact); the API key and SIGTERM tests start their own.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import sentences
from servers import Server

SQUEEZE = [sys.executable, "-m", "squeezecli"]
NLI_LABELS = ["contradiction", "entailment", "neutral"]
MAX_TEXTS = 64
MAX_BYTES = 256 * 1024
BATCH_TOLERANCE = 1e-5  # a line's result beside others, as tests/test_precision.py holds it


@pytest.fixture(scope="module")
def models(checkpoints):
    from squeezecli.store import catalogue

    return {
        "sentiment": str(checkpoints("sst", "distilbert", "sequence", labels=["NEGATIVE", "POSITIVE"])),
        "zero-shot": str(checkpoints("nli", "squeezebert", "sequence", labels=NLI_LABELS)),
        "qa": str(checkpoints("qa", "bert", "qa")),
        "ner": str(checkpoints("ner", "bert", "token", labels=list(catalogue.by_alias("bert-ner").labels))),
        "embed": str(checkpoints("embed", "bert", "base")),
        "rerank": str(checkpoints("cross", "bert", "sequence", labels=["LABEL_0"])),
    }


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    caches = tmp_path_factory.mktemp("caches")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("SQUEEZE_", "HF_"))}
    env.update(SQUEEZE_CACHE_DIR=str(caches / "squeeze"), HF_HOME=str(caches / "hf"), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return env


@pytest.fixture(scope="module")
def server(models, environment):
    started = Server(["-m", models["embed"], "--precision", "fp32", "--max-texts", str(MAX_TEXTS),
                      "--max-bytes", str(MAX_BYTES), "--queue", str(MAX_TEXTS)], env=environment)
    try:
        yield started
    finally:
        started.stop()


def squeeze(args, env, text="", server=None):
    environment = dict(env, **({"SQUEEZE_SERVER": server} if server else {}))
    return subprocess.run(SQUEEZE + args, input=text, capture_output=True, text=True, env=environment, timeout=300)


LINES = "\n".join(sentences.varied(40, seed=5) + ["", "x", " ".join(["word"] * 300)]) + "\n"
COMMANDS = {
    "sentiment-top-k": ["sentiment", "-m", "{sentiment}", "--top-k", "2", "--format", "csv"],
    "sentiment-chunked": ["sentiment", "-m", "{sentiment}", "--chunk", "6", "--aggregate", "max"],
    "classify": ["classify", "-m", "{sentiment}", "--all-scores"],
    "zero-shot": ["classify", "-m", "{zero-shot}", "--labels", "sport,politics,art", "--multi-label"],
    "qa": ["qa", "--lines", "-m", "{qa}", "-q", "Who?", "-q", "Where?", "--top-k", "2"],
    # What the options become for this model (notices) is said by a model loaded for other options too.
    "qa-window": ["qa", "--lines", "-m", "{qa}", "-q", "Who?", "-q", " ".join(["who"] * 80), "--max-length", "1000"],
    "ner": ["ner", "-m", "{ner}", "--aggregation", "first"],
    "embed-chunks": ["embed", "-m", "{embed}", "--chunk", "8", "--overlap", "2"],
    "embed-npy": ["embed", "-m", "{embed}", "--format", "npy", "--max-length", "16"],
    "rerank": ["rerank", "-m", "{rerank}", "-q", "a sentence about the weather", "-k", "5"],
    "rerank-in-order": ["rerank", "-m", "{rerank}", "-q", "markets", "--keep-order", "--format", "csv"],
}


def test_every_task_of_the_table_is_run_through_the_server_here():
    from squeezecli.tasks.table import TASKS

    covered = {COMMANDS[name][0] for name in COMMANDS} | {"zero-shot"}  # classify --labels runs zero-shot
    assert covered >= set(TASKS), f"add a case for {sorted(set(TASKS) - covered)} to COMMANDS"


@pytest.mark.parametrize("name", COMMANDS)
def test_the_cli_through_the_server_prints_what_the_in_process_run_prints(server, models, environment, name):
    args = [part.format(**models) for part in COMMANDS[name]] + ["--precision", "fp32"]
    served_before = server.metric("squeeze_texts_total")
    def run(extra):
        return subprocess.run(SQUEEZE + args + extra, input=LINES.encode(), capture_output=True,
                              env=dict(environment, SQUEEZE_SERVER=server.url), timeout=300)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # side by side: the same answer, half the wait
        here, there = pool.map(run, (["--no-server"], []))
    assert here.returncode == 0, here.stderr
    assert there.returncode == 0, there.stderr
    assert there.stdout == here.stdout
    assert there.stderr == here.stderr
    assert server.metric("squeeze_texts_total") >= served_before + 40  # it did run there


def test_a_command_through_the_server_imports_no_torch(server, models, environment):
    done = subprocess.run([sys.executable, "-X", "importtime", *SQUEEZE[1:], "embed", "-m", models["embed"],
                           "--precision", "fp32"], input="one line\n", text=True, capture_output=True,
                          env=dict(environment, SQUEEZE_SERVER=server.url), timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)["embedding"]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "squeezecli.serve.client" in imported
    assert not {"torch", "numpy", "starlette", "uvicorn"} & imported


def test_without_a_server_that_answers_the_cli_runs_here_with_one_notice(models, environment):
    args = ["sentiment", "-m", models["sentiment"], "--precision", "fp32"]
    here = squeeze(args + ["--no-server"], environment, LINES)
    away = squeeze(args, environment, LINES, server="http://127.0.0.1:9")  # the discard port: nothing listens
    assert away.returncode == 0
    assert away.stdout == here.stdout
    notice, *rest = away.stderr.splitlines()
    assert notice.startswith("squeeze: the server at http://127.0.0.1:9 does not answer")
    assert notice.endswith("running here instead")
    assert rest == here.stderr.splitlines()  # the run's own notices, as ever


def test_a_server_at_another_precision_is_not_used(server, models, environment):
    away = squeeze(["embed", "-m", models["embed"], "--precision", "bf16"], environment, "one\ntwo\n", server=server.url)
    assert away.returncode == 0 and len(away.stdout.splitlines()) == 2
    assert away.stderr.splitlines() == [
        f"squeeze: the server at {server.url} runs --precision fp32, not bf16: running here instead"]


def test_an_error_through_the_server_is_the_in_process_error(server, models, environment):
    args = ["embed", "-m", models["embed"], "--precision", "fp32", "--chunk", "9999"]
    here = squeeze(args + ["--no-server"], environment, "one\n")
    there = squeeze(args, environment, "one\n", server=server.url)
    assert (there.returncode, there.stderr) == (here.returncode, here.stderr)
    assert here.returncode == 2 and "does not fit" in here.stderr


def test_doctor_says_whether_the_server_answers(server, environment):
    from squeezecli import __version__

    report = json.loads(squeeze(["doctor", "--json"], environment, server=server.url).stdout)["server"]
    assert (report["url"], report["answers"], report["version"], report["detail"]) == (
        server.url, True, __version__, "ready")
    report = json.loads(squeeze(["doctor", "--json"], environment, server="http://127.0.0.1:9").stdout)["server"]
    assert report["answers"] is False and "does not answer" in report["detail"]


# -- the OpenAI and TEI shapes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded(models, environment):
    """`squeeze embed`'s vectors (in-process) for TEXTS."""
    done = squeeze(["embed", "-m", models["embed"], "--precision", "fp32", "--no-server"], environment,
                   "\n".join(TEXTS) + "\n")
    assert done.returncode == 0, done.stderr
    return [json.loads(line)["embedding"] for line in done.stdout.splitlines()]


TEXTS = ["The cat sat on the mat.", "A much longer sentence about the stock market and its moods today.", "ok"]


def test_the_openai_client_gets_the_vectors_squeeze_embed_prints(server, models, embedded):
    import numpy as np
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    as_base64 = client.embeddings.create(model=models["embed"], input=TEXTS)  # the client's default: base64
    as_float = client.embeddings.create(model=models["embed"], input=TEXTS, encoding_format="float")
    for answer in (as_base64, as_float):
        assert [item.index for item in answer.data] == [0, 1, 2]
        assert [item.embedding for item in answer.data] == embedded
        assert answer.usage.prompt_tokens == answer.usage.total_tokens > len(TEXTS)
    one = client.embeddings.create(model=models["embed"], input=TEXTS[0], encoding_format="float")
    assert [item.embedding for item in one.data] == embedded[:1]
    short = client.embeddings.create(model=models["embed"], input=TEXTS, dimensions=8, encoding_format="float")
    for item, full in zip(short.data, embedded):
        vector = np.array(item.embedding)
        assert vector.shape == (8,) and abs(np.linalg.norm(vector) - 1) < 1e-6
        assert np.allclose(vector, np.array(full[:8]) / np.linalg.norm(full[:8]), atol=1e-6)


def test_base64_is_float32_little_endian(server, models, embedded):
    status, answer, _ = server.request("POST", "/v1/embeddings", {"input": TEXTS[1], "model": models["embed"],
                                                                  "encoding_format": "base64"})
    assert status == 200
    packed = base64.b64decode(answer["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == embedded[1]
    assert answer["object"] == "list" and answer["data"][0]["object"] == "embedding"


def test_tei_embed_answers_as_tei_documents(server, models, embedded):
    import numpy as np

    status, rows, _ = server.request("POST", "/embed", {"inputs": TEXTS[0], "model": models["embed"]})
    assert status == 200 and len(rows) == 1  # one string is still a list of one vector
    assert np.allclose(rows[0], np.array(embedded[0]) / np.linalg.norm(embedded[0]), atol=1e-6)  # normalize: true
    status, rows, _ = server.request("POST", "/embed", {"inputs": TEXTS, "normalize": False, "model": models["embed"]})
    assert status == 200 and rows == embedded
    long = " ".join(["word"] * 600)
    status, answer, _ = server.request("POST", "/embed", {"inputs": [long], "model": models["embed"]})
    assert status == 413 and "truncate" in answer["error"] and answer["error_type"] == "Validation"
    status, rows, _ = server.request("POST", "/embed", {"inputs": [long], "truncate": True, "model": models["embed"]})
    assert status == 200 and len(rows) == 1


def test_tei_predict_answers_every_label_best_first(server, models):
    status, single, _ = server.request("POST", "/predict", {"inputs": "I loved it", "model": models["sentiment"]})
    assert status == 200
    assert sorted(entry["label"] for entry in single) == ["NEGATIVE", "POSITIVE"]
    assert [entry["score"] for entry in single] == sorted((entry["score"] for entry in single), reverse=True)
    assert abs(sum(entry["score"] for entry in single) - 1) < 1e-6
    status, batch, _ = server.request("POST", "/predict", {"inputs": [["I loved it"], ["Awful."]],
                                                           "model": models["sentiment"]})
    assert status == 200 and len(batch) == 2
    assert [entry["label"] for entry in batch[0]] == [entry["label"] for entry in single]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(batch[0], single)) <= BATCH_TOLERANCE


def test_tei_rerank_answers_every_text_best_first(server, models):
    texts = ["The weather is sunny today.", "Stocks fell sharply.", "Rain is expected tomorrow."]
    body = {"query": "What is the weather like?", "texts": texts, "model": models["rerank"]}
    status, ranked, _ = server.request("POST", "/rerank", {**body, "return_text": True})
    assert status == 200
    assert sorted(entry["index"] for entry in ranked) == [0, 1, 2]
    assert [entry["score"] for entry in ranked] == sorted((entry["score"] for entry in ranked), reverse=True)
    assert [entry["text"] for entry in ranked] == [texts[entry["index"]] for entry in ranked]
    status, scored, _ = server.request("POST", "/v1/tasks/rerank", {"texts": texts, "model": models["rerank"],
                                                                    "options": {"query": body["query"]}})
    assert [entry["score"] for entry in ranked] == [scored["results"][entry["index"]]["score"] for entry in ranked]
    status, plain, _ = server.request("POST", "/rerank", body)
    assert status == 200 and "text" not in plain[0]
    status, answer, _ = server.request("POST", "/rerank", {"texts": texts, "model": models["rerank"]})
    assert status == 400 and answer["error"] == "'query' must be a string"


def test_models_health_and_metrics(server, models):
    status, listed, _ = server.request("GET", "/v1/models")
    assert status == 200 and models["embed"] in [item["id"] for item in listed["data"]]
    status, health, _ = server.request("GET", "/health")
    from squeezecli import __version__

    assert status == 200 and health["status"] == "ok" and health["version"] == __version__
    status, text, headers = server.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    for series in ("squeeze_requests_total{", "squeeze_texts_total ", "squeeze_request_seconds_bucket{",
                   "squeeze_batch_texts_bucket{", "squeeze_queue_texts ", "squeeze_models_loaded{"):
        assert f"\n{series}" in text
    assert "# TYPE squeeze_request_seconds histogram" in text


# -- many clients, the queue bound -------------------------------------------------------------------


def test_many_clients_at_once_get_what_each_gets_alone(server, models):
    texts = sentences.varied(48, seed=9)
    alone = {text: server.request("POST", "/v1/embeddings", {"input": text, "model": models["embed"]})[1]
             ["data"][0]["embedding"] for text in texts}

    def client(start):
        group = texts[start:start + 4]
        status, answer, _ = server.request("POST", "/v1/embeddings", {"input": group, "model": models["embed"]})
        assert status == 200
        return group, [item["embedding"] for item in answer["data"]]

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(client, range(0, len(texts), 4)))
    for group, vectors in answers:
        for vector, text in zip(vectors, group):
            assert max(abs(a - b) for a, b in zip(vector, alone[text])) <= BATCH_TOLERANCE


def test_a_full_queue_answers_503_with_retry_after_and_recovers(server, models):
    # One request that fills the bound and takes a while: MAX_TEXTS long texts, each read in small chunks.
    slow = {"texts": [" ".join(sentences.varied(20, seed=seed)) for seed in range(MAX_TEXTS)],
            "model": models["embed"], "options": {"chunk": 4, "pool": "mean"}}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(server.request, "POST", "/v1/tasks/embed", slow)
        while server.metric("squeeze_queue_texts") < MAX_TEXTS and not running.done():
            threading.Event().wait(0.01)
        assert not running.done(), f"the slow request ended before the queue was seen full: {running.result()}"
        status, answer, headers = server.request("POST", "/v1/embeddings", {"input": "one more", "model": models["embed"]})
        assert status == 503 and headers["retry-after"] == "1"
        assert "busy" in answer["error"]["message"]
        assert running.result()[0] == 200
    assert len(running.result()[1]["results"]) == MAX_TEXTS
    status, _, _ = server.request("POST", "/v1/embeddings", {"input": "one more", "model": models["embed"]})
    assert status == 200


# -- faults --------------------------------------------------------------------------------------------


FAULTS = [
    ("/v1/embeddings", b"{not json", 400, "not valid JSON"),
    ("/v1/embeddings", b"[1, 2]", 400, "must be a JSON object"),
    ("/v1/embeddings", {}, 400, "'input' is missing"),
    ("/v1/embeddings", {"input": 5}, 422, "'input' must be a string or a list of strings"),
    ("/v1/embeddings", {"input": ["a", 3]}, 422, "'input' must be a string or a list of strings"),
    ("/v1/embeddings", {"input": []}, 422, "'input' is an empty list"),
    ("/v1/embeddings", {"input": ["a"] * (MAX_TEXTS + 1)}, 413, f"more than the server's {MAX_TEXTS}"),
    ("/v1/embeddings", {"input": "a" * MAX_BYTES}, 413, "--max-bytes"),
    ("/v1/embeddings", {"input": "a", "encoding_format": "hex"}, 422, "'encoding_format' must be one of float, base64"),
    ("/v1/embeddings", {"input": "a", "dimensions": 0}, 422, "'dimensions' must be a whole number"),
    ("/v1/embeddings", {"input": "a", "dimensions": 100000}, 422, "more than the model's"),
    ("/v1/embeddings", {"input": "a", "model": 7}, 422, "'model' must be a string"),
    ("/v1/embeddings", {"input": "a", "model": "/no/such/model"}, 404, "no such model directory"),
    ("/embed", {"inputs": "a", "normalize": "yes"}, 422, "'normalize' must be true or false"),
    ("/predict", {"inputs": ["a", "b"]}, 422, "needs a cross-encoder"),
    ("/predict", {"inputs": "a", "raw_scores": True}, 422, "'raw_scores' is not supported"),
    ("/v1/tasks/summarise", {"texts": ["a"]}, 404, "no task 'summarise'"),
    ("/v1/tasks/embed", {"texts": "a"}, 422, "'texts' must be a list of strings"),
    ("/v1/tasks/embed", {"texts": ["a"], "options": {"bogus": 1}}, 422, "embed has no option 'bogus'"),
    ("/v1/tasks/embed", {"texts": ["a"], "options": {"chunk": "4"}}, 422, "option 'chunk' takes a whole number"),
    ("/v1/tasks/embed", {"texts": ["a"], "options": {"pool": "sum"}}, 422, "option 'pool' takes one of mean, max"),
    ("/v1/tasks/embed", {"texts": ["a"], "options": {"overlap": 2}}, 422, "--overlap applies to chunks"),
    ("/v1/tasks/embed", {"texts": ["a"], "batch_size": 0}, 422, "option 'batch_size' is 0"),
    ("/v1/tasks/qa", {"texts": ["a"], "options": {"questions": "Who?"}}, 422, "option 'questions' takes a list"),
    ("/v1/tasks/embed", {"texts": ["a"], "options": {"chunk": 100000}}, 422, "does not fit"),
]


@pytest.mark.parametrize("path,body,status,message", FAULTS, ids=[f"{f[0]}-{f[3][:30]}" for f in FAULTS])
def test_each_fault_is_a_4xx_json_error_with_a_message(server, models, path, body, status, message):
    if isinstance(body, dict) and path != "/predict" and "model" not in body and body:
        body = {**body, "model": models["embed"]}
    if path == "/predict" and isinstance(body, dict):
        body = {**body, "model": models["sentiment"]}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, answer, headers = server.request("POST", path, raw=raw)
    assert got == status, answer
    assert headers["content-type"] == "application/json"
    text = answer["error"] if path in ("/embed", "/predict") else answer["error"]["message"]
    assert message in text
    # ...and the server goes on answering everyone else.
    assert server.request("POST", "/v1/embeddings", {"input": "fine", "model": models["embed"]})[0] == 200


def test_unknown_routes_and_methods_are_json_errors(server):
    status, answer, _ = server.request("GET", "/v2/anything")
    assert status == 404 and "no such endpoint" in answer["error"]["message"]
    status, answer, _ = server.request("GET", "/v1/embeddings")
    assert status == 405 and "POST" in answer["error"]["message"]


def test_a_restricted_pool_serves_only_its_models(models):
    from squeezecli.errors import ModelError
    from squeezecli.serve.pool import ModelNotServed, ModelPool

    pool = ModelPool(pinned=(models["embed"], "minilm-embed"), restricted=True)
    assert pool.name_for("embed", models["embed"]) == models["embed"]
    assert pool.name_for("embed", "sentence-transformers/all-MiniLM-L6-v2")  # the alias's Hub id is the same model
    for name in ("/etc", models["sentiment"], "someone/else"):
        with pytest.raises(ModelNotServed, match="is not served here"):
            pool.name_for("embed", name)
    with pytest.raises(ModelNotServed):
        pool.name_for("sentiment", None)  # the task's default is not among them
    with pytest.raises(ModelError):
        pool.name_for("embed", "")


def test_the_pool_unloads_the_least_recently_used_model_past_its_bound(models, checkpoints):
    from squeezecli.serve.pool import ModelPool

    other = str(checkpoints("embed-2", "bert", "base", seed=1))
    third = str(checkpoints("embed-3", "bert", "base", seed=2))
    pool = ModelPool(precision="fp32", max_models=2, pinned=(models["embed"],))
    try:
        pool.preload(models["embed"])
        for name in (other, third, other):  # `third` is then the least recently used one not pinned
            pool.task_for("embed", name)
        assert sorted(loaded.name for loaded in pool.loaded()) == sorted([models["embed"], other])
        pool.task_for("embed", third)
        assert sorted(loaded.name for loaded in pool.loaded()) == sorted([models["embed"], third])
    finally:
        pool.stop()


def test_a_server_of_another_version_is_not_used(models, environment):
    import http.server

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok", "version": "0.0.1", "precision": "fp32"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{other.server_address[1]}"
        away = squeeze(["embed", "-m", models["embed"], "--precision", "fp32"], environment, "one\n", server=url)
    finally:
        other.shutdown()
    from squeezecli import __version__

    assert away.returncode == 0 and len(away.stdout.splitlines()) == 1
    assert away.stderr.splitlines() == [
        f"squeeze: the server at {url} runs squeeze 0.0.1, this is {__version__}: running here instead"]


# -- the command's own checks, the key, SIGTERM ------------------------------------------------------------


@pytest.mark.parametrize("args,message", [
    (["--host", "0.0.0.0"], "is not loopback"),
    (["--host", "0.0.0.0", "--api-key", "k"], "only the models given with -m"),
    (["--api-key", " "], "the API key is empty"),
    (["-m", ""], "is empty"),
    (["--port", "70000"], "70000"),
])
def test_bad_serve_options_exit_2_before_anything_starts(environment, args, message):
    done = squeeze(["serve", *args], environment)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_a_model_that_cannot_load_stops_the_server_with_its_status(environment):
    done = squeeze(["serve", "--port", "0", "-m", "/no/such/model"], environment)
    assert done.returncode == 4  # a model error, as for any command
    assert "squeeze: cannot load /no/such/model: no such model directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_one_line(server, environment):
    done = squeeze(["serve", "--port", str(server.port)], environment)
    assert done.returncode == 1
    assert done.stderr.startswith(f"squeeze: error: cannot listen on 127.0.0.1:{server.port}")


def test_an_api_key_is_required_and_never_printed(models, environment):
    key = "k3y-that-must-not-show"
    keyed = Server(["-m", models["embed"], "--precision", "fp32"], env=dict(environment, SQUEEZE_API_KEY=key))
    try:
        body = {"input": "hello", "model": models["embed"]}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
            status, answer, _ = keyed.request("POST", "/v1/embeddings", body, headers=headers)
            assert status == 401 and "API key" in answer["error"]["message"]
        assert keyed.request("POST", "/v1/embeddings", body, headers={"Authorization": f"Bearer {key}"})[0] == 200
        assert keyed.request("GET", "/health")[0] == 200  # a load balancer's probe needs no key
        through = squeeze(["embed", "-m", models["embed"], "--precision", "fp32"],
                          dict(environment, SQUEEZE_API_KEY=key), "hello\n", server=keyed.url)
        assert through.returncode == 0 and through.stderr == ""
        assert keyed.terminate() == 0
        assert key not in keyed.stderr
    finally:
        keyed.stop()


def test_sigterm_finishes_the_requests_in_flight_then_exits_0(models, environment):
    draining = Server(["-m", models["embed"], "--precision", "fp32"], env=environment)
    try:
        slow = {"texts": [" ".join(sentences.varied(20, seed=seed)) for seed in range(24)],
                "model": models["embed"], "options": {"chunk": 4}}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            running = [pool.submit(draining.request, "POST", "/v1/tasks/embed", slow) for _ in range(2)]
            while draining.metric("squeeze_queue_texts") < 48 and not any(f.done() for f in running):
                threading.Event().wait(0.01)
            assert not any(f.done() for f in running), "the requests ended before SIGTERM could be sent"
            status = draining.terminate()
            answers = [f.result() for f in running]
        assert status == 0
        assert [answer[0] for answer in answers] == [200, 200]
        assert all(len(answer[1]["results"]) == 24 for answer in answers)
        with pytest.raises(OSError):
            draining.request("GET", "/health", timeout=5)
    finally:
        draining.stop()
