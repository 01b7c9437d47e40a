"""squeezecli.store and squeezecli.assembly.loader: pull -> quantize -> cache -> load, against the loopback Hub
with the real download code.

Models are tiny random-weight checkpoints built by tests/factory.py; most use the ~2000-token cased
vocabulary to stay fast, the size and fidelity tests the real 30522-token uncased one.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import factory
import pytest
import torch
from hubserver import HubServer
from sentences import HANDWRITTEN

from squeezecli.environment import Environment
from squeezecli.errors import CacheError, ModelError, NetworkError
from squeezecli.assembly import loader
from squeezecli.model.runtime import Runtime
from squeezecli.model.tokenizer import collate
from squeezecli.assembly import artifact as quantize
from squeezecli.precision import int8
from squeezecli.store import cache

SMALL = "wordpiece_cased"
TEXTS = HANDWRITTEN[:8]
TOKEN = "hf_SecretTokenThatMustNeverBeShown42"
MNLI_LABELS = {0: "contradiction", 1: "entailment", 2: "neutral"}


@pytest.fixture
def quantize_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts quantizations, i.e. entry builds."""
    calls: list[str] = []
    real = quantize.quantize

    def counting(runtime, *args, **kwargs):
        calls.append(runtime.name)
        return real(runtime, *args, **kwargs)

    monkeypatch.setattr(quantize, "quantize", counting)
    return calls


def outputs(runtime: Runtime, texts: list[str] = TEXTS) -> torch.Tensor:
    return runtime.forward(runtime.tokenizer.encode(texts, max_length=64)).float()


def cache_dir() -> Path:
    return Path(os.environ["SQUEEZE_CACHE_DIR"])


def collecting(notices: list[str]) -> Environment:
    """This process's environment, with the notices squeeze prints on stderr collected into `notices`."""

    class Notices(io.StringIO):
        def write(self, text: str) -> int:
            notices.extend(line.removeprefix("squeeze: ") for line in text.splitlines())
            return len(text)

    return dataclasses.replace(Environment.from_os(), stderr=Notices())


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


# -- pull, cache, reuse ------------------------------------------------------------------------------


def test_pull_builds_an_int8_entry_once_and_records_it(hub: HubServer, checkpoints, quantize_calls) -> None:
    source = checkpoints("sst", "distilbert", "sequence")
    commit = hub.add_repo("acme/sst", source)

    entry = loader.pull("acme/sst")

    assert (entry.source_id, entry.commit, entry.kind) == ("acme/sst", commit, "hub")
    assert entry.heads == ["sequence", "base"]
    manifest = entry.manifest
    assert manifest["architecture"] == "distilbert"
    assert manifest["source"]["revision"] == "main"
    assert set(manifest["files"]) >= {"model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json"}
    assert manifest["size"]["source"] == sum(p.stat().st_size for p in source.iterdir())
    assert manifest["size"]["int8"] == sum(r["size"] for r in manifest["files"].values())
    plain = Runtime.from_dir(source, "sequence").encoder.state_dict()  # the weights as the checkpoint holds them
    assert manifest["parameters"] == sum(t.numel() for t in plain.values())
    cache.check_entry(entry, full=True)

    again = loader.pull("acme/sst")
    assert again.key == entry.key
    assert len(quantize_calls) == 1
    assert hub.downloaded_files().count("model.safetensors") == 1
    assert [e.key for e in cache.list_entries()] == [entry.key]


def test_load_runtime_pulls_on_first_use_then_loads_without_the_network(hub: HubServer, checkpoints) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    notices: list[str] = []

    first = loader.load_runtime("acme/sst", "sequence", env=collecting(notices), precision="int8")
    assert len(notices) == 1 and "acme/sst" in notices[0] and "first time" in notices[0]
    assert first.model_dir.parent == cache_dir() / "entries"

    hub.clear_requests()
    second = loader.load_runtime("acme/sst", "sequence", env=collecting(notices), precision="int8")
    assert hub.requests == []
    assert len(notices) == 1
    torch.testing.assert_close(outputs(second), outputs(first))


