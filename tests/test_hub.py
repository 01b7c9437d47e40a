"""squeezecli.hub against the loopback Hub (tests/hubserver.py), with the real huggingface_hub client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hubserver import HubServer
from safetensors.torch import load_file, save_file

from squeezecli.environment import Environment
from squeezecli.errors import ModelError, NetworkError
from squeezecli.store.hub import cached_snapshot, fetch, validate_repo_id

TOKEN = "hf_TestTokenThatMustNeverBeShown123"
TOKENIZER = {
    "vocab.txt": "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\n",
    "tokenizer_config.json": '{"do_lower_case": true}',
}


def write_files(directory: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return directory


def tensors(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "embeddings.weight": torch.randn(32, 16, generator=gen),  # [vocab, hidden]
        "encoder.dense.weight": torch.randn(16, 16, generator=gen),  # [hidden, hidden]
        "encoder.dense.bias": torch.randn(16, generator=gen),  # [hidden]
    }


def safetensors_bytes(tmp_path: Path, weights: dict[str, torch.Tensor]) -> bytes:
    path = tmp_path / "scratch.safetensors"
    save_file(weights, str(path))
    return path.read_bytes()


def make_repo(tmp_path: Path, name: str, files: dict[str, str | bytes]) -> Path:
    return write_files(tmp_path / "repos" / name, files)


def basic_repo(tmp_path: Path, name: str = "basic", *, seed: int = 0, config: dict | None = None) -> Path:
    return make_repo(tmp_path, name, {
        "config.json": json.dumps(config or {"model_type": "bert", "seed": seed}),
        "model.safetensors": safetensors_bytes(tmp_path, tensors(seed)),
        **TOKENIZER,
    })


def snapshot_bytes(snapshot_path: Path, files: tuple[str, ...]) -> dict[str, bytes]:
    return {name: (snapshot_path / name).read_bytes() for name in files}


def source_bytes(directory: Path, files: tuple[str, ...]) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in files}


# -- choosing what to download --------------------------------------------------------------------


def test_fetch_downloads_only_the_files_squeeze_needs(hub: HubServer, tmp_path: Path) -> None:
    weights = tensors(1)
    repo = make_repo(tmp_path, "busy", {
        "config.json": '{"model_type": "bert"}',
        "model.safetensors": safetensors_bytes(tmp_path, weights),
        "pytorch_model.bin": b"not needed when safetensors exist",
        "tf_model.h5": b"tensorflow",
        "onnx/model.onnx": b"onnx",
        "onnx/config.json": "{}",
        "README.md": "# busy",
        ".gitattributes": "*.bin filter=lfs",
        "tokenizer.json": '{"model": {}}',
        "special_tokens_map.json": '{"unk_token": "[UNK]"}',
        "modules.json": '[{"path": "1_Pooling"}]',
        "sentence_bert_config.json": '{"max_seq_length": 128}',
        "config_sentence_transformers.json": "{}",
        "1_Pooling/config.json": '{"pooling_mode_mean_tokens": true}',
        **TOKENIZER,
    })
    commit = hub.add_repo("acme/busy", repo)

    snapshot = fetch("acme/busy", progress=False)

    expected = {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "vocab.txt", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
        "1_Pooling/config.json",
    }
    assert set(snapshot.files) == expected
    assert set(hub.downloaded_files()) == expected
    assert snapshot.commit == commit
    assert snapshot.path == Environment.from_os().hf_cache_dir / "models--acme--busy" / "snapshots" / commit
    assert snapshot_bytes(snapshot.path, snapshot.files) == source_bytes(repo, snapshot.files)
    on_disk = {p.relative_to(snapshot.path).as_posix() for p in snapshot.path.rglob("*") if p.is_file()}
    assert on_disk == expected
    loaded = load_file(str(snapshot.path / "model.safetensors"))
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_fetch_uses_the_standard_cache_that_huggingface_hub_reads(hub: HubServer, tmp_path: Path) -> None:
    from huggingface_hub import try_to_load_from_cache

    hub.add_repo("acme/shared", basic_repo(tmp_path))
    snapshot = fetch("acme/shared", progress=False)

    found = try_to_load_from_cache("acme/shared", "model.safetensors", cache_dir=str(Environment.from_os().hf_cache_dir))
    assert isinstance(found, str) and Path(found) == snapshot.path / "model.safetensors"


def test_a_model_a_transformers_user_downloaded_is_reused_offline(hub: HubServer, tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    repo = basic_repo(tmp_path)
    commit = hub.add_repo("acme/their-download", repo)
    snapshot_download("acme/their-download", cache_dir=str(Environment.from_os().hf_cache_dir))  # what from_pretrained does
    hub.clear_requests()

    snapshot = fetch("acme/their-download", offline=True)

    assert hub.requests == []
    assert snapshot.commit == commit
    assert set(snapshot.files) == {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"}


def test_sharded_safetensors_fetch_the_index_and_every_shard(hub: HubServer, tmp_path: Path) -> None:
    first, second = {"a.weight": torch.randn(4, 4)}, {"b.weight": torch.randn(8), "c.bias": torch.randn(2)}
    index = {"metadata": {}, "weight_map": {
        "a.weight": "model-00001-of-00002.safetensors",
        "b.weight": "model-00002-of-00002.safetensors",
        "c.bias": "model-00002-of-00002.safetensors",
    }}
    repo = make_repo(tmp_path, "sharded", {
        "config.json": "{}",
        "model.safetensors.index.json": json.dumps(index),
        "model-00001-of-00002.safetensors": safetensors_bytes(tmp_path, first),
        "model-00002-of-00002.safetensors": safetensors_bytes(tmp_path, second),
        "pytorch_model.bin.index.json": "{}",
        "pytorch_model-00001-of-00001.bin": b"unused",
        **TOKENIZER,
    })
    hub.add_repo("acme/sharded", repo)

    snapshot = fetch("acme/sharded", progress=False)

    shards = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    assert set(snapshot.files) == {"config.json", "model.safetensors.index.json", *shards, *TOKENIZER}
    assert set(hub.downloaded_files()) == set(snapshot.files)
    loaded = {**load_file(str(snapshot.path / "model-00001-of-00002.safetensors")),
              **load_file(str(snapshot.path / "model-00002-of-00002.safetensors"))}
    assert all(torch.equal(loaded[k], v) for k, v in {**first, **second}.items())


def test_a_shard_missing_from_the_repo_is_a_model_error(hub: HubServer, tmp_path: Path) -> None:
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    repo = make_repo(tmp_path, "broken", {
        "config.json": "{}",
        "model.safetensors.index.json": json.dumps(index),
        "model-00001-of-00002.safetensors": safetensors_bytes(tmp_path, {"a": torch.zeros(1)}),
        **TOKENIZER,
    })
    hub.add_repo("acme/broken", repo)

    with pytest.raises(ModelError, match="model-00002-of-00002.safetensors"):
        fetch("acme/broken", progress=False)


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_pytorch_bin_is_the_fallback_without_safetensors(hub: HubServer, tmp_path: Path, sharded: bool) -> None:
    weights = tensors(2)
    bin_path = tmp_path / "weights.bin"
    torch.save(weights, bin_path)
    shard = "pytorch_model-00001-of-00001.bin"
    if sharded:
        files = {
            "pytorch_model.bin.index.json": json.dumps({"weight_map": dict.fromkeys(weights, shard)}),
            shard: bin_path.read_bytes(),
        }
    else:
        files = {"pytorch_model.bin": bin_path.read_bytes()}
    repo = make_repo(tmp_path, "bin", {"config.json": "{}", "flax_model.msgpack": b"flax", **files, **TOKENIZER})
    hub.add_repo("acme/bin", repo)

    snapshot = fetch("acme/bin", progress=False)

    assert set(snapshot.files) == {"config.json", *files, *TOKENIZER}
    loaded = torch.load(snapshot.path / (shard if sharded else "pytorch_model.bin"), weights_only=True)
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


@pytest.mark.parametrize(
    ("files", "complaint"),
    [
        ({"model.safetensors": b"x", **TOKENIZER}, "config.json"),
        ({"config.json": "{}", "onnx/model.onnx": b"x", "tf_model.h5": b"x", **TOKENIZER}, "weights"),
        ({"config.json": "{}", "model.safetensors": b"x", "tokenizer_config.json": "{}"}, "tokenizer"),
    ],
    ids=["no-config", "no-pytorch-weights", "no-vocabulary"],
)
def test_a_repo_squeeze_cannot_run_is_a_model_error(
    hub: HubServer, tmp_path: Path, files: dict, complaint: str
) -> None:
    hub.add_repo("acme/odd", make_repo(tmp_path, "odd", files))

    with pytest.raises(ModelError, match=complaint):
        fetch("acme/odd", progress=False)
    assert hub.downloaded_files() == []


# -- revisions ------------------------------------------------------------------------------------


def test_revisions_pin_the_content_and_report_their_commit(hub: HubServer, tmp_path: Path) -> None:
    old = hub.add_repo("acme/evolving", basic_repo(tmp_path, "v1", seed=1))
    new = hub.add_repo("acme/evolving", basic_repo(tmp_path, "v2", seed=2))
    hub.add_ref("acme/evolving", "v1.0", old)

    latest = fetch("acme/evolving", progress=False)
    by_sha = fetch("acme/evolving", old, progress=False)
    by_tag = fetch("acme/evolving", "v1.0", progress=False)

    assert (latest.commit, by_sha.commit, by_tag.commit) == (new, old, old)
    assert json.loads((latest.path / "config.json").read_text())["seed"] == 2
    assert json.loads((by_sha.path / "config.json").read_text())["seed"] == 1
    assert by_tag.path == by_sha.path
    pinned_bias = load_file(str(by_tag.path / "model.safetensors"))["encoder.dense.bias"]
    assert torch.equal(pinned_bias, tensors(1)["encoder.dense.bias"])


def test_branch_moves_are_seen_online_and_remembered_offline(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("acme/moving", basic_repo(tmp_path, "v1", seed=1))
    fetch("acme/moving", progress=False)
    new = hub.add_repo("acme/moving", basic_repo(tmp_path, "v2", seed=2))

    assert fetch("acme/moving", progress=False).commit == new
    assert fetch("acme/moving", offline=True).commit == new


def test_a_cached_pinned_commit_needs_no_request_even_online(hub: HubServer, tmp_path: Path) -> None:
    commit = hub.add_repo("acme/pinned", basic_repo(tmp_path))
    fetch("acme/pinned", commit, progress=False)
    hub.clear_requests()

    assert fetch("acme/pinned", commit, progress=False).commit == commit
    assert hub.requests == []


def test_unknown_model_is_a_model_error(hub: HubServer) -> None:
    with pytest.raises(ModelError, match="'nobody/nothing' was not found on the Hub") as caught:
        fetch("nobody/nothing", progress=False)
    assert caught.value.hint


def test_unknown_revision_is_a_model_error(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("acme/basic", basic_repo(tmp_path))

    with pytest.raises(ModelError, match="revision 'no-such-branch'"):
        fetch("acme/basic", "no-such-branch", progress=False)
    with pytest.raises(ModelError, match="revision"):
        fetch("acme/basic", "0" * 40, progress=False)


# -- gated repos and tokens -----------------------------------------------------------------------


def test_gated_repo_without_token_asks_for_hf_token(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("acme/gated", basic_repo(tmp_path), gated=True, token=TOKEN)

    with pytest.raises(NetworkError, match="HF_TOKEN") as caught:
        fetch("acme/gated", progress=False)
    assert "401" in caught.value.message
    assert cached_snapshot("acme/gated") is None


def test_gated_repo_with_a_wrong_token_never_shows_it(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("acme/gated", basic_repo(tmp_path), gated=True, token="hf_the_right_one")
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    with pytest.raises(NetworkError, match="HF_TOKEN") as caught:
        fetch("acme/gated", progress=False)
    assert TOKEN not in f"{caught.value} {caught.value.hint}"
    assert any(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.requests)  # it was really sent


@pytest.mark.parametrize("via", ["env", "argument"])
def test_gated_repo_with_the_right_token_downloads(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    repo = basic_repo(tmp_path)
    commit = hub.add_repo("acme/gated", repo, gated=True, token=TOKEN)
    if via == "env":
        monkeypatch.setenv("HF_TOKEN", TOKEN)

    snapshot = fetch("acme/gated", token=TOKEN if via == "argument" else None, progress=False)

    assert snapshot.commit == commit
    assert snapshot_bytes(snapshot.path, snapshot.files) == source_bytes(repo, snapshot.files)


def test_no_error_message_contains_the_token(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("acme/basic", basic_repo(tmp_path))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    failures = [("nobody/nothing", None, False), ("acme/basic", "nope", False), ("acme/uncached", None, True)]
    for repo_id, revision, offline in failures:
        with pytest.raises((ModelError, NetworkError)) as caught:
            fetch(repo_id, revision, offline=offline, progress=False)
        assert TOKEN not in f"{caught.value} {caught.value.hint}"


# -- failures mid-way, offline mode ----------------------------------------------------------------


def test_server_dying_mid_download_is_a_network_error_and_a_retry_recovers(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    # Small chunks so the part received before the cut reaches the disk, as it does for real (large) weights,
    # and the retry has a partial file to resume from where the library supports that (0.x does, with Range).
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    weights = {"big.weight": torch.randn(64, 64)}  # [64, 64] -> 16 KiB, many chunks
    repo = make_repo(tmp_path, "flaky", {
        "config.json": "{}", "model.safetensors": safetensors_bytes(tmp_path, weights), **TOKENIZER,
    })
    hub.add_repo("acme/flaky", repo)
    hub.fail_after_bytes("model.safetensors", 5000)

    with pytest.raises(NetworkError, match="interrupted"):
        fetch("acme/flaky", progress=False)
    # The partial download must not pass for a usable model, online or off.
    assert cached_snapshot("acme/flaky") is None
    with pytest.raises(NetworkError, match="not cached"):
        fetch("acme/flaky", offline=True)

    hub.clear_faults()
    snapshot = fetch("acme/flaky", progress=False)

    assert snapshot_bytes(snapshot.path, snapshot.files) == source_bytes(repo, snapshot.files)
    assert torch.equal(load_file(str(snapshot.path / "model.safetensors"))["big.weight"], weights["big.weight"])


def test_an_interrupted_tokenizer_download_is_not_a_complete_snapshot(hub: HubServer, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "late", {
        "config.json": "{}", "model.safetensors": safetensors_bytes(tmp_path, tensors(0)),
        "vocab.txt": "\n".join(f"token{i}" for i in range(2000)),
    })
    hub.add_repo("acme/late", repo)
    hub.fail_after_bytes("vocab.txt", 100)

    with pytest.raises(NetworkError):
        fetch("acme/late", progress=False)
    assert cached_snapshot("acme/late") is None


def test_offline_after_caching_makes_no_request(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = hub.add_repo("acme/basic", basic_repo(tmp_path))
    online = fetch("acme/basic", progress=False)
    hub.clear_requests()

    by_argument = fetch("acme/basic", offline=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    by_env = fetch("acme/basic")
    by_sha = fetch("acme/basic", commit)

    assert hub.requests == []
    assert by_argument == by_env == by_sha == online


def test_offline_and_not_cached_is_a_network_error(hub: HubServer) -> None:
    with pytest.raises(NetworkError, match="'acme/absent' is not cached and the Hub is unreachable") as caught:
        fetch("acme/absent", offline=True)
    assert caught.value.hint
    assert hub.requests == []


def test_unreachable_hub_falls_back_to_the_cache(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("acme/basic", basic_repo(tmp_path))
    cached = fetch("acme/basic", progress=False)
    hub.stop()

    assert fetch("acme/basic", progress=False) == cached
    with pytest.raises(NetworkError, match="'acme/other' is not cached and the Hub is unreachable"):
        fetch("acme/other", progress=False)


def test_progress_false_leaves_huggingface_hub_progress_bars_as_they_were(hub: HubServer, tmp_path: Path) -> None:
    from huggingface_hub.utils import are_progress_bars_disabled

    hub.add_repo("acme/basic", basic_repo(tmp_path))
    before = are_progress_bars_disabled()
    fetch("acme/basic", progress=False)
    assert are_progress_bars_disabled() == before


# -- repo ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "repo_id",
    ["", "../x", "/abs", "a/b/c", "a..b", "a/", "/", "-a", "a.", "owner/.hidden", "a--b", "a b", "a\\b", "a\nb",
     "x" * 97],
)
def test_invalid_repo_ids_are_rejected_before_any_request(hub: HubServer, repo_id: str) -> None:
    with pytest.raises(ModelError) as caught:
        fetch(repo_id, progress=False)
    assert "\n" not in caught.value.message
    assert hub.requests == []


@pytest.mark.parametrize("repo_id", ["bert-base-uncased", "squeezebert/squeezebert-mnli", "Org_1/name.v2", "x" * 96])
def test_valid_repo_ids_are_accepted(repo_id: str) -> None:
    assert validate_repo_id(repo_id) == repo_id


@pytest.mark.parametrize("revision", ["../../etc", "/main", "a//b", "", "main\n"])
def test_invalid_revisions_are_rejected_before_any_request(hub: HubServer, revision: str) -> None:
    with pytest.raises(ModelError, match="invalid revision"):
        fetch("acme/basic", revision, progress=False)
    assert hub.requests == []
