"""The user-environment suite: squeeze as a user installs it, exercised through its installed command.

    python3 -m venv /tmp/u && /tmp/u/bin/python tests/user_env/smoke.py            # newest releases
    python3 -m venv /tmp/l && /tmp/l/bin/python tests/user_env/smoke.py --lowest   # lowest allowed

In a fresh venv this runs the README's "Run it" line exactly as written (it installs squeeze and pulls
the default sentiment model on first use), with HF_ENDPOINT pointing at a loopback stand-in of the Hub
that serves random-weight stand-ins under the catalogue models' real ids (tests/user_env/standins.py),
then every command through the installed `squeeze` executable in subprocesses: every task at every
precision on Hub and local models, `models` pull/list/info/rm, `doctor`, `completion`, and one error per
exit status. `--lowest` first installs the lowest version of every dependency that pyproject.toml
allows, so the floors it claims are tested. The standard library only: the venv has no test extras,
so a dependency pyproject forgets to declare fails here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(HERE.parent)]  # standins; tests/hubserver.py

import standins  # noqa: E402
from hubserver import CDN_HOST, HUB_HOST, HubServer  # noqa: E402

PRECISIONS = ("auto", "int8", "fp32")  # auto: bf16 on a CPU with native bf16, else fp32
TIMEOUT = 300


class Session:
    """What the tests share: the Hub, the user's environment, the local model directories."""

    env: dict[str, str]
    home: Path
    models: Path  # local model directories
    hub: HubServer


