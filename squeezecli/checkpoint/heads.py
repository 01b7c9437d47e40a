"""The head vocabulary: which final layer a checkpoint has on its encoder, and so what it can run. One
home for the encoder, the weight loader, the store's manifests, the tasks and the CLI. Imports nothing.
"""

from __future__ import annotations

BASE, SEQUENCE, TOKEN, QA = "base", "sequence", "token", "qa"
HEADS = (BASE, SEQUENCE, TOKEN, QA)
# The heads whose outputs are classes, named by config.json's id2label.
LABELLED = (SEQUENCE, TOKEN)
# How messages name a model with each head ("model 'x' is a token classifier, not ...").
DESCRIPTIONS = {BASE: "a base encoder", SEQUENCE: "a sequence classifier", TOKEN: "a token classifier",
                QA: "a question-answering model"}


def served(head: str) -> list[str]:
    """The heads a checkpoint with `head` can run, its own first: every task checkpoint also serves "base"
    (its encoder without the task layer, e.g. embeddings of a sentiment model)."""
    return [head] if head == BASE else [head, BASE]


def describe(head: str) -> str:
    return DESCRIPTIONS.get(head, head)
