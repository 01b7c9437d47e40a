"""A deterministic benchmark corpus: English-like lines of mixed length, the same bytes on every machine.

Words are drawn from a fixed list of common English words with Zipf weights (so WordPiece splits them
as it splits real prose, about 1.2 tokens a word with punctuation), and line lengths are log-uniform
between 5 and 120 words: as many 5-10 word lines as 60-120 word lines, like a file of reviews or
tweets mixed with paragraphs. That spread is what length-bucketed batching is for; a corpus of equal
lines would hide it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

LINES = 2000
MIN_WORDS, MAX_WORDS = 5, 120
SEED = 5

_WORDS = """
the of and to a in is it you that he was for on are with as I his they be at one have this from or had by
not but what some we can out other were all there when up use your how said an each she which do their time
if will way about many then them write would like so these her long make thing see him two has look more day
could go come did number sound no most people my over know water than call first who may down side been now
find any new work part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line differ turn cause
much mean before move right boy old too same tell does set three want air well also play small end put home
read hand port large spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth father head stand
own page should country found answer school grow study still learn plant cover food sun four between state
keep eye never last let thought city tree cross farm hard start might story saw far sea draw left late run
movie film book service food hotel room staff price quality delivery order product review experience story
actor plot ending music screen battery phone camera app update support team manager customer weekend trip
love loved hate hated enjoy enjoyed terrible awful wonderful excellent boring amazing disappointing great
bad worse worst best better fine okay poor cheap expensive slow fast friendly rude clean dirty broken perfect
really quite rather totally absolutely never always often sometimes barely hardly nearly almost definitely
""".split()
_PUNCTUATION = [".", ".", ".", "!", "?", "..."]


def lines(count: int = LINES, seed: int = SEED) -> list[str]:
    """`count` lines; the first n of lines(N) are lines(n) for any n <= N, so --quick runs a prefix."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(_WORDS))]
    out = []
    for _ in range(count):
        n = round(math.exp(rng.uniform(math.log(MIN_WORDS), math.log(MAX_WORDS))))
        words = rng.choices(_WORDS, weights, k=n)
        for i in range(1, n - 1):
            if rng.random() < 0.06:  # commas inside long sentences, as in prose
                words[i] += ","
        out.append(" ".join(words).capitalize() + rng.choice(_PUNCTUATION))
    return out


def write(path: Path, count: int = LINES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines(count)), encoding="utf-8")
    return path


if __name__ == "__main__":
    for line in lines(10):
        print(line)
