"""Built-in model aliases: one default checkpoint per task, and what each checkpoint must look like.

Each entry records the architecture (`model_type`), the head and the labels the checkpoint was checked to
have on the Hub, so that a download that does not match (a renamed repo, a new commit with another head,
a wrong `--revision`) is refused with a ModelError instead of producing confident nonsense. Where a
checkpoint's config.json carries only placeholder labels (LABEL_0, LABEL_1, ...), the entry carries the
real ones and the store writes them into the cached config.

SqueezeBERT is the default wherever a credible fine-tuned checkpoint exists (zero-shot); elsewhere the
default is the best small checkpoint with the labels the task needs, and a SqueezeBERT alternative is
listed under its own alias where one exists.

No torch here: `squeeze models list` and `--help` read this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..checkpoint.heads import BASE, QA, SEQUENCE, TOKEN
from ..errors import ModelError

# The task names here are the table of tasks' (tasks/table.py). The store does not import it (a layer the
# CLI reads at start-up, below the tasks and the network they run); tests/test_task_table.py checks
# instead that each name here is a row and its default model has the row's head.
# `classify` runs any sequence classifier given with --model (and zero-shot with --labels); without either
# it classifies sentiment, the one classifier squeeze ships.
TASK_ALIASES = {"classify": "sentiment"}
_PLACEHOLDER_LABEL = re.compile(r"LABEL_(\d+)")


@dataclass(frozen=True)
class CatalogueModel:
    alias: str
    repo_id: str
    task: str
    architecture: str  # config.json model_type
    head: str  # checkpoint.heads.HEADS: base, sequence, token, qa
    labels: tuple[str, ...] = ()  # id2label in id order; empty for qa and embed heads
    description: str = ""


MODELS: tuple[CatalogueModel, ...] = (
    # config.json: id2label {0: NEGATIVE, 1: POSITIVE}, DistilBertForSequenceClassification.
    CatalogueModel(
        "distilbert-sst2", "distilbert/distilbert-base-uncased-finetuned-sst-2-english", "sentiment",
        "distilbert", SEQUENCE, ("NEGATIVE", "POSITIVE"),
        "DistilBERT fine-tuned on SST-2 (binary sentiment)",
    ),
    # config.json says only LABEL_0/1/2. The model card says it was fine-tuned on MNLI with transformers'
    # GLUE recipe (examples/text-classification/run_glue.py), whose MnliProcessor.get_labels() is
    # ["contradiction", "entailment", "neutral"] (transformers/data/processors/glue.py), so that is the
    # id order of the classifier.
    CatalogueModel(
        "squeezebert-mnli", "squeezebert/squeezebert-mnli", "zero-shot",
        "squeezebert", SEQUENCE, ("contradiction", "entailment", "neutral"),
        "SqueezeBERT fine-tuned on MNLI (natural-language inference, used for zero-shot labels)",
    ),
    # SQuAD 2.0, so it can answer "no answer"; BertForQuestionAnswering, MiniLM-L12-H384.
    CatalogueModel(
        "minilm-squad2", "deepset/minilm-uncased-squad2", "qa", "bert", QA,
        description="MiniLM fine-tuned on SQuAD 2.0 (extractive QA that can say there is no answer)",
    ),
    # SQuAD 1.1 only: always returns some span, even when the context holds no answer.
    CatalogueModel(
        "squeezebert-qa", "mrm8488/squeezebert-finetuned-squadv1", "qa", "squeezebert", QA,
        description="SqueezeBERT fine-tuned on SQuAD 1.1 (extractive QA; always answers)",
    ),
    # config.json id2label, CoNLL-2003 tags in this order.
    CatalogueModel(
        "bert-ner", "dslim/bert-base-NER", "ner", "bert", TOKEN,
        ("O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"),
        "BERT-base (cased) fine-tuned on CoNLL-2003 named entities",
    ),
    # A BertModel with sentence-transformers mean pooling (1_Pooling/config.json).
    CatalogueModel(
        "minilm-embed", "sentence-transformers/all-MiniLM-L6-v2", "embed", "bert", BASE,
        description="all-MiniLM-L6-v2 sentence embeddings (384 dimensions)",
    ),
    # A cross-encoder: BertForSequenceClassification (MiniLM-L6-H384) with one logit, config.json id2label
    # {0: LABEL_0}; trained on MS MARCO passage ranking, scored by a sigmoid (sentence-transformers' default).
    CatalogueModel(
        "minilm-rerank", "cross-encoder/ms-marco-MiniLM-L-6-v2", "rerank", "bert", SEQUENCE, ("LABEL_0",),
        "MiniLM-L6 cross-encoder trained on MS MARCO (reranks candidates for a query)",
    ),
)

DEFAULTS: dict[str, str] = {
    "sentiment": "distilbert-sst2",
    "zero-shot": "squeezebert-mnli",
    "qa": "minilm-squad2",
    "ner": "bert-ner",
    "embed": "minilm-embed",
    "rerank": "minilm-rerank",
}

TASKS = tuple(DEFAULTS)  # the tasks with a default model
_BY_ALIAS = {model.alias: model for model in MODELS}
_BY_REPO = {model.repo_id.lower(): model for model in MODELS}


def default_for(task: str) -> str:
    """The alias of the default model of `task` (one of TASKS, or "classify")."""
    try:
        return DEFAULTS[TASK_ALIASES.get(task, task)]
    except KeyError:
        raise ModelError(f"no default model for task {task!r}", hint=f"tasks: {', '.join(TASKS)}") from None


def by_alias(name: str) -> CatalogueModel | None:
    """The model an alias stands for; a task name stands for the task's default model."""
    if name in DEFAULTS or name in TASK_ALIASES:
        return _BY_ALIAS[default_for(name)]
    return _BY_ALIAS.get(name)


