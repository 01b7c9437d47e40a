"""The table of tasks: one row (`TaskSpec`) per task, from which every front end is generated.

The task commands and `run-distributed`'s subcommands (cli/tasks.py, cli/distributed.py), `eval`'s
dispatch (cli/evaluate.py) and the Python API (`squeezecli.load`) read this table and write no task
out themselves: adding a task is its module in tasks/ plus one row here. A row says, as data, what the
task is (its class as `module:Class`, imported only when it runs; its head), its options (`Option`:
name, flags, type, default, bounds, help, group; the CLI makes them Click options), how the options
become the task's constructor arguments, what can be refused before a model loads (`check`), which
columns its rows have and how a table shows them, and how `eval` scores it (`Evaluation`).

A check sees the options as given (`Given`), before the inputs are opened or a model loads; front ends
report its `UsageError` as a usage error (status 2). Checks of one option's value (a bound that depends
on another option, say) go into the row's `check` too, so every front end refuses the same things.

Torch-free: the CLI builds its commands from this at start-up, and `squeeze --help` and completion
never import torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..checkpoint import heads
from ..errors import UsageError
from . import checks, views
from .base import AGGREGATIONS, MAX_TOP_K, check_chunking

DEFAULT_TEMPLATE = checks.DEFAULT_TEMPLATE

Given = Mapping[str, Any]
"""The values a front end was given: the task's own options by name, plus `model` (the model asked for,
None for the task's default) and `format` (the output format, where there is one); the command line's
checks also get `max_length` and `doc` (--max-length, --doc) where it has them."""
View = Callable[[dict[str, Any]], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a task, as data: the CLI turns it into a Click option, another front end into its own."""

    name: str  # the Python name the value goes by ("top_k")
    flags: tuple[str, ...]  # as the command line spells it ("--top-k"; "--no-answer/--always-answer": on/off)
    help: str
    type: str = "text"  # "text", "int", "flag" (on when given), or "choice" (one of `choices`)
    choices: tuple[str, ...] = ()
    default: Any = None
    min: int | None = None  # the least an int may be
    max: int | None = None  # the most
    metavar: str | None = None
    show_default: bool = False
    multiple: bool = False  # may be repeated: a tuple of values
    required: bool = False
    group: str = ""  # the options that go together (help lists them together)


def _nothing(given: Given) -> None:
    """No check."""


