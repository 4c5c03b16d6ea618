"""The benchmark loop on a tiny random model: resume, errors, mt_bench turns, the audit."""

from __future__ import annotations

import itertools

import pytest
import torch

from hasten.bench.datasets import Question, build_messages, encode_chat
from hasten.bench.peers import Contender, Outcome, PeerContext, build_contenders
from hasten.bench.records import RECORDS_FILE, read_records, record_key
from hasten.bench.report import render_report
from hasten.bench.runner import BenchRunner, BenchSettings, rotated
from hasten.bench.tiny import tiny_random

QUESTIONS = [
    Question("81", "mt_bench", "writing", ("Write a short poem about rain.", "Now give it a title.")),
    Question("161", "translation", "translation", ("Translate German to English: Guten Morgen",)),
    Question("321", "qa", "qa", ("abcabcabcabc abcabc abc",)),
]
TOO_LONG = Question("999", "rag", "rag", ("x" * 400,))  # beyond the tiny model's 256-token context
META = {
    "model": "tiny-random",
    "dtype": "float32",
    "methods": ["ar", "prompt_lookup", "hf_greedy"],
    "runs": 1,
    "max_new_tokens": 12,
    "sampling": {"greedy": True},
    "questions": [],
    "max_turns": None,
    "contenders": {},
    "oracle": {"speedup": 3.0, "k": 7},
}


@pytest.fixture(scope="module")
def tiny():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2-layer model: thread start-up costs more than it saves
    yield tiny_random(seed=3, context_length=256)
    torch.set_num_threads(threads)


def tick_clock():
    """A deterministic clock: every call advances one whole second (exact in float)."""
    counter = itertools.count()
    return lambda: float(next(counter))


def make_runner(tiny, out_dir, names=("ar", "prompt_lookup", "hf_greedy"), extra=(), on_record=None):
    model, tok = tiny
    clock = tick_clock()
    contenders = build_contenders(list(names), PeerContext(model, "tiny-random", clock)) + list(extra)
    settings = BenchSettings(max_new_tokens=12, warmup=1, warmup_tokens=4)
    return BenchRunner(model, tok, contenders, settings, out_dir, clock=clock, progress=False, on_record=on_record)


def start(runner, resume=False):
    """prepare + the protocol's warm-up (which also absorbs one-off costs such as the
    engine's first forward-cost measurement)."""
    runner.prepare(META, resume=resume)
    runner.warm_up(QUESTIONS)


def results_section(out_dir) -> str:
    text = render_report(out_dir).read_text()
    return text[text.index("## Results") :]


