"""Extractive question answering, decoded exactly as transformers' QuestionAnsweringPipeline does it.

Each (question, context) pair is tokenized as `[CLS] question [SEP] context [SEP]`; a context longer than
one window is cut into overlapping windows (`stride` tokens of overlap), every window is scored, and the
best spans of all windows compete for the answer. Windows of all pairs in a batch go through the model
together, at most `batch_size` at a time, so one long document cannot blow up a forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from tokenizers import Encoding

from ..checkpoint import heads
from ..errors import SqueezeError, UsageError
from ..model.tokenizer import flatten_windows
from .base import WindowedTask

if TYPE_CHECKING:
    from ..model.runtime import Runtime

# transformers' defaults: windows of at most 384 tokens, overlapping by up to 128.
DEFAULT_MAX_SEQ_LEN = 384
DEFAULT_MAX_STRIDE = 128
# transformers pushes masked logits to this before the softmax rather than to -inf.
_MASKED_LOGIT = -10000.0
_CONTEXT_SEQUENCE = 1  # sequence id of the context in a (question, context) pair


@dataclass
class _Answer:
    """A span of the context, or "no answer" (all three None)."""

    text: str | None
    start: int | None
    end: int | None
    score: float


class QuestionAnswering(WindowedTask):
    """Answers every question in `questions` from each input text (the context).

    Result per input: `{"answers": [...]}`, a flat list ordered by question (in the order given) and,
    within a question, by score. Each entry is

        {"question": str, "answer": str | None, "score": float, "start": int | None, "end": int | None}

    where `start`/`end` are character offsets into the input text and `answer` is `text[start:end]`.
    A "no answer" entry has `answer`, `start` and `end` null and the model's probability that the
    context does not answer the question as its score. It competes with the spans when
    `handle_impossible_answer` is on (the CLI turns it on for SQuAD 2.0 models, which learned to point at
    [CLS] for unanswerable questions; transformers' default is off). A question that no span can answer
    at all (an empty context) gets the no-answer entry whatever that option says.

    Options, with transformers' defaults and meaning: `top_k` answers per question (fewer when the
    context has fewer distinct spans); `max_length` tokens per window (transformers' max_seq_len,
    default min(model limit, 384)); `stride` tokens of overlap between windows (doc_stride, default
    min(max_length // 2, 128), or less where a long question leaves less room); `max_answer_len` tokens
    per answer. Questions are cut to `max_question_len` tokens, as the SQuAD reference scripts do, with a
    notice (transformers' fast-tokenizer path keeps them whole, and fails when a question leaves no room
    for the context); a question that still leaves no room for context in the window is refused.
    """

    head = heads.QA
    pairs = True

    def __init__(
        self,
        runtime: Runtime,
        *,
        questions: Sequence[str],
        top_k: int = 1,
        stride: int | None = None,
        max_answer_len: int = 15,
        max_question_len: int = 64,
        handle_impossible_answer: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(runtime, default_max_length=DEFAULT_MAX_SEQ_LEN, **options)
        if not questions:
            raise SqueezeError("no question to answer", hint="ask one with -q/--question")
        if not all(question.strip() for question in questions):
            raise SqueezeError("a question is empty", hint="every -q/--question needs some text")
        for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len), ("max_question_len", max_question_len)):
            if value < 1:
                raise SqueezeError(f"{name} must be at least 1, not {value}")
        self.top_k = top_k
        self.max_answer_len = max_answer_len
        self.handle_impossible_answer = handle_impossible_answer
        self.questions = list(questions)
        self._model_questions = [self._cut_question(number, question, max_question_len)
                                 for number, question in enumerate(questions, 1)]
        self.stride = self._fitting_stride(stride, max_question_len)

    def _fitting_stride(self, stride: int | None, max_question_len: int) -> int:
        """The stride, checked: each window must hold the longest question, the special tokens and more
        than `stride` tokens of context (windows overlap by `stride`). Left out, it is transformers'
        default (half the window, at most DEFAULT_MAX_STRIDE), or half the room a long question leaves
        where that does not fit. Needs the model's tokenizer: checked on the model's preview (api.load)."""
        tokenizer = self.runtime.tokenizer
        longest = max(tokenizer.count(question, max_question_len) for question in self._model_questions)
        room = self.max_length - longest - tokenizer.backend.num_special_tokens_to_add(is_pair=True)
        raise_it = self.raise_max_length()
        if room < 1:
            raise UsageError(f"a {self.max_length}-token window leaves no room for the context after a question of "
                             f"{longest} tokens", hint=f"ask a shorter question{raise_it}")
        if stride is None:
            stride = min(self.max_length // 2, DEFAULT_MAX_STRIDE)
            return stride if stride < room else room // 2
        if stride >= room:
            raise UsageError(f"--stride {stride} does not fit: a {self.max_length}-token window leaves "
                             f"{room} tokens of context after the longest question",
                             hint=f"give --stride 0 to {room - 1}{raise_it}")
        return stride

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        if not texts:
            return []
        # Pair p is (question p % Q, context p // Q).
        count = len(self.questions)
        encodings = self.runtime.tokenizer.encode(
            [question for _ in texts for question in self._model_questions],
            [context for context in texts for _ in range(count)],
            max_length=self.max_length,
            stride=self.stride,
            overflow=True,
            truncation="only_second",
        )
        windows = flatten_windows(encodings)
        logits = self._window_logits([window.encoding for window in windows])
        windows_of_pair: list[list[tuple[Encoding, torch.Tensor]]] = [[] for _ in encodings]
        for window, window_logits in zip(windows, logits):
            windows_of_pair[window.input_index].append((window.encoding, window_logits))
        results = []
        for index, context in enumerate(texts):
            answers: list[dict[str, Any]] = []
            for q, question in enumerate(self.questions):
                answers += [
                    {"question": question, "answer": answer.text, "score": answer.score, "start": answer.start,
                     "end": answer.end}
                    for answer in self._answer(context, windows_of_pair[index * count + q])
                ]
            results.append({"answers": answers})
        return results

    def _cut_question(self, number: int, question: str, max_tokens: int) -> str:
        """The question up to the end of its `max_tokens`-th token (a notice says when that cuts it)."""
        tokenizer = self.runtime.tokenizer
        specials = tokenizer.backend.num_special_tokens_to_add(is_pair=False)
        (encoding,) = tokenizer.encode([question], max_length=max_tokens + specials)
        if not encoding.overflowing:
            return question
        which = f"question {number} of {len(self.questions)}" if len(self.questions) > 1 else "the question"
        self.notices.append(f"-q/--question: {which} is longer than {max_tokens} tokens; only its first {max_tokens} "
                            "are read, as the SQuAD reference scripts do")
        kept_ends = [end for (_, end), special in zip(encoding.offsets, encoding.special_tokens_mask) if not special]
        return question[: max(kept_ends)]

    def _window_logits(self, encodings: list[Encoding]) -> list[torch.Tensor]:
        """Start/end logits [T, 2] of each window, unpadded."""
        return self.runtime.forward_each(encodings, self.batch_size)

    def _answer(self, context: str, windows: list[tuple[Encoding, torch.Tensor]]) -> list[_Answer]:
        """The top_k answers to one question over all windows of its context."""
        null_score = math.inf
        answers: list[_Answer] = []
        by_text: dict[str, _Answer] = {}
        for encoding, logits in windows:
            start_probs, end_probs = _start_end_probabilities(encoding, logits, self.runtime.tokenizer.cls_id)
            # [CLS] at position 0 is where SQuAD 2.0 models point for "no answer"; as in transformers, the
            # window least sure that there is no answer decides.
            null_score = min(null_score, float(start_probs[0] * end_probs[0]))
            start_probs[0] = end_probs[0] = 0.0
            for start_token, end_token, score in self._best_spans(start_probs, end_probs):
                start, end = _character_span(encoding, start_token, end_token)
                text = context[start:end]
                # transformers sums the scores of spans that read the same, ignoring case.
                same = by_text.get(text.lower())
                if same is not None:
                    same.score += score
                else:
                    by_text[text.lower()] = answer = _Answer(text, start, end, score)
                    answers.append(answer)
        if self.handle_impossible_answer or not answers:
            answers.append(_Answer(None, None, None, null_score))
        # Stable: equal scores keep window order, and "no answer" comes after the spans it ties with.
        answers.sort(key=lambda answer: answer.score, reverse=True)
        return answers[: self.top_k]

    def _best_spans(self, start_probs: torch.Tensor, end_probs: torch.Tensor) -> list[tuple[int, int, float]]:
        """transformers' decode_spans: the most probable (start, end) token pairs with start <= end <
        start + max_answer_len, as P(start) * P(end)."""
        length = start_probs.shape[0]
        spans = (start_probs[:, None] * end_probs[None, :]).triu().tril(self.max_answer_len - 1)  # [T, T]
        # transformers decodes 2k + 10 spans before merging those that read the same; the count matters
        # because merged spans add up their scores.
        scores, flat = spans.flatten().topk(min(2 * self.top_k + 10, length * length))
        # Zero-probability spans touch masked tokens (question, specials, padding); transformers can
        # return them when a context has fewer spans than asked for, we never do.
        return [
            (index // length, index % length, score)
            for index, score in zip(flat.tolist(), scores.tolist())
            if score > 0.0
        ]


def _start_end_probabilities(
    encoding: Encoding, logits: torch.Tensor, cls_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax of the start and end logits over the tokens that may be part of an answer: the context's,
    and [CLS] (for "no answer")."""
    allowed = torch.tensor(
        [sequence == _CONTEXT_SEQUENCE or token == cls_id for sequence, token in zip(encoding.sequence_ids, encoding.ids)]
    )  # [T]
    probs = logits.masked_fill(~allowed[:, None], _MASKED_LOGIT).softmax(dim=0)  # [T, 2]
    return probs[:, 0].clone(), probs[:, 1].clone()  # [T], [T]


def _character_span(encoding: Encoding, start_token: int, end_token: int) -> tuple[int, int]:
    """Context characters of a token span, widened to whole words (transformers' align_to_words)."""
    start_word, end_word = encoding.token_to_word(start_token), encoding.token_to_word(end_token)
    if start_word is not None and end_word is not None:
        start_chars = encoding.word_to_chars(start_word, _CONTEXT_SEQUENCE)
        end_chars = encoding.word_to_chars(end_word, _CONTEXT_SEQUENCE)
        if start_chars is not None and end_chars is not None:
            return start_chars[0], end_chars[1]
    return encoding.offsets[start_token][0], encoding.offsets[end_token][1]