def _picked(*names: str) -> Callable[[Given, str], dict[str, Any]]:
    """Constructor arguments that are the options of the same names, as given."""
    return lambda given, model: {name: given[name] for name in names}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """How `squeeze eval` scores a task: the evaluator (`module:Class` of tasks/, imported when it runs),
    eval's own options for the task, what is refused before a model loads, and the constructor arguments."""

    evaluator: str
    options: tuple[Option, ...] = ()
    check: Callable[[Given], None] = _nothing
    arguments: Callable[[Given, str], dict[str, Any]] = lambda given, model: {}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A task, for every front end. `arguments(given, model)` maps the options to the task class's
    constructor arguments (`model`: the Hub id or path that runs, for defaults that depend on it);
    `check(given)` raises `UsageError` for what is wrong before any model loads; `runs(given)` names
    the row that runs instead (`classify --labels` runs zero-shot); `unit(given)` the input unit a
    record is when the user named none (None: a line); `columns(given)` and `view(given)` the result
    columns and how a table shows nested results."""

    name: str
    task: str  # "module:Class" in tasks/
    head: str  # the Encoder head it runs: one of checkpoint.heads.HEADS
    help: str  # the command's help text (Click's: a \b paragraph keeps its line breaks)
    brief: str  # one line, for listings and run-distributed
    columns: Callable[[Given], list[str]]
    options: tuple[Option, ...] = ()
    arguments: Callable[[Given, str], dict[str, Any]] = lambda given, model: {}
    check: Callable[[Given], None] = _nothing
    runs: Callable[[Given], str] | None = None
    unit: Callable[[Given], str | None] = lambda given: None
    view: Callable[[Given], View | None] = lambda given: None
    chunkable: bool = False  # reads a long text as chunks (--chunk)
    empty_documents: bool = False  # an empty file read as one text is a record (qa: no answer), not skipped
    extra_formats: tuple[str, ...] = ()  # output formats beyond the writers' ("npy": the CLI writes it)
    command: bool = True  # a command of its own (zero-shot is reached through classify --labels)
    # Results ranked across the whole input by their "score" (rerank): the command keeps the best -k
    # (RANKING's options, the command's alone), printed best first with their rank, or with --keep-order
    # every result in input order; either way each row carries its text. run-distributed and the API
    # score every record, in order.
    ranked: bool = False
    evaluation: Evaluation | None = None

    def task_class(self) -> type:
        """The class that runs the task (importing it, and torch)."""
        return imported(self.task)

    @property
    def command_options(self) -> tuple[Option, ...]:
        """The options of the row's command: its own, and RANKING's for a ranked row (the command's:
        run-distributed and the task itself score every record)."""
        return (*self.options, *(RANKING if self.ranked else ()))

    def given(self, values: Mapping[str, Any], *, model: str | None = None, format: str | None = None
              ) -> dict[str, Any]:
        """The row's `Given` from option values by name (a front end's request): an option left out has
        its default; a name that is no option of the row's command is refused."""
        names = {option.name for option in self.command_options}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UsageError(f"{self.name} has no option {unknown[0]!r}", hint=f"its options: {', '.join(sorted(names))}")
        defaults = {option.name: () if option.multiple and option.default is None else option.default
                    for option in self.command_options}
        return {**defaults, **values, "model": model, "format": format}

    def resolve(self, given: Given) -> TaskSpec:
        """The row that runs for these options (itself but for a dispatch such as classify's)."""
        return TASKS[self.runs(given)] if self.runs else self


# -- the options tasks share ------------------------------------------------------------------------------


def chunk_options(what: str) -> tuple[Option, ...]:
    """--chunk and --overlap: a long text as chunks of whole words, `what` each chunk gets."""
    return (
        Option("chunk", ("--chunk",), type="int", min=1, metavar="TOKENS", group="chunks",
               help=f"Read each text as chunks of whole words of at most TOKENS tokens, instead of cutting it "
                    f"to the window: {what}."),
        Option("overlap", ("--overlap",), type="int", min=0, default=0, show_default=True, metavar="TOKENS",
               group="chunks", help="Tokens of words each chunk repeats from the end of the previous one."),
    )


def check_chunks(*needing: str) -> Callable[[Given], None]:
    """The check of the chunk options: `needing` (option names) apply to chunks only."""

    def check(given: Given) -> None:
        needs = {f"--{name}": given.get(name) is not None for name in needing}
        check_chunking(given.get("chunk"), given.get("overlap") or 0, needs_chunk=needs)

    return check


CLASSIFICATION = (
    Option("top_k", ("--top-k",), type="int", min=1, max=MAX_TOP_K, metavar="N", group="classification",
           help="The N best labels with their scores."),
    Option("all_scores", ("--all-scores",), type="flag", default=False, group="classification",
           help="Every label with its score."),
)
ZERO_SHOT = (
    Option("labels", ("--labels",), metavar="A,B,C", group="zero-shot",
           help="Zero-shot: the candidate labels, comma-separated."),
    Option("template", ("--template",), default=DEFAULT_TEMPLATE, show_default=True, group="zero-shot",
           help="Zero-shot: the hypothesis each label is put into."),
    Option("multi_label", ("--multi-label",), type="flag", default=False, group="zero-shot",
           help="Zero-shot: score each label on its own (several may be true)."),
)
WINDOWS = (
    Option("aggregate", ("--aggregate",), type="choice", choices=AGGREGATIONS, group="chunks",
           help="With --chunk: a label's score is the mean (default) or the max of its chunks' scores."),
    *chunk_options("each chunk is scored, and the scores aggregated"),
)
WINDOW_ARGUMENTS = ("chunk", "overlap", "aggregate")


def _classified(given: Given) -> list[str]:
    return ["labels", "text"] if given.get("top_k") or given.get("all_scores") else ["label", "score", "text"]