def hub_id(name: str) -> str:
    """The Hub id a model name stands for: an alias (or a task's name) as its repository, any other name
    (a Hub id, a directory) as given."""
    entry = by_alias(name)
    return entry.repo_id if entry else name


def by_repo_id(repo_id: str) -> CatalogueModel | None:
    """The catalogue entry for a Hub id (Hub ids are case-insensitive), so a checkpoint pulled by its id
    gets the same checks and labels as one pulled by its alias."""
    return _BY_REPO.get(repo_id.lower())


def checked_labels(model: CatalogueModel, architecture: str, head: str, id2label: dict[int, str]) -> dict[int, str]:
    """Check a downloaded checkpoint against its catalogue entry; return the id2label to use.

    `architecture` is config.json's model_type, `head` the head the checkpoint has, `id2label` its labels.
    """
    where = f"model '{model.repo_id}' (alias {model.alias})"
    fix = "pin a --revision that matches the catalogue, or pull it by a different name with --model"
    if architecture != model.architecture:
        raise ModelError(f"{where} should be a {model.architecture} checkpoint but is {architecture or 'unknown'}", hint=fix)
    if head != model.head:
        raise ModelError(f"{where} should have a {model.head} head but has a {head} head", hint=fix)
    if not model.labels:
        return id2label
    expected = dict(enumerate(model.labels))
    if id2label == expected:
        return expected
    if _placeholders(id2label) and len(id2label) == len(expected):
        return expected
    found = ", ".join(id2label[i] for i in sorted(id2label)) or "none"
    raise ModelError(f"{where} has labels [{found}], expected [{', '.join(model.labels)}]", hint=fix)


def _placeholders(id2label: dict[int, str]) -> bool:
    """transformers writes LABEL_<id> when a checkpoint was saved without label names."""
    return bool(id2label) and all(
        (m := _PLACEHOLDER_LABEL.fullmatch(label)) is not None and int(m[1]) == index for index, label in id2label.items()
    )