def test_int8_artifact_is_at_most_35_percent_of_the_fp32_checkpoint(hub: HubServer, checkpoints) -> None:
    source = checkpoints("sst-30k", "distilbert", "sequence", tokenizer="wordpiece_uncased")
    hub.add_repo("acme/sst-30k", source)

    entry = loader.pull("acme/sst-30k")

    int8_weights = (entry.path / "model.safetensors").stat().st_size
    assert int8_weights <= 0.35 * (source / "model.safetensors").stat().st_size
    assert entry.manifest["size"]["int8"] <= 0.35 * entry.manifest["size"]["source"]
    kept = [name for name in entry.manifest["quantization"]["meta"]["fp32"] if name != "other"]
    assert not kept, "calibration kept fp32: the size would mislead"


def test_int8_model_agrees_with_fp32(hub: HubServer, checkpoints) -> None:
    hub.add_repo("acme/sst-30k", checkpoints("sst-30k", "distilbert", "sequence", tokenizer="wordpiece_uncased"))
    texts = HANDWRITTEN[:16]

    int8 = outputs(loader.load_runtime("acme/sst-30k", "sequence", precision="int8"), texts)  # [N, 2]
    fp32 = outputs(loader.load_runtime("acme/sst-30k", "sequence", precision="fp32"), texts)  # [N, 2]

    error = (int8 - fp32).abs().max()
    spread = fp32.std()
    assert error < 0.1 * spread + 1e-3, (error, spread)
    # The label can only flip where fp32 itself is nearly undecided.
    margin = (fp32[:, 1] - fp32[:, 0]).abs()
    decided = margin > 2 * error
    assert decided.sum() >= len(texts) // 2
    assert torch.equal(int8.argmax(-1)[decided], fp32.argmax(-1)[decided])


def test_revision_pinning_follows_the_commit(hub: HubServer, checkpoints) -> None:
    old_dir = checkpoints("sst", "distilbert", "sequence")
    new_dir = checkpoints("sst-seed1", "distilbert", "sequence", seed=1)
    old = hub.add_repo("acme/sst", old_dir)
    new = hub.add_repo("acme/sst", new_dir)  # main moves here
    hub.add_ref("acme/sst", "v1", old)

    assert loader.pull("acme/sst", "v1").commit == old
    assert loader.pull("acme/sst").commit == new
    assert loader.pull("acme/sst", old).commit == old

    pinned = outputs(loader.load_runtime("acme/sst", "sequence", revision="v1", precision="int8"))
    latest = outputs(loader.load_runtime("acme/sst", "sequence", precision="int8"))
    old_fp32, new_fp32 = outputs(Runtime.from_dir(old_dir, "sequence")), outputs(Runtime.from_dir(new_dir, "sequence"))
    assert (pinned - old_fp32).abs().max() < (pinned - new_fp32).abs().max() / 4
    assert (latest - new_fp32).abs().max() < (latest - old_fp32).abs().max() / 4
    assert loader.load_runtime("acme/sst", "sequence", revision="v1", precision="fp32").model_dir.name == old
    assert len(cache.list_entries()) == 2


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_float_run_remembers_its_commit_until_the_next_pull(hub: HubServer, checkpoints, precision) -> None:
    """The default precision runs the checkpoint itself: its first run records the commit the branch was
    at, so later runs make no request and run the same weights, until `models pull` moves it on."""
    first = hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    assert loader.load_runtime("acme/sst", "sequence", precision=precision).model_dir.name == first
    moved = hub.add_repo("acme/sst", checkpoints("sst-seed1", "distilbert", "sequence", seed=1))
    asked = len(hub.requests)
    assert loader.load_runtime("acme/sst", "sequence", precision=precision).model_dir.name == first
    assert len(hub.requests) == asked
    assert loader.pull("acme/sst").commit == moved
    assert loader.load_runtime("acme/sst", "sequence", precision=precision).model_dir.name == moved


def test_a_float_run_whose_commit_cannot_be_recorded_still_runs(hub: HubServer, checkpoints, monkeypatch) -> None:
    """A read-only or full squeeze cache: nothing is recorded, each run asks the Hub again, and runs."""
    import errno

    from squeezecli.store import refs

    def read_only(*args):
        raise OSError(errno.EROFS, "Read-only file system")

    commit = hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    monkeypatch.setattr(refs, "write_ref", read_only)
    for _ in range(2):
        asked = len(hub.requests)
        assert loader.load_runtime("acme/sst", "sequence", precision="fp32").model_dir.name == commit
        assert len(hub.requests) > asked