def _classification_view(given: Given) -> View | None:
    return views.ranked_labels if given.get("top_k") or given.get("all_scores") else None


_ZERO_SHOT_LABELS = ("labels", "zero-shot needs the candidate labels: --labels A,B,C")


def _check_classify(given: Given) -> None:
    check_chunks("aggregate")(given)
    if given.get("labels") is None and given.get("model") is None:
        raise UsageError("give a classification model with --model, or candidate labels with --labels")
    checks.zero_shot(given) if given.get("labels") is not None else checks.not_zero_shot(given)


def _check_zero_shot(given: Given) -> None:
    check_chunks("aggregate")(given)
    _check_eval_zero_shot(given)


def _check_eval_zero_shot(given: Given) -> None:
    _required(*_ZERO_SHOT_LABELS)(given)
    checks.zero_shot(given)


def _required(option: str, message: str) -> Callable[[Given], None]:
    def check(given: Given) -> None:
        if not given.get(option):
            raise UsageError(message)

    return check


# -- ranking -------------------------------------------------------------------------------------------

DEFAULT_RANKED = 10  # -k of a ranked command: the best ten, as MRR@10 and nDCG@10 judge a ranking
RANKING = (
    Option("top_k", ("-k", "--top-k"), type="int", min=1, max=MAX_TOP_K, metavar="N", group="ranking",
           help=f"The N best, best first, each with its rank (default {DEFAULT_RANKED})."),
    Option("keep_order", ("--keep-order",), type="flag", default=False, group="ranking",
           help="Every record's score in input order, written as it is scored (no rank, no -k)."),
)


def check_ranking(given: Given) -> None:
    """-k picks the best, --keep-order keeps every record in input order: not both."""
    if given.get("keep_order") and given.get("top_k") is not None:
        raise UsageError("-k keeps the best, --keep-order every record in input order: give one")


def kept(given: Given) -> int | None:
    """How many results a ranked command keeps: -k (default DEFAULT_RANKED), or None (--keep-order: all)."""
    return None if given.get("keep_order") else given.get("top_k") or DEFAULT_RANKED


# -- qa -------------------------------------------------------------------------------------------------

# Hub ids of SQuAD 2.0 fine-tunes say so; those models learned to point at [CLS] for "no answer".
_SQUAD2 = re.compile(r"squad[-_]?v?2", re.IGNORECASE)


def answers_no_answer(model: str) -> bool:
    """Whether a model may say "no answer" by default: if it is a SQuAD 2.0 fine-tune (by its Hub id)."""
    return bool(_SQUAD2.search(model))


def _qa_arguments(given: Given, model: str) -> dict[str, Any]:
    no_answer = given["no_answer"]
    return {"questions": list(given["questions"]), "top_k": given["top_k"], "stride": given["stride"],
            "max_answer_len": given["max_answer_len"],
            "handle_impossible_answer": answers_no_answer(model) if no_answer is None else no_answer}


QA = (
    Option("questions", ("-q", "--question"), multiple=True, required=True, metavar="QUESTION",
           help="A question to answer from each context; repeat for several."),
    Option("lines", ("--lines",), type="flag", default=False,
           help="Each line is a context (default: each file, or stdin, is one)."),
    Option("top_k", ("--top-k",), type="int", min=1, max=MAX_TOP_K, default=1, show_default=True,
           help="Answers per question."),
    Option("stride", ("--stride",), type="int", min=0, metavar="TOKENS",
           help="Overlap between the windows of a long context (default: 128, or half the window)."),
    Option("max_answer_len", ("--max-answer-len",), type="int", min=1, default=15, show_default=True,
           metavar="TOKENS", help="The longest answer in tokens."),
    Option("no_answer", ("--no-answer/--always-answer",), type="flag",
           help="Let the model say the context holds no answer (default: on for SQuAD 2.0 models)."),
)


# "first" by default: no word is split ("simple" can split "Springfield" into "Spring" + "field"; tasks/ner.py).
NER_AGGREGATION = Option("aggregation", ("--aggregation",), type="choice",
                         choices=("none", "simple", "first", "average", "max"), default="first", show_default=True,
                         help="How tokens are merged into entities, as in transformers' pipeline: first, average "
                              "and max keep words whole; simple can split one; none: one entity per token.")

