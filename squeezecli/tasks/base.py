"""What every task shares: its model, its token window, how many inputs go through the model at once,
and the length estimate the CLI sorts records by. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import UsageError
from ..io.batches import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE

if TYPE_CHECKING:
    from ..model.runtime import Runtime

# The most results per text or query (--top-k, -k): each is kept, sorted and printed.
MAX_TOP_K = 1000
# How the scores of a text's chunks make its own, per label (classify, zero-shot); the first is the default.
AGGREGATIONS = ("mean", "max")


class Task:
    """A task bound to a model. `__call__(texts)` gives one JSON-serialisable result per text, in order.

    `max_length` is the token window (default `default_max_length`, else the model's own limit; never
    beyond the model's); `batch_size` bounds the inputs of one forward pass, which a task that expands
    its texts (NLI pairs, QA and NER windows) may need several of per call. `notices` says what of the
    options this model changes (a --max-length beyond its window), for the front end to print once.

    The constructor reads of `runtime` only what a `Preview` has (config, tokenizer, model_dir,
    max_length, name): api.load builds the task on the model's preview first, so that whatever the
    constructor refuses (options that do not fit this model's window) is refused before the weights load.
    """

    head: ClassVar[str]  # the Encoder head it runs: one of checkpoint/heads.py's HEADS
    chunkable: ClassVar[bool] = False  # whether it can read a long text as chunks (set_chunking)
    pairs: ClassVar[bool] = False  # whether the model reads each text beside a second one (a question, a query)
    chunk: int | None = None  # tokens per chunk; None: a long text is cut to the window
    overlap: int = 0

    def __init__(self, runtime: Runtime, *, max_length: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 default_max_length: int | None = None) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise UsageError(f"batch_size must be from 1 to {MAX_BATCH_SIZE}, not {batch_size}")
        self.runtime = runtime
        self.batch_size = batch_size
        self.max_length = min(max_length or default_max_length or runtime.max_length, runtime.max_length)
        self.notices: list[str] = []
        specials = runtime.tokenizer.backend.num_special_tokens_to_add(is_pair=self.pairs)
        if max_length is not None and self.max_length <= specials:
            raise UsageError(f"--max-length {max_length} leaves no room for text beside the model's {specials} special "
                             "tokens", hint=f"give --max-length {specials + 1} to {runtime.max_length}")
        if max_length is not None and max_length > runtime.max_length:
            self.notices.append(f"--max-length {max_length} is more than the model's {self.max_length}-token window: "
                                f"{self.cut_to}")

    @property
    def cut_to(self) -> str:
        """What becomes of a text longer than the window, for notices."""
        return f"texts are cut to {self.max_length} tokens"

    def set_chunking(self, chunk: int | None, overlap: int, *, needs_chunk: dict[str, bool]) -> None:
        """Check and keep `chunk` (tokens of whole words per window, None: cut texts to the window) and
        `overlap`; each option named in `needs_chunk` that is given (True) is refused without a chunk."""
        check_chunking(chunk, overlap, needs_chunk=needs_chunk)
        room = self.chunk_room()
        if chunk is not None and not 1 <= chunk <= room:
            raise UsageError(f"--chunk {chunk} does not fit the {self.max_length}-token window",
                             hint=f"give --chunk 1 to {room}{self.raise_max_length()}")
        self.chunk, self.overlap = chunk, overlap

    def raise_max_length(self) -> str:
        """The end of a hint, where a wider window would do: --max-length up to the model's."""
        limit = self.runtime.max_length
        return f", or raise --max-length (up to {limit})" if self.max_length < limit else ""

    def chunk_room(self) -> int:
        """The most tokens of text one chunk may have: the window less the special tokens around it."""
        return self.max_length - self.runtime.tokenizer.backend.num_special_tokens_to_add(is_pair=False)

    def chunk_spans(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """Per text, its chunks' character spans (Tokenizer.word_chunks); a text without words is one."""
        assert self.chunk is not None
        tokenizer = self.runtime.tokenizer
        return [tokenizer.word_chunks(text, self.chunk, self.overlap) or [(0, len(text))] for text in texts]

    def length_of(self, text: str) -> int:
        """The text's length in tokens, counted up to the window, to batch texts of similar length.

        A real count costs about as much as encoding the text once (~50 us), a few percent of the forward
        pass of even the smallest model, and buckets CJK text as well as English.
        """
        if self.chunk is not None:  # chunked, a text is many passes: bucket by size alone
            return len(text) // 4 + 1
        return self.runtime.tokenizer.count(text, limit=self.max_length)

    def prepare(self, texts: list[str]) -> list[Any]:
        """Per text, what the task first makes of it, with its `length` in tokens to batch by (`run` takes
        them in any grouping): here the text and `length_of`; a task that tokenizes each text once
        (Embed, Classify) gives its encoding and count (Tokenizer.encode_counted), read again by `run`."""
        return [Text(text, self.length_of(text)) for text in texts]

    def run(self, prepared: list[Any]) -> list[dict[str, Any]]:
        """The results of `prepare`d texts, one per item, in order."""
        return self([item.text for item in prepared])

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Text:
    """A text as `Task.prepare` hands it on when the task tokenizes it later."""

    text: str
    length: int


def check_chunking(chunk: int | None, overlap: int, *, needs_chunk: dict[str, bool]) -> None:
    """What can be checked of the chunk options without the model (the CLI checks it before loading one):
    options that need --chunk without it, and an overlap as long as the chunk."""
    given = [name for name, present in {"--overlap": bool(overlap), **needs_chunk}.items() if present]
    if chunk is None and given:
        raise UsageError(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to chunks",
                         hint="add --chunk TOKENS")
    if chunk is not None and not 0 <= overlap < chunk:
        raise UsageError(f"--overlap {overlap} must be less than --chunk {chunk}")


def mark_truncated(results: list[dict[str, Any]], lengths: list[int | None]) -> list[dict[str, Any]]:
    """`results` with `"truncated": true` and the text's whole length in `"tokens"` where a text was cut
    to the window (`lengths` from Tokenizer.cut_lengths): no result is silently from part of its text."""
    for result, tokens in zip(results, lengths):
        if tokens is not None:
            result.update(truncated=True, tokens=tokens)
    return results


def cut_lengths(encoded: list[Any]) -> list[int | None]:
    """Per Tokenizer.encode_counted item, its whole length if the window cut it, else None (mark_truncated)."""
    return [item.tokens if item.cut else None for item in encoded]


class WindowedTask(Task):
    """A task that slides windows over whole texts (QA, NER) rather than cutting them to one window."""

    @property
    def cut_to(self) -> str:
        return f"longer texts are read in windows of {self.max_length} tokens"

    def length_of(self, text: str) -> int:
        # About four characters per token in English; only the order matters, for length bucketing, and
        # a count would tokenize every window of a long document.
        return len(text) // 4 + 1