def test_base_head_of_a_classifier_is_its_encoder(hub: HubServer, checkpoints) -> None:
    source = checkpoints("sst", "distilbert", "sequence")
    hub.add_repo("acme/sst", source)
    reference = factory.tf.AutoModel.from_pretrained(source).eval()  # the DistilBertModel inside the classifier

    for precision in ("fp32", "int8"):
        runtime = loader.load_runtime("acme/sst", "base", precision=precision)
        encodings = runtime.tokenizer.encode(TEXTS[:2], max_length=64)
        hidden = runtime.forward(encodings)  # [B, T, H]
        batch = collate(encodings, runtime.tokenizer.pad_id)
        expected = factory.hf_outputs(reference, "base", batch["input_ids"], batch["attention_mask"])  # [B, T, H]
        assert hidden.shape == expected.shape
        tolerance = 1e-4 if precision == "fp32" else 0.1 * expected.std().item()
        real = batch["attention_mask"].bool()  # [B, T]: padding positions' states are undefined
        assert (hidden - expected)[real].abs().max() < tolerance


def test_a_head_the_checkpoint_lacks_is_a_model_error(hub: HubServer, checkpoints) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    for precision in ("int8", "fp32"):
        with pytest.raises(ModelError, match="sequence classifier, not a question-answering model"):
            loader.load_runtime("acme/sst", "qa", precision=precision)


