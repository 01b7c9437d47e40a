"""Text to token ids with the `tokenizers` library, exactly as transformers' fast tokenizers do it (the
backend comes from tokenizer_files.py): truncation, windows over long texts, pairs, padding.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tokenizers import Encoding
from tokenizers import Tokenizer as BackendTokenizer

from ..errors import InputError, ModelError, UsageError
from . import tokenizer_files
from .tokenizer_files import (
    FALLBACK_MAX_LENGTH,
    INCOMPLETE_HINT,
    SpecialTokens,
    special_content,
)

if TYPE_CHECKING:
    import torch

__all__ = ["FALLBACK_MAX_LENGTH", "Counted", "Tokenizer", "Window", "collate", "flatten_windows"]

Truncation = Literal["longest_first", "only_first", "only_second"]


@dataclass(frozen=True)
class Window:
    """One model input cut from input number `input_index` (several per input when a long text overflows)."""

    input_index: int
    encoding: Encoding


@dataclass(frozen=True, slots=True)
class Counted:
    """A text as the model takes it, and how long it was: the ids, mask and type ids a truncating
    `Tokenizer.encode` gives (read like an Encoding's by `collate` and `Runtime.forward`), and `tokens`,
    the whole text's count without special tokens. `cut` if the window did not hold all of them."""

    ids: list[int]
    attention_mask: list[int]
    type_ids: list[int]
    tokens: int
    cut: bool

    @property
    def length(self) -> int:
        """Tokens the model runs, special tokens included: what a batch is sorted by."""
        return len(self.ids)


class Tokenizer:
    def __init__(self, backend: BackendTokenizer, specials: SpecialTokens, model_max_length: int) -> None:
        self.backend = backend
        self.model_max_length = model_max_length
        self.pad_id = self._required_id(specials, "pad_token")
        self.cls_id = self._required_id(specials, "cls_token")
        self.sep_id = self._required_id(specials, "sep_token")

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        return cls(*tokenizer_files.load(Path(path)))

    def _required_id(self, specials: SpecialTokens, key: str) -> int:
        token_id = self.backend.token_to_id(special_content(specials, key))
        if token_id is None:
            raise ModelError(f"the {key.replace('_', ' ')} is not in the vocabulary", hint=INCOMPLETE_HINT)
        return token_id

    def encode(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        max_length: int,
        stride: int = 0,
        overflow: bool = False,
        truncation: Truncation = "longest_first",
    ) -> list[Encoding]:
        """One Encoding per input (or per (text, pair)), truncated to `max_length` tokens with `truncation`.

        With overflow=True each Encoding's `.overflowing` holds the further windows of the truncated text,
        each overlapping the previous by `stride` tokens, as transformers' return_overflowing_tokens gives
        them (flatten them with `flatten_windows`). Without overflow the stride is not used, and
        `.overflowing` (which tokenizers fills whenever it truncates) is not meant to be read.
        """
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
        if pairs is None and truncation == "only_second":
            raise ValueError("truncation='only_second' needs pairs")
        if overflow and pairs is not None and truncation != "only_second":
            # Windows over a pair are only defined with one side fixed (the question, in QA).
            raise ValueError(f"overflow over pairs needs truncation='only_second', not {truncation!r}")
        if stride < 0:
            raise ValueError(f"negative stride {stride}")
        room = self._room(max_length, pair=pairs is not None)
        if not texts:
            return []
        stride = stride if overflow else 0
        if stride:
            self._check_windows_advance(texts, pairs, room=room, stride=stride)
        self._set_truncation(max_length=max_length, stride=stride, strategy=truncation)
        if pairs is None and not overflow:
            return self._encode_prefixes(texts, max_length)
        inputs: list[Any] = list(texts) if pairs is None else list(zip(texts, pairs))
        try:
            return self.backend.encode_batch(inputs, add_special_tokens=True)
        except Exception as error:  # tokenizers raises a plain Exception for a pair it cannot truncate
            raise InputError(
                f"input does not fit in {max_length} tokens: {error}",
                hint="the first text of a pair must leave room for the second within max_length",
            ) from error

    def encode_counted(self, texts: Sequence[str], max_length: int) -> list[Counted]:
        """`encode(texts, max_length=max_length)` with each text's whole length, tokenizing each text once.

        A text of up to a prefix budget of characters is tokenized whole, without special tokens, in
        groups of at most _GROUP_CHARS characters (so the encodings alive at once stay small); its count
        is read, the encoding cut to the window and the special tokens added: what a truncating encode
        does inside tokenizers. A longer text (up to 16 MiB lines) takes `_encode_prefixes`' bounded way
        and, only if its prefix fills the window, a count in pieces (`total_tokens`).
        """
        room = self._room(max_length, pair=False)
        budget = _prefix_budget(max_length)
        counted: list[Counted | None] = [None] * len(texts)
        group: list[int] = []
        size = 0
        for index, text in enumerate(texts):
            if len(text) > budget:
                counted[index] = self._counted_long(text, max_length, room)
                continue
            group.append(index)
            size += len(text)
            if size >= _GROUP_CHARS:
                self._count_whole(texts, group, room, counted)
                group, size = [], 0
        if group:
            self._count_whole(texts, group, room, counted)
        return counted  # type: ignore[return-value]

    def _count_whole(self, texts: Sequence[str], group: list[int], room: int, counted: list) -> None:
        """Fill `counted` at `group`'s indices from whole encodings of those texts."""
        self.backend.no_truncation()  # the whole text, then cut by hand (the same cut tokenizers makes)
        for index, encoding in zip(group, self.backend.encode_batch([texts[i] for i in group], add_special_tokens=False)):
            tokens = len(encoding)
            if tokens > room:
                encoding.truncate(room)
            final = self.backend.post_process(encoding)  # the special tokens, as a truncating encode adds them
            counted[index] = Counted(final.ids, final.attention_mask, final.type_ids, tokens, tokens > room)

    def _counted_long(self, text: str, max_length: int, room: int) -> Counted:
        """One text beyond the prefix budget: its prefix's truncating encoding, and its count in pieces."""
        self._set_truncation(max_length=max_length, stride=0, strategy="longest_first")
        encoding = self._encode_prefixes([text], max_length)[0]
        kept = len(encoding) - self.backend.num_special_tokens_to_add(is_pair=False)
        tokens = self.total_tokens(text) if kept >= room else kept
        return Counted(encoding.ids, encoding.attention_mask, encoding.type_ids, tokens, tokens > kept)

    def _room(self, max_length: int, *, pair: bool) -> int:
        """Tokens of text a window of `max_length` holds beside the special tokens (a usage error if none)."""
        room = max_length - self.backend.num_special_tokens_to_add(is_pair=pair)
        if room < 1:  # an option that cannot work with this model: a usage error, as other option errors are
            raise UsageError(
                f"max_length {max_length} leaves no room for text next to the special tokens",
                hint=f"use a max_length above {max_length - room}",
            )
        return room

    def count(self, text: str, limit: int) -> int:
        """Tokens in `text` without special tokens, counted exactly up to `limit` (the order is what length
        bucketing needs; a 10 MB line must not be tokenized whole to learn that it is long)."""
        budget = _prefix_budget(limit)
        prefix = _whitespace_prefix(_shorten_giant_words(text, budget), budget)
        return min(len(self.backend.encode(prefix, add_special_tokens=False)), limit)

    def cut_lengths(self, texts: Sequence[str], encodings: Sequence[Encoding], max_length: int, *,
                    sequence: int = 0) -> list[int | None]:
        """Per text, None if its encoding holds all of it, else the text's whole length in tokens (without
        special tokens): what a truncated result reports. `encodings` are `encode(texts[, pairs],
        max_length=max_length)`'s, one per text; of a pair, the text is sequence `sequence` (0: the first).

        Only a text whose encoding overflowed or fills the window exactly is counted whole, in pieces cut
        at whitespace (bounded memory; see `_encode_prefixes` for why the pieces add up exactly).
        """
        lengths: list[int | None] = []
        for text, encoding in zip(texts, encodings):
            if not encoding.overflowing and len(encoding.ids) < max_length:
                lengths.append(None)
                continue
            kept = sum(1 for own in encoding.sequence_ids if own == sequence)  # the text's own tokens
            whole = self.total_tokens(text)
            lengths.append(whole if whole > kept else None)
        return lengths

    def total_tokens(self, text: str) -> int:
        """Tokens in all of `text`, without special tokens, counted in whitespace-cut pieces."""
        text = _shorten_giant_words(text, _prefix_budget(_GIANT_WORD_TOKENS))
        return sum(len(encoding.ids) for _, encoding in self._pieces(text))

    def word_chunks(self, text: str, size: int, overlap: int = 0) -> list[tuple[int, int]]:
        """`text` as chunks of whole words: (start, end) character spans, each of at most `size` tokens
        (a longer word alone), each next one repeating up to `overlap` tokens of the previous one's last
        words. Words are whitespace-separated; a chunk tokenizes alone as it does inside the text, so its
        tokens are counted exactly (in whitespace-cut pieces, as total_tokens counts)."""
        words = [(match.start(), match.end()) for match in re.finditer(r"\S+", text)]
        starts = [start for start, _ in words]
        counts = [0] * len(words)  # tokens of each word
        for position, encoding in self._pieces(text):
            for first, last in encoding.offsets:
                # By its last character: a BPE token may carry the space before its word.
                counts[max(bisect.bisect_right(starts, position + max(first, last - 1)) - 1, 0)] += 1
        spans: list[tuple[int, int]] = []
        begin = 0
        while begin < len(words):
            stop, tokens = begin + 1, counts[begin]
            while stop < len(words) and tokens + counts[stop] <= size:
                tokens += counts[stop]
                stop += 1
            spans.append((words[begin][0], words[stop - 1][1]))
            if stop == len(words):
                break
            # The next chunk starts up to `overlap` tokens back, leaving room for the word after this chunk.
            shared, back = 0, stop
            while (back - 1 > begin and shared + counts[back - 1] <= overlap
                   and shared + counts[back - 1] + counts[stop] <= size):
                back -= 1
                shared += counts[back]
            begin = back
        return spans

    def _pieces(self, text: str) -> Iterator[tuple[int, Encoding]]:
        """All of `text` tokenized without special tokens, in whitespace-cut pieces (which tokenize as they
        do inside the text) so that no one call builds a giant Encoding: (where each piece starts, its
        encoding). Pieces are small (the tokenizer's work on one takes hundreds of bytes per character,
        and what it frees stays in the heap), but a word is not cut below _GIANT_WORD_TOKENS' budget."""
        budget, longest = _prefix_budget(_PIECE_TOKENS), _prefix_budget(_GIANT_WORD_TOKENS)
        start = 0
        while start < len(text):
            end = _piece_end(text, start, budget, longest)
            # Before each piece (a check when nothing changed): the caller may tokenize between pieces.
            self._set_truncation(max_length=1 << 30, stride=0, strategy="longest_first")  # a piece whole
            yield start, self.backend.encode(text[start:end], add_special_tokens=False)
            start = end

    def _encode_prefixes(self, texts: Sequence[str], max_length: int) -> list[Encoding]:
        """Truncating encodings of single texts, tokenizing at most a prefix of each very long text.

        The tokenizer would otherwise build every token of a 10 MB line (gigabytes of Encoding) only to keep
        `max_length` of them. A prefix cut at whitespace tokenizes exactly like the start of the whole text
        (normalisation and pre-tokenization never look across a space); it is used when it still fills the
        window, and the whole text is tokenized when it does not. A giant word (a run without whitespace
        longer than the prefix budget) is first shortened to that budget: WordPiece makes it one [UNK] at
        any length, and in BPE its first tokens fill the window, so the ids do not change; only the offsets
        of the tokens from that word on do (tokenizing a 2 MB word whole costs 150 MB, and no task reads the
        offsets of a plain truncated text).
        """
        budget = _prefix_budget(max_length)
        short = [_shorten_giant_words(text, budget) for text in texts]
        cut = [_whitespace_prefix(text, budget) for text in short]
        encodings = self.backend.encode_batch(cut, add_special_tokens=True)
        for index, (text, prefix, encoding) in enumerate(zip(short, cut, encodings)):
            if len(prefix) < len(text) and len(encoding.ids) < max_length:  # the prefix did not fill the window
                encodings[index] = self.backend.encode(text, add_special_tokens=True)
        return encodings

    def _check_windows_advance(
        self, texts: Sequence[str], pairs: Sequence[str] | None, *, room: int, stride: int
    ) -> None:
        """Reject inputs whose windows could not advance past the stride: tokenizers panics on them, which
        kills the process with a Rust backtrace instead of raising."""
        if pairs is None:
            if stride >= room:
                raise InputError(
                    f"stride {stride} must be smaller than the {room} text tokens a window holds",
                    hint="use a smaller stride or a larger max_length",
                )
            return
        # Only the second text is cut into windows; each window repeats the whole first text.
        self.backend.no_truncation()
        firsts = self.backend.encode_batch(list(texts), add_special_tokens=False)
        first_lengths = [len(encoding.ids) for encoding in firsts]
        for index, first_length in enumerate(first_lengths):
            window_room = room - first_length
            if window_room > stride:
                continue
            second_length = len(self.backend.encode(pairs[index], add_special_tokens=False).ids)
            if second_length > window_room:  # it needs truncating, so it needs windows that advance
                problem = (
                    f"is {first_length} tokens long but a window holds {room}"
                    if window_room < 1
                    else f"leaves {window_room} tokens per window for the second, not more than the stride ({stride})"
                )
                raise InputError(
                    f"input {index + 1}: the first text of the pair {problem}",
                    hint="shorten the first text (the question), or use a smaller stride or a larger max_length",
                )

    def _set_truncation(self, *, max_length: int, stride: int, strategy: Truncation) -> None:
        target = {"max_length": max_length, "stride": stride, "strategy": strategy, "direction": "right"}
        current = self.backend.truncation
        # Re-enabling costs little, but skipping it keeps the common repeated-batch path free of churn.
        if current is None or any(current.get(key) != value for key, value in target.items()):
            self.backend.enable_truncation(**target)

    def tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Join tokens back into text the way transformers' convert_tokens_to_string does (e.g. '##' merging)."""
        return self.backend.decoder.decode(list(tokens))


def flatten_windows(encodings: Sequence[Encoding]) -> list[Window]:
    """All windows in transformers' return_overflowing_tokens order: each input's main window, then its overflow."""
    return [
        Window(input_index, window)
        for input_index, encoding in enumerate(encodings)
        for window in [encoding, *encoding.overflowing]
    ]


def collate(encodings: Sequence[Encoding], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest encoding in the batch."""
    import torch

    width = max((len(encoding.ids) for encoding in encodings), default=0)

    def padded(rows: list[list[int]], fill: int) -> torch.Tensor:
        return torch.tensor([row + [fill] * (width - len(row)) for row in rows], dtype=torch.long).view(
            len(rows), width
        )  # [B, T]

    return {
        "input_ids": padded([encoding.ids for encoding in encodings], pad_id),  # [B, T]
        "attention_mask": padded([encoding.attention_mask for encoding in encodings], 0),  # [B, T]
        "token_type_ids": padded([encoding.type_ids for encoding in encodings], 0),  # [B, T]
    }


# A token covers a few characters; a prefix of 64 per token leaves ample room (whitespace runs, long words).
_CHARS_PER_TOKEN_BOUND = 64
# encode_counted tokenizes whole texts in groups of about this many characters (a few MB of encodings).
_GROUP_CHARS = 1 << 16
# total_tokens and word_chunks tokenize a long text in pieces of this many tokens' worth of characters
# (32 KB; the pieces' size bounds the memory counting a 10 MB line takes, docs/performance.md).
_PIECE_TOKENS = 512
# A word (a run without whitespace) is kept whole in one piece up to this many tokens' worth of characters
# (256 KB); total_tokens shortens a longer one to that (see _encode_prefixes for why little changes).
_GIANT_WORD_TOKENS = 4096
_WHITESPACE = re.compile(r"[ \n\t]")


def _prefix_budget(max_length: int) -> int:
    """Characters of a long text worth tokenizing for `max_length` tokens (never fewer than 4096)."""
    return max(max_length, 64) * _CHARS_PER_TOKEN_BOUND


def _whitespace_prefix(text: str, budget: int) -> str:
    """`text` itself when short; otherwise its first `budget` characters, ending at the last whitespace."""
    return text if len(text) <= budget else text[:_whitespace_cut(text, 0, budget)]


def _whitespace_cut(text: str, start: int, budget: int) -> int:
    """Where a piece of `text` from `start` of at most `budget` characters ends: at its last whitespace in
    the second half, else after `budget` characters (or at the end of the text)."""
    stop = start + budget
    if stop >= len(text):
        return len(text)
    space = max(text.rfind(" ", start, stop), text.rfind("\n", start, stop), text.rfind("\t", start, stop))
    return space if space > start + budget // 2 else stop


def _piece_end(text: str, start: int, budget: int, longest: int) -> int:
    """Where a piece of `text` from `start` ends: at its last whitespace within `budget` characters; where
    there is none (a long word), at the first whitespace after, at most `longest` characters on."""
    stop = start + budget
    if stop >= len(text):
        return len(text)
    space = max(text.rfind(" ", start + 1, stop + 1), text.rfind("\n", start + 1, stop + 1),
                text.rfind("\t", start + 1, stop + 1))
    if space > start:
        return space
    limit = min(start + longest, len(text))
    after = _WHITESPACE.search(text, stop, limit)
    return after.start() if after else limit


def _shorten_giant_words(text: str, budget: int) -> str:
    """`text` with every run of more than `budget` non-space characters cut to `budget` characters."""
    if len(text) <= budget:
        return text
    return re.sub(r"\S{%d}\S+" % budget, lambda match: match.group()[:budget], text)