def test_rotated():
    assert rotated(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert rotated(["a"], 3) == ["a"]


def test_resume_after_interruption_gives_the_same_report(tiny, tmp_path):
    full = make_runner(tiny, tmp_path / "full")
    start(full)
    full.run(QUESTIONS)

    seen = []

    def stop_after_five(record):
        seen.append(record)
        if len(seen) == 5:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    first = make_runner(tiny, part, on_record=stop_after_five)
    start(first)
    with pytest.raises(KeyboardInterrupt):
        first.run(QUESTIONS)
    assert len(read_records(part / RECORDS_FILE)) == 5
    with open(part / RECORDS_FILE, "ab") as f:  # a kill in the middle of a write
        f.write(b'{"kind": "generation", "run": 0, "subt')
    with pytest.raises(ValueError, match="--resume"):
        make_runner(tiny, part).prepare(META, resume=False)
    second = make_runner(tiny, part)
    start(second, resume=True)
    result = second.run(QUESTIONS, resume=True)
    assert result.resumed == 5 - sum(1 for r in seen if r["kind"] == "audit")

    a = sorted(read_records(tmp_path / "full" / RECORDS_FILE), key=record_key)
    b = sorted(read_records(part / RECORDS_FILE), key=record_key)
    assert [record_key(r) for r in a] == [record_key(r) for r in b]
    assert len(a) == 4 * 3 + 4 * 2  # 4 question turns x 3 methods + 2 audits each
    assert results_section(tmp_path / "full") == results_section(part)


def test_resume_refuses_another_protocol(tiny, tmp_path):
    runner = make_runner(tiny, tmp_path)
    runner.prepare(META, resume=False)
    with pytest.raises(ValueError, match="max_new_tokens"):
        runner.prepare(META | {"max_new_tokens": 99}, resume=True)


def test_an_erroring_question_is_recorded_and_the_run_goes_on(tiny, tmp_path):
    runner = make_runner(tiny, tmp_path, names=("ar", "prompt_lookup"))
    start(runner)
    result = runner.run([TOO_LONG, QUESTIONS[1]])
    records = read_records(tmp_path / RECORDS_FILE)
    errors = [r for r in records if r["kind"] == "generation" and r["error"]]
    assert {r["method"] for r in errors} == {"ar", "prompt_lookup"} and result.errors == 2
    assert all(r["question_id"] == "999" and "context length" in r["error"] for r in errors)
    done = [r for r in records if r["kind"] == "generation" and r["question_id"] == "161"]
    assert len(done) == 2 and all(r["error"] is None and r["new_tokens"] > 0 for r in done)
    assert "## Errors" in render_report(tmp_path).read_text()


class Scripted(Contender):
    """Answers every turn with fixed text and remembers the prompts it was given."""

    engine, precision = "test", "n/a"

    def __init__(self, name, tokenizer, answer):
        self.name, self.tokenizer, self.answer, self.prompts = name, tokenizer, answer, []

    def generate(self, prompt_ids, request):
        self.prompts.append(list(prompt_ids))
        return Outcome(self.tokenizer(self.answer)["input_ids"])


def test_mt_bench_second_turn_carries_the_first_answer(tiny, tmp_path):
    model, tok = tiny
    scripted = Scripted("scripted", tok, "ANSWER-ONE")
    runner = make_runner(tiny, tmp_path, names=("ar",), extra=[scripted])
    runner.prepare(META, resume=False)
    runner.run(QUESTIONS[:1])
    assert len(scripted.prompts) == 2
    second = tok.decode(scripted.prompts[1])
    assert second.index("Write a short poem") < second.index("ANSWER-ONE") < second.index("Now give it a title")
    assert "ANSWER-ONE" not in tok.decode(scripted.prompts[0])
    records = read_records(tmp_path / RECORDS_FILE)
    ar_first = next(r for r in records if r["method"] == "ar" and r["turn"] == 0 and r["kind"] == "generation")
    ar_second = next(r for r in records if r["method"] == "ar" and r["turn"] == 1 and r["kind"] == "generation")
    assert ar_second["prompt_tokens"] > ar_first["prompt_tokens"] + ar_first["new_tokens"]
    audit = next(r for r in records if r["kind"] == "audit" and r["turn"] == 1)
    assert audit["prompt_differs"] is True


class OffByOne(Contender):
    """Plain decoding with the token at ``position`` replaced: a deliberate mismatch."""

    engine, precision = "test", "float32"

    def __init__(self, inner, position, vocab):
        self.name, self.inner, self.position, self.vocab = "off_by_one", inner, position, vocab

    def generate(self, prompt_ids, request):
        out = self.inner.generate(prompt_ids, request)
        out.new_ids[self.position] = (out.new_ids[self.position] + 1) % self.vocab
        return out


def test_audit_finds_the_first_difference_and_its_margin(tiny, tmp_path):
    model, tok = tiny
    plain = build_contenders(["ar"], PeerContext(model, "tiny-random", tick_clock()))[0]
    runner = make_runner(tiny, tmp_path, names=("ar", "prompt_lookup"), extra=[OffByOne(plain, 3, len(tok))])
    start(runner)
    runner.run(QUESTIONS[1:2])
    records = read_records(tmp_path / RECORDS_FILE)
    audits = {r["method"]: r for r in records if r["kind"] == "audit"}
    assert audits["prompt_lookup"]["exact"] is True and audits["prompt_lookup"]["first_diff"] is None
    bad = audits["off_by_one"]
    assert bad["exact"] is False and bad["first_diff"] == 3
    base = next(r for r in records if r["kind"] == "generation" and r["method"] == "ar")
    prompt = encode_chat(tok, build_messages(QUESTIONS[1].turns, []))
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + base["output_ids"][:3]])).logits[0, -1]
    top = torch.topk(logits.double(), 2).values
    assert bad["margin"] == pytest.approx(float(top[0] - top[1]))
    text = render_report(tmp_path).read_text()
    assert "`off_by_one`: 1 question turn(s) differ" in text


