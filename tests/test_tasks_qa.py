"""QuestionAnswering against transformers' question-answering pipeline on the same random-weight models."""

import json
import warnings

import factory
import pytest
import torch
import transformers

from squeezecli.errors import SqueezeError
from squeezecli.model.runtime import Runtime
from squeezecli.tasks.qa import QuestionAnswering

ARCHS = ["bert", "squeezebert", "distilbert", "roberta"]
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHORT_CONTEXTS = [
    "Marie Curie studied radioactivity in Paris; Ångström measured light in Uppsala.",
    "William Shakespeare wrote Hamlet around 1600 in England, said the naïve café owner in Zürich.",
]
QUESTIONS = ["Who wrote Hamlet?", "Where did Marie Curie study radioactivity?"]
LONG_CONTEXT = " ".join(
    [
        "SqueezeBERT runs on a CPU in Paris, Berlin, London, New York and São Paulo.",
        "Marie Curie studied radioactivity; Ångström measured light; Gödel proved incompleteness.",
        "A naïve café owner in Zürich served crème brûlée, jalapeño soup and a piña colada.",
        "Questions: Who wrote Hamlet? William Shakespeare did, around 1600 in England.",
        "Prices rose 3.5% in March 2024, said the Bank of Canada and the IMF.",
    ]
)