def test_sentence_transformers_pooling_files_travel_with_the_entry(hub: HubServer, checkpoints, tmp_path) -> None:
    embedder = copy_tree(checkpoints("bert-base", "bert", "base"), tmp_path / "embedder")
    (embedder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (embedder / "1_Pooling").mkdir()
    pooling = json.dumps({"word_embedding_dimension": 64, "pooling_mode_mean_tokens": True})
    (embedder / "1_Pooling" / "config.json").write_text(pooling)
    hub.add_repo("acme/embedder", embedder)

    runtime = loader.load_runtime("acme/embedder", "base", precision="int8")

    assert (runtime.model_dir / "1_Pooling" / "config.json").read_text() == pooling
    assert (runtime.model_dir / "modules.json").is_file()
    assert cache.info("acme/embedder").heads == ["base"]


# -- failures on the way in ------------------------------------------------------------------------------


def test_unknown_model_is_a_model_error(hub: HubServer) -> None:
    with pytest.raises(ModelError, match="not found"):
        loader.pull("acme/does-not-exist")
    with pytest.raises(ModelError, match="invalid model id"):
        loader.pull("acme/../../etc")
    assert cache.list_entries() == []


def test_gated_model_asks_for_hf_token_and_never_shows_it(hub: HubServer, checkpoints, monkeypatch) -> None:
    hub.add_repo("acme/gated", checkpoints("sst", "distilbert", "sequence"), gated=True, token=TOKEN)

    with pytest.raises(NetworkError) as anonymous:
        loader.pull("acme/gated")
    assert "HF_TOKEN" in anonymous.value.message + (anonymous.value.hint or "")

    monkeypatch.setenv("HF_TOKEN", "hf_WrongTokenAlsoSecret")
    with pytest.raises(NetworkError) as wrong:
        loader.pull("acme/gated")
    assert "hf_WrongTokenAlsoSecret" not in wrong.value.message + (wrong.value.hint or "")
    assert cache.list_entries() == []

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    entry = loader.pull("acme/gated")
    assert TOKEN not in json.dumps(entry.manifest)


def test_server_dying_mid_download_leaves_no_entry_and_a_retry_succeeds(hub: HubServer, checkpoints) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    hub.fail_after_bytes("model.safetensors", 4096)

    with pytest.raises(NetworkError, match="interrupted"):
        loader.pull("acme/sst")
    assert cache.list_entries() == []
    assert not (cache_dir() / "entries").exists() or not any((cache_dir() / "entries").iterdir())

    hub.clear_faults()
    assert loader.pull("acme/sst").source_id == "acme/sst"


def test_offline_once_cached_makes_no_request(hub: HubServer, checkpoints, monkeypatch) -> None:
    commit = hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    expected = outputs(loader.load_runtime("acme/sst", "sequence", precision="int8"))
    hub.clear_requests()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.testing.assert_close(outputs(loader.load_runtime("acme/sst", "sequence", precision="int8")), expected)
    assert loader.pull("acme/sst").commit == commit
    loader.load_runtime("acme/sst", "sequence", precision="fp32")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert loader.pull("acme/sst", offline=True).commit == commit
    loader.load_runtime("acme/sst", "sequence", offline=True, precision="int8")
    assert hub.requests == []


def test_offline_and_not_cached_is_a_network_error(hub: HubServer, checkpoints) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    with pytest.raises(NetworkError, match="not cached"):
        loader.load_runtime("acme/sst", "sequence", offline=True, precision="int8")
    assert hub.requests == []


def test_offline_pull_quantizes_a_model_already_in_the_hf_cache(hub: HubServer, checkpoints) -> None:
    from squeezecli.store import hub as hub_module

    commit = hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    hub_module.fetch("acme/sst", progress=False)  # as if transformers had downloaded it
    hub.clear_requests()

    assert loader.pull("acme/sst", offline=True).commit == commit
    assert hub.requests == []


# -- fault safety ---------------------------------------------------------------------------------


def test_quantization_killed_while_writing_leaves_no_entry(hub: HubServer, checkpoints, monkeypatch) -> None:
    from squeezecli.checkpoint import tensorfile

    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    real_write = tensorfile.write

    def dies_half_way(path, tensors, metadata=None):
        real_write(path, tensors, metadata=metadata)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        raise KeyboardInterrupt  # what Ctrl-C delivers in the middle of a write

    monkeypatch.setattr(tensorfile, "write", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        loader.pull("acme/sst")
    assert cache.list_entries() == []
    assert list((cache_dir() / "tmp").iterdir()) == []

    monkeypatch.setattr(tensorfile, "write", real_write)
    entry = loader.pull("acme/sst")
    cache.check_entry(entry, full=True)


def test_a_pull_killed_by_sigkill_is_not_mistaken_for_a_model(hub: HubServer, checkpoints, tmp_path) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    # A real process, killed with SIGKILL while it writes the weights: no cleanup code runs in it.
    script = textwrap.dedent("""
        import sys, time
        from squeezecli.assembly import loader
        from squeezecli.checkpoint import tensorfile
        real_write = tensorfile.write
        def stalls(path, tensors, metadata=None):
            real_write(path, tensors, metadata=metadata)
            print("writing", flush=True)
            time.sleep(60)
        tensorfile.write = stalls
        loader.pull("acme/sst", progress=False)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    leftovers = list((cache_dir() / "tmp").iterdir())
    assert len(leftovers) == 1 and (leftovers[0] / "model.safetensors").is_file()
    assert cache.list_entries() == []
    with pytest.raises(ModelError, match="not in squeeze's model cache"):
        cache.info("acme/sst")

    loader.load_runtime("acme/sst", "sequence", precision="int8")
    assert list((cache_dir() / "tmp").iterdir()) == []  # the dead process's directory was cleaned up
    assert len(cache.list_entries()) == 1


def test_concurrent_pulls_build_once_and_both_succeed(hub: HubServer, checkpoints, quantize_calls) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    results: list[cache.Entry] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def pull() -> None:
        start.wait()
        try:
            results.append(loader.pull("acme/sst", progress=False))
        except BaseException as exc:  # noqa: BLE001 -- reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert len(results) == 2 and results[0].key == results[1].key
    assert len(quantize_calls) == 1
    assert len(cache.list_entries()) == 1


def test_truncated_weights_are_a_cache_error_naming_the_fix(hub: HubServer, checkpoints) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    entry = loader.pull("acme/sst")
    weights = entry.path / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size - 100)

    with pytest.raises(CacheError) as damaged:
        loader.load_runtime("acme/sst", "sequence", precision="int8")
    assert "damaged" in damaged.value.message
    assert "squeeze models pull --force acme/sst" in damaged.value.hint
    assert "squeeze models rm acme/sst" in damaged.value.hint

    loader.pull("acme/sst", force=True)
    loader.load_runtime("acme/sst", "sequence", precision="int8")


def test_a_flipped_byte_is_found_at_load_by_its_new_mtime(hub: HubServer, checkpoints) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    entry = loader.pull("acme/sst")
    weights = entry.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor data: sizes and header still look right
    weights.write_bytes(bytes(data))  # ...but its modification time is new, so the checksum is checked

    with pytest.raises(CacheError, match="checksum") as damaged:
        loader.load_runtime("acme/sst", "sequence", precision="int8")
    assert "pull --force" in damaged.value.hint


def test_a_file_touched_but_unchanged_still_loads(hub: HubServer, checkpoints) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    entry = loader.pull("acme/sst")
    os.utime(entry.path / "model.safetensors", ns=(1, 1))  # as a copy without -p leaves it
    loader.load_runtime("acme/sst", "sequence", precision="int8")


def test_a_flipped_byte_is_found_by_verify_and_repaired_by_pull(hub: HubServer, checkpoints, quantize_calls) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    entry = loader.pull("acme/sst")
    weights = entry.path / "model.safetensors"
    recorded = weights.stat().st_mtime_ns
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor data: sizes and header still look right
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(recorded, recorded))  # and the time it was built, as a careful saboteur leaves it

    cache.info("acme/sst")  # the cheap check every load makes does not read the data then
    with pytest.raises(CacheError, match="checksum") as damaged:
        cache.info("acme/sst", verify=True)
    assert "pull --force" in damaged.value.hint

    loader.pull("acme/sst")  # pull checks checksums and rebuilds what is damaged
    assert len(quantize_calls) == 2
    cache.info("acme/sst", verify=True)


def test_a_damaged_header_is_caught_by_the_cheap_check(hub: HubServer, checkpoints) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    entry = loader.pull("acme/sst")
    weights = entry.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[9] = ord("#")  # the first byte of the JSON header, after its 8-byte length
    weights.write_bytes(bytes(data))

    with pytest.raises(CacheError, match="header"):
        loader.load_runtime("acme/sst", "sequence", precision="int8")


# -- local directories -------------------------------------------------------------------------------


def test_local_directory_is_cached_by_content(checkpoints, tmp_path, quantize_calls) -> None:
    local = copy_tree(checkpoints("sst", "distilbert", "sequence"), tmp_path / "my-model")

    first = loader.pull(str(local))
    assert first.kind == "dir" and first.source_id == str(local.resolve())
    assert loader.pull(str(local)).key == first.key
    before = outputs(loader.load_runtime(str(local), "sequence", precision="int8"))
    assert len(quantize_calls) == 1

    shutil.copyfile(checkpoints("sst-seed1", "distilbert", "sequence", seed=1) / "model.safetensors",
                    local / "model.safetensors")
    after_runtime = loader.load_runtime(str(local), "sequence", env=collecting([]), precision="int8")
    assert len(quantize_calls) == 2
    assert after_runtime.model_dir != first.path
    after = outputs(after_runtime)
    fp32_now = outputs(Runtime.from_dir(local, "sequence"))
    assert (after - fp32_now).abs().max() < (before - fp32_now).abs().max() / 4
    assert {e.commit for e in cache.list_entries()} == {first.commit, cache.info(str(local)).commit}

    removed = cache.remove([str(local)])
    assert len(removed) == 2 and cache.list_entries() == []


# -- the catalogue's checks ----------------------------------------------------------------------------


def test_alias_applies_the_catalogue_nli_labels(hub: HubServer, checkpoints, tmp_path) -> None:
    # squeezebert/squeezebert-mnli's real config.json has only LABEL_0/1/2 and no `architectures`.
    fake = copy_tree(checkpoints("mnli", "squeezebert", "sequence", labels=["LABEL_0", "LABEL_1", "LABEL_2"]),
                     tmp_path / "mnli")
    edit_config(fake, architectures=None)
    hub.add_repo("squeezebert/squeezebert-mnli", fake)

    for precision in ("int8", "fp32"):
        runtime = loader.load_runtime("squeezebert-mnli", "sequence", precision=precision)
        assert runtime.config.id2label == MNLI_LABELS
    entry = cache.info("squeezebert/squeezebert-mnli")  # by Hub id: the same entry
    assert entry.alias == "squeezebert-mnli" and entry.heads == ["sequence", "base"]
    saved = json.loads((entry.path / "config.json").read_text())
    assert saved["id2label"] == {str(i): label for i, label in MNLI_LABELS.items()}
    assert loader.load_runtime("zero-shot", "sequence", precision="int8").config.id2label == MNLI_LABELS  # the task's default


def test_alias_with_the_wrong_architecture_is_refused(hub: HubServer, checkpoints) -> None:
    hub.add_repo("distilbert/distilbert-base-uncased-finetuned-sst-2-english", checkpoints("bert-qa", "bert", "qa"))
    with pytest.raises(ModelError, match="should be a distilbert checkpoint but is bert"):
        loader.pull("distilbert-sst2")
    with pytest.raises(ModelError, match="should be a distilbert"):
        loader.load_runtime("sentiment", "sequence", precision="fp32")
    assert cache.list_entries() == []


def test_alias_with_other_labels_is_refused(hub: HubServer, checkpoints) -> None:
    source = checkpoints("sst-neg-pos", "distilbert", "sequence", labels=["neg", "pos"])
    hub.add_repo("distilbert/distilbert-base-uncased-finetuned-sst-2-english", source)
    with pytest.raises(ModelError, match=r"has labels \[neg, pos\], expected \[NEGATIVE, POSITIVE\]"):
        loader.pull("distilbert-sst2")


def test_the_rerank_alias_takes_a_one_logit_cross_encoder_only(hub: HubServer, checkpoints) -> None:
    # cross-encoder/ms-marco-MiniLM-L-6-v2's config.json: BertForSequenceClassification, id2label {0: LABEL_0}.
    hub.add_repo("cross-encoder/ms-marco-MiniLM-L-6-v2", checkpoints("two-logits", "bert", "sequence",
                                                                     labels=["no", "yes"]))
    with pytest.raises(ModelError, match=r"has labels \[no, yes\], expected \[LABEL_0\]"):
        loader.load_runtime("rerank", "sequence", precision="fp32")
    assert cache.list_entries() == []


# -- listing and removing -----------------------------------------------------------------------------


def test_remove_deletes_every_commit_of_a_model_and_nothing_on_a_typo(hub: HubServer, checkpoints) -> None:
    first = hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    hub.add_repo("acme/sst", checkpoints("sst-seed1", "distilbert", "sequence", seed=1))
    hub.add_repo("acme/other", checkpoints("sst", "distilbert", "sequence"))
    loader.pull("acme/sst", first)
    loader.pull("acme/sst")
    loader.pull("acme/other")

    with pytest.raises(ModelError, match="'acme/typo' is not in squeeze's model cache"):
        cache.remove(["acme/sst", "acme/typo"])
    assert len(cache.list_entries()) == 3

    removed = cache.remove(["acme/sst"])
    assert {e.source_id for e in removed} == {"acme/sst"} and len(removed) == 2
    assert [e.source_id for e in cache.list_entries()] == ["acme/other"]
    assert not (cache_dir() / "refs" / "hub" / "acme--sst" / "main").exists()

    cache.remove([], all=True)
    assert cache.list_entries() == []


def test_list_orders_by_last_use(hub: HubServer, checkpoints) -> None:
    hub.add_repo("acme/a", checkpoints("sst", "distilbert", "sequence"))
    hub.add_repo("acme/b", checkpoints("sst", "distilbert", "sequence"))
    loader.pull("acme/a")
    loader.pull("acme/b")
    time.sleep(0.05)
    loader.load_runtime("acme/a", "sequence", precision="int8")
    assert [e.source_id for e in cache.list_entries()] == ["acme/a", "acme/b"]


def test_no_int8_kernel_falls_back_to_fp32_with_a_notice(hub: HubServer, checkpoints, monkeypatch) -> None:
    hub.add_repo("acme/sst", checkpoints("sst", "distilbert", "sequence"))
    monkeypatch.setattr(int8, "int8_backend", lambda choice="auto": None)
    notices: list[str] = []

    runtime = loader.load_runtime("acme/sst", "sequence", env=collecting(notices), precision="int8")

    assert sum("fp32" in notice for notice in notices) == 1
    assert runtime.model_dir.is_relative_to(Path(os.environ["HF_HUB_CACHE"]))
    assert cache.list_entries() == []