def test_audit_margin_is_taken_on_the_penalized_scores_greedy_chose_from(tiny, tmp_path):
    from hasten.bench.peers import Request
    from hasten.sampling import SamplingParams

    model, tok = tiny
    clock = tick_clock()
    sampling = SamplingParams(repetition_penalty=1.5)
    plain = build_contenders(["ar"], PeerContext(model, "tiny-random", clock))
    settings = BenchSettings(max_new_tokens=12, warmup=0, request=Request(1, sampling))
    runner = BenchRunner(
        model, tok, plain + [OffByOne(plain[0], 3, len(tok))], settings, tmp_path, clock=clock, progress=False
    )
    runner.prepare(META, resume=False)
    runner.run(QUESTIONS[1:2])
    records = read_records(tmp_path / RECORDS_FILE)
    bad = next(r for r in records if r["kind"] == "audit")
    base = next(r for r in records if r["kind"] == "generation" and r["method"] == "ar")
    history = encode_chat(tok, build_messages(QUESTIONS[1].turns, [])) + base["output_ids"][:3]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([history])).logits[0, -1].double()
    seen = torch.zeros_like(logits, dtype=torch.bool)
    seen[torch.tensor(history)] = True  # penalty by hand: divide positive scores, multiply negative ones
    scores = torch.where(seen, torch.where(logits < 0, logits * 1.5, logits / 1.5), logits)
    top = torch.topk(scores, 2).values
    assert bad["first_diff"] == 3 and bad["margin"] == pytest.approx(float(top[0] - top[1]), rel=1e-5)


