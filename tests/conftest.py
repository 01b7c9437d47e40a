"""Shared fixtures. Test helpers (factory, vocabs, hubserver) live beside the tests and import directly."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# Ray reads its cluster settings once, on import, and any test module may import squeezecli.integrations.raydata
# (which imports ray) while pytest collects: local Ray clusters stay on loopback only if this comes first.
from squeezecli.cli.distributed import loopback_only_ray  # noqa: E402

loopback_only_ray()

# Tiny test models spend more time synchronising two threads than computing; one is faster and steadier.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Every test gets its own squeeze and Hugging Face caches: nothing leaks between tests or to ~."""
    monkeypatch.setenv("SQUEEZE_CACHE_DIR", str(tmp_path / "squeeze-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("SQUEEZE_DEBUG", raising=False)

from hubserver import CDN_HOST, HUB_HOST, HubServer  # noqa: E402  (tests/hubserver.py: the standard library only)


def _point_huggingface_hub_at(monkeypatch, endpoint: str, hf_home: Path) -> None:
    """Patch the values huggingface_hub froze at import, for callers that rely on its defaults."""
    import huggingface_hub.constants as constants
    import huggingface_hub.file_download as file_download

    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    if hasattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE"):  # 0.x formats URLs from its own copy
        monkeypatch.setattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # Never send a token the developer stored with `hf auth login`.
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))


@pytest.fixture
def hub(tmp_path: Path, monkeypatch):
    """A fresh loopback Hub; HF_ENDPOINT points at it and the HF cache is private to the test."""
    server = HubServer().start()
    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", f"{HUB_HOST},{CDN_HOST}")
    monkeypatch.setenv("no_proxy", f"{HUB_HOST},{CDN_HOST}")
    _point_huggingface_hub_at(monkeypatch, server.url, hf_home)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """`checkpoint(name, arch, head, tokenizer="wordpiece_cased", **kw)`: a tiny random Hub-format
    directory (tests/factory.py), built once per test module and name."""
    import factory

    built = {}
    root = tmp_path_factory.mktemp("checkpoints")

    def checkpoint(name, arch, head, *, tokenizer="wordpiece_cased", **kw):
        if name not in built:
            factory.build(root / name, arch, head, tokenizer=tokenizer, **kw)
            built[name] = root / name
        return built[name]

    return checkpoint


@pytest.fixture(scope="module")
def default_models(tmp_path_factory):
    """Random-weight checkpoints standing in for the catalogue's default models, by task."""
    import factory

    from squeezecli.store import catalogue

    root = tmp_path_factory.mktemp("models")
    built = {}
    for task, arch, head, kw in [
        ("sentiment", "distilbert", "sequence", {}),
        ("zero-shot", "squeezebert", "sequence", {"labels": ["LABEL_0", "LABEL_1", "LABEL_2"]}),
        ("qa", "bert", "qa", {}),
        ("ner", "bert", "token", {"labels": list(catalogue.by_alias("bert-ner").labels)}),
        ("embed", "bert", "base", {}),
        ("rerank", "bert", "sequence", {"labels": ["LABEL_0"]}),
    ]:
        factory.build(root / task, arch, head, **kw)
        built[task] = root / task
    return built


@pytest.fixture
def served(hub, default_models):
    """The catalogue's default model ids served by the loopback Hub (default_models' stand-ins)."""
    from squeezecli.store import catalogue

    for task, directory in default_models.items():
        hub.add_repo(catalogue.by_alias(catalogue.default_for(task)).repo_id, directory)
    return hub