def squeeze(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    data = input.encode() if isinstance(input, str) else input
    return subprocess.run(["squeeze", *args], input=data, capture_output=True, env={**Session.env, **(env or {})},
                          cwd=Session.home, timeout=timeout)


def json_lines(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


class SqueezeTest(unittest.TestCase):
    maxDiff = None

    def ok(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        result = squeeze(*args, **kwargs)
        self.assertEqual(result.returncode, 0, f"squeeze {shlex.join(args)}: {result.stderr.decode()}")
        self.assertNotIn(b"Traceback", result.stderr)
        self.assertNotIn(b"Warning", result.stderr)  # e.g. torch's "Failed to initialize NumPy"
        return result

    def fails(self, status: int, *args: str, starts: str, **kwargs) -> subprocess.CompletedProcess:
        """squeeze exits with `status`, and says so in one line (and at most one hint) on stderr."""
        result = squeeze(*args, **kwargs)
        stderr = result.stderr.decode()
        self.assertEqual(result.returncode, status, f"squeeze {shlex.join(args)}: {stderr}")
        lines = stderr.splitlines()
        self.assertTrue(lines and lines[0].startswith(starts), stderr)
        self.assertTrue(len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  hint: ")), stderr)
        self.assertNotIn("internal error", stderr)
        return result


TEXTS = "Ada Lovelace wrote the first program.\nI loved this film.\n"
CONTEXT = "Ada Lovelace lived in London and wrote the first program for Charles Babbage's engine.\n"


class EveryTaskAtEveryPrecision(SqueezeTest):
    """The catalogue's models pulled from the Hub (no --model), and local directories (--model DIR)."""

    def test_sentiment(self):
        for precision in PRECISIONS:
            for model in ([], ["-m", str(Session.models / "sentiment")]):
                rows = json_lines(self.ok("sentiment", "--precision", precision, *model, input=TEXTS))
                self.assertEqual([row["line"] for row in rows], [1, 2])
                self.assertTrue(all(row["label"] in ("NEGATIVE", "POSITIVE") and 0 <= row["score"] <= 1 for row in rows))

    def test_classify_with_a_model_and_all_scores(self):
        for precision in PRECISIONS:
            rows = json_lines(self.ok("classify", "-m", "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
                                      "--all-scores", "--precision", precision, input=TEXTS))
            self.assertEqual([len(row["labels"]) for row in rows], [2, 2])
            self.assertAlmostEqual(sum(entry["score"] for entry in rows[0]["labels"]), 1.0, places=5)

    def test_zero_shot(self):
        for precision in PRECISIONS:
            for model in ([], ["-m", str(Session.models / "nli")]):
                rows = json_lines(self.ok("classify", "--labels", "science,cooking", "--precision", precision, *model,
                                          input=TEXTS))
                self.assertEqual([sorted(row["labels"]) for row in rows], [["cooking", "science"]] * 2)
                self.assertAlmostEqual(sum(rows[0]["scores"]), 1.0, places=5)

    def test_qa(self):
        for precision in PRECISIONS:
            for model in ([], ["-m", str(Session.models / "qa")]):
                (row,) = json_lines(self.ok("qa", "-q", "Where did she live?", "--precision", precision, *model,
                                            input=CONTEXT))
                (answer,) = row["answers"]
                if answer["answer"] is not None:
                    self.assertEqual(CONTEXT[answer["start"]:answer["end"]], answer["answer"])

    def test_ner(self):
        for precision in PRECISIONS:
            for model in ([], ["-m", str(Session.models / "ner")]):
                (row,) = json_lines(self.ok("ner", "--precision", precision, *model, input=CONTEXT))
                for entity in row["entities"]:
                    self.assertEqual(CONTEXT[entity["start"]:entity["end"]], entity["text"])

    def test_embed_as_json_lines_and_npy(self):
        for precision in PRECISIONS:
            for model in ([], ["-m", str(Session.models / "embed")]):
                rows = json_lines(self.ok("embed", "--precision", precision, *model, input=TEXTS))
                self.assertEqual([len(row["embedding"]) for row in rows], [standins.HIDDEN] * 2)
                self.assertAlmostEqual(sum(x * x for x in rows[0]["embedding"]), 1.0, places=4)  # normalised
                npy = self.ok("embed", "--format", "npy", "--precision", precision, *model, input=TEXTS).stdout
                self.assertTrue(npy.startswith(b"\x93NUMPY"))
                self.assertIn(b"(2, %d)" % standins.HIDDEN, npy[:128])

    def test_rerank(self):
        for precision in PRECISIONS:
            for model in ([], ["-m", str(Session.models / "rerank")]):
                rows = json_lines(self.ok("rerank", "-q", "who wrote the first program?", "--precision", precision,
                                          *model, input=TEXTS))
                self.assertEqual([row["rank"] for row in rows], [1, 2])
                self.assertGreaterEqual(rows[0]["score"], rows[1]["score"])
                self.assertTrue(all(0 <= row["score"] <= 1 and row["text"] in TEXTS for row in rows))

    def test_similar(self):
        corpus = Session.home / "faq.txt"
        corpus.write_text("How do I reset my password?\nWhere is my invoice?\nWho was Ada Lovelace?\n")
        for precision in PRECISIONS:
            rows = json_lines(self.ok("similar", "reset password", "--corpus", str(corpus), "-k", "2",
                                      "--precision", precision))
            self.assertEqual([row["rank"] for row in rows], [1, 2])
            self.assertGreaterEqual(rows[0]["score"], rows[1]["score"])
            reranked = json_lines(self.ok("similar", "reset password", "--corpus", str(corpus), "-k", "2",
                                          "--rerank", "--precision", precision))
            self.assertEqual([row["rank"] for row in reranked], [1, 2])
            self.assertTrue(all("retrieval_score" in row and row["text"] in corpus.read_text() for row in reranked))

    def test_an_index_answers_as_the_corpus_does(self):
        corpus = Session.home / "faq.txt"
        corpus.write_text("How do I reset my password?\nWhere is my invoice?\nWho was Ada Lovelace?\n")
        target = Session.home / "faq.sqidx"
        for vectors in ("float16", "int8"):
            self.ok("index", "build", str(corpus), "-o", str(target), "--vectors", vectors, "--force", "--precision", "fp32")
            self.ok("index", "add", str(target), "--precision", "fp32", input=b"Can I pay by card?\n")
            (row,) = json_lines(self.ok("similar", "--index", str(target), "reset password", "-k", "4",
                                        "--precision", "fp32"))
            direct = json_lines(self.ok("similar", "reset password", str(corpus), "-", "-k", "4", "--precision", "fp32",
                                        input=b"Can I pay by card?\n"))
            self.assertEqual(sorted(r["text"] for r in row["results"]), sorted(r["text"] for r in direct))
        self.assertEqual(json.loads(self.ok("index", "info", str(target)).stdout)["items"], 4)
        (row,) = json_lines(self.ok("similar", "--index", str(target), "invoice", "--mode", "keyword"))
        self.assertEqual([r["text"] for r in row["results"]], ["Where is my invoice?"])
        (row,) = json_lines(self.ok("similar", "--index", str(target), "my invoice", "--mode", "hybrid", "-k", "2",
                                    "--precision", "fp32"))
        self.assertEqual([r["rank"] for r in row["results"]], [1, 2])
        self.assertIn(b"already index format", self.ok("index", "upgrade", str(target)).stderr)

    def test_eval(self):
        labelled = Session.home / "sts.jsonl"
        labelled.write_text("".join(json.dumps({"text": a, "other": b, "score": s}) + "\n" for a, b, s in [
            ("a cat", "a kitten", 4), ("a cat", "the stock market", 0), ("rain today", "it is raining", 5)]))
        report = json.loads(self.ok("eval", "embed", "--pair-field", "other", "--labels-from", "score",
                                    str(labelled)).stdout)
        self.assertEqual(list(report["precisions"]), ["auto", "int8", "fp32"])
        self.assertEqual(report["precisions"]["fp32"]["agreement"], 1.0)


class TheModelStore(SqueezeTest):
    def test_pull_list_info_rm(self):
        pulled = json.loads(self.ok("models", "pull", "squeezebert-qa").stdout)
        self.assertEqual(pulled["id"], "mrm8488/squeezebert-finetuned-squadv1")
        listed = {row["id"] for row in json_lines(self.ok("models", "list"))}
        self.assertIn("mrm8488/squeezebert-finetuned-squadv1", listed)
        info = json.loads(self.ok("models", "info", "squeezebert-qa", "--verify").stdout)
        self.assertEqual((info["verified"], info["heads"][0]), ("sha256", "qa"))
        self.assertIn(b"removed squeezebert-qa", self.ok("models", "rm", "squeezebert-qa").stdout)
        listed = {row["id"] for row in json_lines(self.ok("models", "list"))}
        self.assertNotIn("mrm8488/squeezebert-finetuned-squadv1", listed)

    def test_aliases(self):
        aliases = {row["alias"] for row in json_lines(self.ok("models", "aliases"))}
        self.assertLessEqual({"distilbert-sst2", "squeezebert-mnli", "minilm-embed"}, aliases)

    def test_the_default_cache_is_in_the_users_cache_directory(self):
        self.ok("models", "pull", "distilbert-sst2")
        self.assertTrue(any((Session.home / ".cache" / "squeeze" / "entries").iterdir()))


class CommandsAboutSqueeze(SqueezeTest):
    def test_doctor_reports_every_package(self):
        report = json.loads(self.ok("doctor").stdout)
        missing = [name for name, version in report["packages"].items() if version is None]
        self.assertEqual(missing, [])
        self.assertTrue(report["hub"]["reachable"])

    def test_completion_scripts(self):
        for shell in ("bash", "zsh", "fish"):
            self.assertIn(b"_SQUEEZE_COMPLETE", self.ok("completion", shell).stdout)

    def test_help_and_completion_import_no_torch(self):
        probe = "import sys, squeezecli.cli; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, env=Session.env, text=True)
        self.assertEqual(result.stdout.strip(), "[]", result.stderr)


class ServingOverHttp(SqueezeTest):
    """`squeeze serve` from the plain install: the CLI through it, an OpenAI-shaped request, SIGTERM."""

    def test_serve(self):
        import urllib.request

        log = Session.home / "serve.log"
        with open(log, "wb") as stderr:
            server = subprocess.Popen(["squeeze", "serve", "--port", "0", "-m", str(Session.models / "embed")],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                      env=Session.env, cwd=Session.home)
        try:
            url = None
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline and server.poll() is None:
                found = re.search(r"serving on (http://\S+?)[;\s]", log.read_text())
                if found:
                    url = found[1]
                    try:
                        with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                            if answer.status == 200:
                                break
                    except OSError:
                        pass
                time.sleep(0.1)
            self.assertIsNotNone(url, log.read_text())
            model = ["-m", str(Session.models / "embed")]
            here = self.ok("embed", *model, "--no-server", input=TEXTS)
            there = self.ok("embed", *model, input=TEXTS, env={"SQUEEZE_SERVER": url})
            self.assertEqual((there.stdout, there.stderr), (here.stdout, here.stderr))
            request = urllib.request.Request(url + "/v1/embeddings", method="POST",
                                             data=json.dumps({"input": ["one", "two"], "model": model[1]}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as answer:
                data = json.loads(answer.read())["data"]
            self.assertEqual([len(item["embedding"]) for item in data], [standins.HIDDEN] * 2)
            server.send_signal(signal.SIGTERM)
            self.assertEqual(server.wait(timeout=60), 0, log.read_text())
        finally:
            server.kill()
            server.wait()


class OneErrorPerExitStatus(SqueezeTest):
    def test_2_usage(self):
        result = squeeze("sentiment", "--no-such-option")
        self.assertEqual(result.returncode, 2)
        self.assertIn(b"--no-such-option", result.stderr)

    def test_3_input(self):
        self.fails(3, "sentiment", "missing.txt", starts="squeeze: error: missing.txt: no such file")

    def test_4_model(self):
        self.fails(4, "sentiment", "-m", "nobody/nothing", input="hi\n",
                   starts="squeeze: error: model 'nobody/nothing' was not found on the Hub")

    def test_5_network(self):
        self.fails(5, "sentiment", "-m", "someone/elsewhere", input="hi\n", env={"HF_ENDPOINT": "http://127.0.0.1:9"},
                   starts="squeeze: error: model 'someone/elsewhere' is not cached and the Hub is unreachable")
        self.fails(5, "models", "pull", "someone/elsewhere", env={"HF_HUB_OFFLINE": "1"},
                   starts="squeeze: error: model 'someone/elsewhere' is not cached")

    def test_6_cache_and_its_mend(self):
        pulled = json.loads(self.ok("models", "pull", "bert-ner").stdout)
        weights = Path(pulled["path"]) / "model.safetensors"
        with open(weights, "r+b") as f:  # same size, other bytes
            f.seek(weights.stat().st_size // 2)
            f.write(b"\xff" * 4096)
        # int8 runs squeeze's cache entry; auto runs bf16 or fp32 from the Hugging Face cache.
        self.fails(6, "ner", "--precision", "int8", input="Ada\n",
                   starts="squeeze: error: the cached int8 model for 'bert-ner' is damaged")
        self.ok("models", "pull", "--force", "bert-ner")
        self.ok("ner", "--precision", "int8", input="Ada\n")

    def test_7_output(self):
        with open("/dev/full", "wb") as full:
            result = subprocess.run(["squeeze", "sentiment"], input=b"hi\n", stdout=full, stderr=subprocess.PIPE,
                                    env=Session.env, cwd=Session.home, timeout=TIMEOUT)
        self.assertEqual(result.returncode, 7, result.stderr)
        self.assertTrue(result.stderr.startswith(b"squeeze: error: cannot write the results to stdout"), result.stderr)

    def test_130_interrupted(self):
        # SIGINT at its default in the child, as in a terminal's foreground job: run in the background by a
        # shell without job control (`.ci/run &`), this process and its children inherit it ignored.
        process = subprocess.Popen(["squeeze", "sentiment", "--batch-size", "1"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=Session.env, cwd=Session.home,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            process.stdin.write(b"".join(b"line %d\n" % n for n in range(8)))
            process.stdin.flush()
            self.assertIn(b'"line":1', process.stdout.readline())  # running, on a stdin that stays open
            process.send_signal(signal.SIGINT)
            status = process.wait(timeout=60)
        finally:
            process.kill()
        self.assertEqual((status, process.stderr.read().strip()), (130, b""))  # Click ends the ^C line

    def test_141_stdout_closed_early(self):
        pipeline = "set -o pipefail; seq 1 3000 | squeeze sentiment | head -n 1 >/dev/null"
        result = subprocess.run(["bash", "-c", pipeline], capture_output=True, env=Session.env, cwd=Session.home,
                                timeout=TIMEOUT)
        self.assertEqual((result.returncode, result.stderr), (141, b""))


# -- the session --------------------------------------------------------------------------------------


def readme_run_line() -> str:
    """The README's "Run it" command, as a user would paste it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"Run it .*?\n\n    ([^\n]+)\n", readme, re.DOTALL)
    if found is None:
        raise SystemExit("README.md has no 'Run it' command")
    return found[1]


def lowest_versions() -> list[str]:
    """`name==floor` for every dependency pyproject.toml gives a floor (`name>=floor`)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = []
    for requirement in pyproject["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)(,.*)?", requirement.strip())
        if match is None:
            raise SystemExit(f"pyproject.toml: {requirement!r} has no floor this suite can pin")
        pins.append(f"{match[1]}=={match[2]}")
    return pins


def start_session(work: Path) -> None:
    Session.home = work / "home"
    Session.home.mkdir()
    Session.models = work / "models"
    hub_models = standins.build_catalogue(work / "hub")
    Session.hub = HubServer().start()
    for repo_id, directory in hub_models.items():
        Session.hub.add_repo(repo_id, directory)
    nli = ["contradiction", "entailment", "neutral"]
    standins.build(Session.models / "sentiment", "distilbert", "sequence", labels=["NEGATIVE", "POSITIVE"], seed=11)
    standins.build(Session.models / "nli", "squeezebert", "sequence", labels=nli, seed=12)
    standins.build(Session.models / "qa", "bert", "qa", seed=13)
    standins.build(Session.models / "ner", "distilbert", "token", labels=standins.NER_LABELS, seed=14, cased=True)
    standins.build(Session.models / "embed", "squeezebert", "base", seed=15, sentence_transformers=True)
    standins.build(Session.models / "rerank", "distilbert", "sequence", labels=["LABEL_0"], seed=16)
    venv_bin = str(Path(sys.executable).parent)
    keep = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL", "TMPDIR", "PIP_CONSTRAINT",
                                                "PIP_CONFIG_FILE", "PIP_INDEX_URL", "PIP_FIND_LINKS")
            if name in os.environ}
    Session.env = {
        **keep,
        "PATH": venv_bin + os.pathsep + keep.get("PATH", "/usr/bin:/bin"),
        "VIRTUAL_ENV": str(Path(sys.executable).parents[1]),
        "HOME": str(Session.home),  # a new user: default caches under ~/.cache
        "HF_ENDPOINT": Session.hub.url,
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "NO_PROXY": f"{HUB_HOST},{CDN_HOST}",
        "no_proxy": f"{HUB_HOST},{CDN_HOST}",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def run_readme_line(lowest: bool) -> None:
    if lowest:
        pins = lowest_versions()
        print("installing the lowest versions pyproject allows:", " ".join(pins), flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *pins], check=True, env=Session.env)
    line = readme_run_line()
    print(f"$ {line}", flush=True)
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", line], cwd=ROOT, env=Session.env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the README's Run it line failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["label"] in ("NEGATIVE", "POSITIVE"), last
    print(f"  -> {json.dumps(last)} ({time.monotonic() - started:.0f} s)", flush=True)
    noise = [line for line in result.stderr.splitlines() if "Warning" in line or "Traceback" in line]
    if noise:
        raise SystemExit("the README's Run it line printed warnings:\n" + "\n".join(noise))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lowest", action="store_true", help="first install the lowest versions pyproject allows")
    parser.add_argument("--no-install", action="store_true", help="squeeze is installed already: skip the Run it line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="squeeze-user-env-") as scratch:
        start_session(Path(scratch))
        try:
            if not args.no_install:
                run_readme_line(args.lowest)
            versions = subprocess.run([sys.executable, "-m", "pip", "list", "--format", "freeze"], capture_output=True,
                                      text=True, env=Session.env).stdout.split()
            print("versions:", " ".join(v for v in versions if v.split("==")[0].lower() in
                                       {"torch", "click", "rich", "tokenizers", "huggingface-hub", "huggingface_hub",
                                        "platformdirs", "safetensors", "numpy", "filelock"}), flush=True)
            suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
            result = unittest.TextTestRunner(verbosity=2).run(suite)
        finally:
            Session.hub.stop()
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