def test_a_failing_margin_forward_still_records_the_mismatch(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    plain = build_contenders(["ar"], PeerContext(model, "tiny-random", tick_clock()))[0]
    runner = make_runner(tiny, tmp_path, names=("ar",), extra=[OffByOne(plain, 2, len(tok))])
    outcomes = iter([RuntimeError("out of memory"), float("nan")])

    def margin(*args):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(runner, "_margin", margin)
    start(runner)
    runner.run(QUESTIONS[1:3])  # two turns, two mismatches: the margin forward raises, then gives NaN
    audits = [r for r in read_records(tmp_path / RECORDS_FILE) if r["kind"] == "audit"]
    assert [(a["exact"], a["first_diff"], a["margin"]) for a in audits] == [(False, 2, None), (False, 2, None)]
    assert [a["margin_error"] for a in audits] == ["RuntimeError: out of memory", "non-finite margin nan"]


def test_dtype_variant_is_audited_against_plain_decoding_in_its_dtype(tiny, tmp_path):
    """``prompt_lookup@float64`` runs on a float64 copy and is compared with ``ar@float64``;
    ``hf_greedy@float64`` too. The audit records name that baseline."""
    model, tok = tiny
    model64 = tiny_random(seed=3, context_length=256, dtype=torch.float64)[0]
    clock = tick_clock()
    contexts = {None: PeerContext(model, "tiny-random", clock), "float64": PeerContext(model64, "tiny-random", clock)}
    names = ["ar", "ar@float64", "prompt_lookup@float64", "hf_greedy@float64"]
    contenders = build_contenders(names, contexts)
    assert contenders[2].model is model64 and contenders[0].model is model
    settings = BenchSettings(max_new_tokens=12, warmup=0)
    with pytest.raises(ValueError, match="ar@float64"):
        BenchRunner(model, tok, [contenders[0], contenders[2]], settings, tmp_path / "bad", clock=clock, progress=False)
    runner = BenchRunner(
        model,
        tok,
        contenders,
        settings,
        tmp_path / "run",
        clock=clock,
        progress=False,
        variant_models={"float64": model64},
    )
    runner.prepare(META | {"methods": names}, resume=False)
    runner.run(QUESTIONS[1:])
    audits = [r for r in read_records(tmp_path / "run" / RECORDS_FILE) if r["kind"] == "audit"]
    assert {(a["method"], a["baseline"]) for a in audits} == {
        ("prompt_lookup@float64", "ar@float64"),
        ("hf_greedy@float64", "ar@float64"),
    }
    assert all(a["exact"] for a in audits)
    report = render_report(tmp_path / "run").read_text()
    assert "`prompt_lookup@float64` | `ar@float64` | 100% (2/2)" in report


def test_sampling_run_audits_the_draft_free_methods(tiny, tmp_path):
    """Sampling with one seed per question: ar, prompt_lookup and trie draw by position, so
    they are audited and token-identical; transformers' sampling is not audited; a
    contender declared sampled-exact that is not is caught (no margin: it is a greedy
    diagnostic)."""
    from hasten.bench.peers import Request
    from hasten.sampling import SamplingParams

    model, tok = tiny
    clock = tick_clock()
    ctx = PeerContext(model, "tiny-random", clock)
    plain = build_contenders(["ar"], ctx)[0]
    broken = OffByOne(plain, 0, len(tok))
    broken.sampled_exact = True
    contenders = build_contenders(["ar", "prompt_lookup", "trie", "hf_greedy"], ctx) + [broken]
    assert [c.sampled_exact for c in contenders] == [True, True, True, False, True]
    request = Request(max_new_tokens=1, sampling=SamplingParams(do_sample=True, temperature=0.9, top_p=0.95), seed=5)
    settings = BenchSettings(max_new_tokens=12, warmup=1, warmup_tokens=4, request=request)
    runner = BenchRunner(model, tok, contenders, settings, tmp_path, clock=clock, progress=False)
    meta = dict(
        META, sampling={"greedy": False, "do_sample": True}, contenders={c.name: c.describe() for c in contenders}
    )
    runner.prepare(meta, resume=False)
    runner.warm_up(QUESTIONS)
    runner.run(QUESTIONS)
    records = read_records(tmp_path / RECORDS_FILE)
    audits = [r for r in records if r["kind"] == "audit"]
    assert {r["method"] for r in audits} == {"prompt_lookup", "trie", "off_by_one"}
    assert all(r["exact"] for r in audits if r["method"] != "off_by_one")
    assert all(
        not r["exact"] and r["first_diff"] == 0 and r["margin"] is None for r in audits if r["method"] == "off_by_one"
    )
    outputs = {
        (r["question_id"], r["turn"]): r["output_ids"]
        for r in records
        if r["kind"] == "generation" and r["method"] == "ar"
    }
    greedy = (
        build_contenders(["ar"], ctx)[0]
        .generate(encode_chat(tok, build_messages(QUESTIONS[1].turns, [])), Request(max_new_tokens=12))
        .new_ids
    )
    assert outputs[("161", 0)] != greedy  # it did sample
    text = render_report(tmp_path).read_text()
    assert "Sampling run" in text and "`hf_greedy`: outputs differ by design" in text
    assert "n/a (sampled)" in text  # no "= hf_greedy" agreement figure for sampled outputs
    assert "`off_by_one`: 4 question turn(s) differ" in text