class Models:
    """One random-weight QA checkpoint per architecture, loaded both ways."""

    def __init__(self, root):
        self.root = root
        self.built = {}

    def get(self, arch):
        if arch not in self.built:
            directory = self.root / arch
            factory.build(directory, arch, "qa")
            tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
            if arch == "distilbert":  # the factory's tokenizer config says BertTokenizer, which adds token types
                tokenizer.model_input_names = ["input_ids", "attention_mask"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe = transformers.pipeline("question-answering", model=str(directory), tokenizer=tokenizer)
            self.built[arch] = (pipe, Runtime.from_dir(directory, "qa"))
        return self.built[arch]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return Models(tmp_path_factory.mktemp("qa-models"))


def reference(pipe, question, context, **options):
    """transformers' answers as our entries ("" with start = end = 0 is its "no answer")."""
    answers = pipe(question=question, context=context, **options)
    answers = answers if isinstance(answers, list) else [answers]
    return [
        {"question": question, "answer": a["answer"], "score": a["score"], "start": a["start"], "end": a["end"]}
        if a["answer"] or a["end"]
        else {"question": question, "answer": None, "score": a["score"], "start": None, "end": None}
        for a in answers
    ]


def assert_same_answers(ours, theirs):
    assert [(a["question"], a["answer"], a["start"], a["end"]) for a in ours] == [
        (a["question"], a["answer"], a["start"], a["end"]) for a in theirs
    ]
    assert [a["score"] for a in ours] == pytest.approx([a["score"] for a in theirs], abs=1e-4, rel=1e-4)


def pipeline_options(**ours):
    """Our option names -> the pipeline's."""
    names = {"max_length": "max_seq_len", "stride": "doc_stride"}
    return {names.get(key, key): value for key, value in ours.items()}


def window_count(runtime, question, context, max_length, stride):
    (encoding,) = runtime.tokenizer.encode(
        [question], [context], max_length=max_length, stride=stride, overflow=True, truncation="only_second"
    )
    return 1 + len(encoding.overflowing)


@pytest.mark.parametrize("arch", ARCHS)
def test_short_contexts_match_pipeline(models, arch):
    pipe, runtime = models.get(arch)
    results = QuestionAnswering(runtime, questions=QUESTIONS)(SHORT_CONTEXTS)
    assert len(results) == len(SHORT_CONTEXTS)
    for context, result in zip(SHORT_CONTEXTS, results):
        expected = [answer for question in QUESTIONS for answer in reference(pipe, question, context)]
        assert_same_answers(result["answers"], expected)
        for answer in result["answers"]:
            assert answer["answer"] == context[answer["start"] : answer["end"]]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("top_k", [1, 4])
def test_contexts_of_many_windows_match_pipeline(models, arch, top_k):
    pipe, runtime = models.get(arch)
    options = dict(max_length=40, stride=12, top_k=top_k)
    assert window_count(runtime, QUESTIONS[0], LONG_CONTEXT, 40, 12) >= 4
    qa = QuestionAnswering(runtime, questions=QUESTIONS, **options)
    (result,) = qa([LONG_CONTEXT])
    expected = [a for q in QUESTIONS for a in reference(pipe, q, LONG_CONTEXT, **pipeline_options(**options))]
    assert_same_answers(result["answers"], expected)
    assert len(result["answers"]) == top_k * len(QUESTIONS)


def test_windows_go_through_the_model_in_bounded_batches(models, monkeypatch):
    pipe, runtime = models.get("bert")
    batch_sizes = []
    forward = Runtime.forward  # frozen: the class is patched

    def spy(self, encodings):
        batch_sizes.append(len(encodings))
        return forward(self, encodings)

    monkeypatch.setattr(Runtime, "forward", spy)
    contexts = [LONG_CONTEXT, SHORT_CONTEXTS[0], LONG_CONTEXT[::-1]]
    results = QuestionAnswering(runtime, questions=QUESTIONS, max_length=40, stride=12, batch_size=3)(contexts)
    windows = sum(window_count(runtime, q, c, 40, 12) for c in contexts for q in QUESTIONS)
    assert sum(batch_sizes) == windows and max(batch_sizes) <= 3 and len(batch_sizes) > 1
    for context, result in zip(contexts, results):
        expected = [a for q in QUESTIONS for a in reference(pipe, q, context, max_seq_len=40, doc_stride=12)]
        assert_same_answers(result["answers"], expected)


def steer_to_cls(pipe, runtime, strength):
    """Point both models' start and end logits along the [CLS] vector of a short input: the larger
    `strength`, the more the [CLS] position ("no answer") outscores every span; negative buries it."""
    encoded = pipe.tokenizer(QUESTIONS[0], SHORT_CONTEXTS[0], return_tensors="pt")
    with torch.no_grad():
        inputs = {name: encoded[name] for name in pipe.tokenizer.model_input_names}
        cls_vector = pipe.model.base_model(**inputs)[0][0, 0]  # [H]
        for head in (pipe.model.qa_outputs, runtime.encoder.head):
            head.weight.copy_(strength * cls_vector.expand(2, -1))
            head.bias.zero_()


@pytest.fixture
def steered(tmp_path):
    """Fresh models per test: steering rewrites the head weights."""
    return Models(tmp_path)


@pytest.mark.parametrize("arch", ARCHS)
def test_no_answer_when_the_model_points_at_cls(steered, arch):
    pipe, runtime = steered.get(arch)
    steer_to_cls(pipe, runtime, 1.0)
    for context in (SHORT_CONTEXTS[0], LONG_CONTEXT):
        options = dict(handle_impossible_answer=True, top_k=2, max_length=48, stride=16)
        (result,) = QuestionAnswering(runtime, questions=QUESTIONS[:1], **options)([context])
        best = result["answers"][0]
        assert best["answer"] is None and best["start"] is None and best["score"] > 0.9
        assert_same_answers(result["answers"], reference(pipe, QUESTIONS[0], context, **pipeline_options(**options)))
        # Without handle_impossible_answer the best span is returned, however unlikely.
        (result,) = QuestionAnswering(runtime, questions=QUESTIONS[:1], top_k=2, max_length=48, stride=16)([context])
        assert all(answer["answer"] for answer in result["answers"])
        expected = reference(pipe, QUESTIONS[0], context, top_k=2, max_seq_len=48, doc_stride=16)
        assert_same_answers(result["answers"], expected)


@pytest.mark.parametrize("arch", ARCHS)
def test_no_answer_ranks_among_spans_as_in_pipeline(steered, arch):
    pipe, runtime = steered.get(arch)
    ranks = set()
    for strength in (-1.0, 0.002, 0.004, 0.008, 1.0):
        steer_to_cls(pipe, runtime, strength)
        qa = QuestionAnswering(runtime, questions=QUESTIONS[:1], handle_impossible_answer=True, top_k=4)
        (result,) = qa([SHORT_CONTEXTS[0]])
        assert_same_answers(result["answers"], reference(pipe, QUESTIONS[0], SHORT_CONTEXTS[0],
                                                         handle_impossible_answer=True, top_k=4))
        answers = [answer["answer"] for answer in result["answers"]]
        ranks.add(answers.index(None) if None in answers else "absent")
    # The sweep covers "no answer" winning, losing among the spans, and falling out of the top 4.
    assert 0 in ranks and "absent" in ranks and ranks & {1, 2, 3}


def test_empty_context_gets_an_explicit_no_answer(models):
    _, runtime = models.get("bert")
    results = QuestionAnswering(runtime, questions=QUESTIONS, top_k=3)(["", SHORT_CONTEXTS[0]])
    empty = results[0]["answers"]
    assert [answer["question"] for answer in empty] == QUESTIONS
    assert all(answer["answer"] is None and answer["start"] is None and 0 < answer["score"] <= 1 for answer in empty)
    assert all(answer["answer"] for answer in results[1]["answers"])


def test_an_empty_context_file_has_its_record_as_any_context_without_an_answer(default_models, tmp_path):
    """qa reads each file as one context: an empty (or blank) file is a context too, answered with the
    no-answer entry a context without an answer gets, so the output has one record per file."""
    from click.testing import CliRunner

    from squeezecli import cli

    files = {"ada.txt": SHORT_CONTEXTS[0], "empty.txt": "", "blank.txt": "\n  \n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = CliRunner().invoke(cli.squeeze, ["qa", "-m", str(default_models["qa"]), "--precision", "fp32",
                                              *(f"-q{question}" for question in QUESTIONS), "--top-k", "2",
                                              *(str(tmp_path / name) for name in files)], catch_exceptions=False)
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["file"] for record in records] == [str(tmp_path / name) for name in files]
    task = QuestionAnswering(Runtime.from_dir(default_models["qa"], "qa"), questions=QUESTIONS, top_k=2)
    for record, text in zip(records[1:], list(files.values())[1:]):
        assert record["answers"] == task([text])[0]["answers"]
        assert [(answer["question"], answer["answer"], answer["start"]) for answer in record["answers"]] == [
            (question, None, None) for question in QUESTIONS]