# -- embed -----------------------------------------------------------------------------------------------


def _check_embed(given: Given) -> None:
    check_chunks("pool")(given)
    if given.get("format") == "npy" and given.get("chunk") is not None and given.get("pool") is None:
        raise UsageError("--format npy holds one vector per text", hint="add --pool mean (or max, first) to --chunk")


def _embedded_per_chunk(given: Given) -> bool:
    return given.get("chunk") is not None and given.get("pool") is None


EMBED = (
    Option("pool", ("--pool",), type="choice", choices=("mean", "max", "first"), group="chunks",
           help="One vector per text from its chunks: their mean, element-wise max, or the first."),
    *chunk_options("one vector per chunk, with its character offsets"),
)

# -- eval's options ----------------------------------------------------------------------------------------

_EVAL_ZERO_SHOT = (
    Option("labels", ("--labels",), metavar="A,B,C", help="zero-shot: the candidate labels."),
    Option("template", ("--template",), default=DEFAULT_TEMPLATE, show_default=True, help="zero-shot: the hypothesis."),
)
_EVAL_QA = (Option("question_field", ("--question-field",), default="question", show_default=True, metavar="FIELD",
                   help="qa: the field that holds each record's question (the text is its context)."),)
_EVAL_EMBED = (Option("pair_field", ("--pair-field",), metavar="FIELD",
                      help="embed: the field that holds the second text of each pair."),)

# -- rerank ----------------------------------------------------------------------------------------------

RERANK = (Option("query", ("-q", "--query"), required=True, metavar="QUERY",
                 help="What the candidates are ranked by: each is read with it by the cross-encoder."),)
_EVAL_RERANK = (Option("query_field", ("--query-field",), default="query", show_default=True, metavar="FIELD",
                       help="rerank: the field that holds each record's query (the text is its candidate)."),)


def _check_query(given: Given) -> None:
    if not str(given.get("query") or "").strip():
        raise UsageError("the query is empty: -q QUERY is what the candidates are ranked by")


_RERANK_HELP = """Rank candidates (one per line) by how well each answers QUERY: a cross-encoder reads the query with
each (default model: ms-marco-MiniLM-L-6-v2).

\b
  squeeze rerank -q "how do I get my money back" faq.txt
  squeeze rerank -q "refund" --jsonl tickets.jsonl -k 3

The best -k (default 10) are printed best first, each with its rank, score (as sentence-transformers'
CrossEncoder gives it: the sigmoid of the model's logit), text and where it came from, other input
fields carried; --keep-order prints every candidate's score in input order instead.
"""

# -- the table -------------------------------------------------------------------------------------------

_CLASSIFY_HELP = """Classify each line with a text-classification model (--model), or zero-shot into --labels.

\b
  squeeze classify --model textattack/bert-base-uncased-ag-news news.txt
  squeeze classify --labels "sports,politics,tech" headlines.txt
"""

