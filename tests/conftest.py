"""Shared fixtures. Test helpers (factory, vocabs, hubserver) live beside the tests and import directly."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# Tiny test models spend more time synchronising two threads than computing; one is faster and steadier.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Every test gets its own squeeze and Hugging Face caches: nothing leaks between tests or to ~."""
    monkeypatch.setenv("SQUEEZE_CACHE_DIR", str(tmp_path / "squeeze-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("SQUEEZE_DEBUG", raising=False)

from hubserver import hub  # noqa: E402,F401  (the loopback Hub fixture, for every test file)


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