def test_results_are_json_lines_ready(models):
    _, runtime = models.get("roberta")
    results = QuestionAnswering(runtime, questions=QUESTIONS, top_k=2, handle_impossible_answer=True)(SHORT_CONTEXTS)
    for result in results:
        assert set(result) == {"answers"}
        decoded = json.loads(json.dumps(result))
        assert decoded == result
        assert [answer["question"] for answer in result["answers"]] == [q for q in QUESTIONS for _ in range(2)]
        scores = [[a["score"] for a in result["answers"] if a["question"] == q] for q in QUESTIONS]
        assert all(s == sorted(s, reverse=True) for s in scores)


def test_long_questions_are_cut_to_max_question_len(models):
    _, runtime = models.get("bert")
    question = "who wrote the play hamlet in england around 1600?"
    cut = QuestionAnswering(runtime, questions=[question], max_question_len=4, top_k=3)(SHORT_CONTEXTS)
    short = QuestionAnswering(runtime, questions=["who wrote the play"], top_k=3)(SHORT_CONTEXTS)
    whole = QuestionAnswering(runtime, questions=[question], top_k=3)(SHORT_CONTEXTS)
    without_question = [[{k: v for k, v in a.items() if k != "question"} for a in r["answers"]] for r in cut]
    assert without_question == [[{k: v for k, v in a.items() if k != "question"} for a in r["answers"]] for r in short]
    assert without_question != [[{k: v for k, v in a.items() if k != "question"} for a in r["answers"]] for r in whole]
    assert all(answer["question"] == question for result in cut for answer in result["answers"])


def test_answers_stay_within_max_answer_len(models):
    _, runtime = models.get("bert")
    (result,) = QuestionAnswering(runtime, questions=QUESTIONS[:1], max_answer_len=1, top_k=5)([LONG_CONTEXT])
    for answer in result["answers"]:
        assert " " not in answer["answer"]  # one token never spans two words


@pytest.mark.parametrize(
    "options",
    [dict(questions=[]), dict(questions=["Who?", " "]), dict(questions=QUESTIONS, top_k=0),
     dict(questions=QUESTIONS, max_answer_len=0)],
)
def test_bad_options_are_user_errors(models, options):
    _, runtime = models.get("bert")
    with pytest.raises(SqueezeError):
        QuestionAnswering(runtime, **options)