TASKS: dict[str, TaskSpec] = {row.name: row for row in [
    TaskSpec("sentiment", "classify:Classify", heads.SEQUENCE, chunkable=True,
             help="Sentiment of each line: label and score (default model: DistilBERT SST-2).",
             brief="Sentiment of each line: label and score.",
             options=(*CLASSIFICATION, *WINDOWS), arguments=_picked("top_k", "all_scores", *WINDOW_ARGUMENTS),
             check=check_chunks("aggregate"), columns=_classified, view=_classification_view,
             evaluation=Evaluation("evaluation:Classification")),
    TaskSpec("classify", "classify:Classify", heads.SEQUENCE, chunkable=True, help=_CLASSIFY_HELP,
             brief="Classify each line with a text-classification model (--model), or zero-shot into --labels.",
             options=(*ZERO_SHOT, *CLASSIFICATION, *WINDOWS),
             arguments=_picked("top_k", "all_scores", *WINDOW_ARGUMENTS), check=_check_classify,
             runs=lambda given: "zero-shot" if given.get("labels") is not None else "classify",
             columns=_classified, view=_classification_view,
             evaluation=Evaluation("evaluation:Classification",
                                   check=_required("model", "classify needs a classification model: --model NAME"))),
    TaskSpec("zero-shot", "zeroshot:ZeroShot", heads.SEQUENCE, chunkable=True, command=False,
             help="Zero-shot classification into candidate labels (the command: classify --labels).",
             brief="Zero-shot classification into candidate labels.",
             options=(*ZERO_SHOT, *WINDOWS), arguments=_picked("labels", "template", "multi_label", *WINDOW_ARGUMENTS),
             check=_check_zero_shot, columns=lambda given: ["labels", "text"], view=lambda given: views.zero_shot,
             evaluation=Evaluation("evaluation:Classification", _EVAL_ZERO_SHOT, _check_eval_zero_shot,
                                   _picked("labels", "template"))),
    TaskSpec("qa", "qa:QuestionAnswering", heads.QA,
             help="Answer questions from each context with a span of its text and the span's character offsets.",
             brief="Answer questions from each context (each file, or each line with --lines).",
             options=QA, arguments=_qa_arguments, check=checks.qa, unit=lambda given: None if given.get("lines") else "doc",
             empty_documents=True,
             columns=lambda given: ["file", "line", "answers", "text"] if given.get("lines") else ["file", "answers"],
             view=lambda given: views.answers,
             evaluation=Evaluation("evaluation:Answers", _EVAL_QA, arguments=lambda given, model: {
                 "questions": ["?"], "handle_impossible_answer": answers_no_answer(model)})),
    TaskSpec("ner", "ner:TokenClassification", heads.TOKEN,
             help="Named entities in each line: label, score, text and character offsets.",
             brief="Named entities in each line.",
             options=(NER_AGGREGATION,), arguments=_picked("aggregation"), columns=lambda given: ["entities", "text"],
             view=lambda given: views.entities,
             evaluation=Evaluation("evaluation:Entities", (NER_AGGREGATION,), arguments=_picked("aggregation"))),
    TaskSpec("embed", "embed:Embed", heads.BASE, chunkable=True, extra_formats=("npy",),
             help="Embedding vector of each line, pooled and normalised as the model specifies.\n\n"
                  "--format npy writes one float32 NumPy array [lines, dimension] to stdout (needs numpy).",
             brief="Embedding vector of each line (with --chunk, of each chunk, or pooled per line).",
             options=EMBED, arguments=_picked("chunk", "overlap", "pool"), check=_check_embed,
             columns=lambda given: ["chunks", "text"] if _embedded_per_chunk(given) else ["embedding", "text"],
             view=lambda given: views.chunks if _embedded_per_chunk(given) else None,
             evaluation=Evaluation("evaluation:Similarity", _EVAL_EMBED, _required(
                 "pair_field", "embed is evaluated on pairs: --pair-field FIELD names the second text"))),
    TaskSpec("rerank", "rerank:Rerank", heads.SEQUENCE, ranked=True, help=_RERANK_HELP,
             brief="Score each line as an answer to -q QUERY with a cross-encoder.",
             options=RERANK, arguments=_picked("query"), check=_check_query,
             columns=lambda given: ["score", "text", "file", "line"] if given.get("keep_order")
             else ["rank", "score", "text", "file", "line"],
             evaluation=Evaluation("evaluation:Ranking", _EVAL_RERANK, arguments=lambda given, model: {"query": "?"})),
]}
"""The table, in the order front ends list the tasks; a row added here is a command, a run-distributed
subcommand, an eval task and a `squeezecli.load` task."""


def imported(path: str) -> Any:
    """What `module:Name` names: a module of tasks/, or with a dotted module any importable one."""
    module_name, name = path.split(":")
    module = module_name if "." in module_name else f"{__package__}.{module_name}"
    return getattr(importlib.import_module(module), name)


def spec(name: str) -> TaskSpec:
    """The row of task `name`."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def task_class(name: str) -> type:
    """The class that runs task `name` (a key of TASKS)."""
    return spec(name).task_class()
