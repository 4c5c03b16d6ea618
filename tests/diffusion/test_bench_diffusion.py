"""hasten bench-diffusion: records, resume, fidelity metrics, plots, the harness end to end on a tiny DiT."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

import hasten.diffusion as hd  # noqa: E402
from hasten.diffusion.bench import SuiteOutput, available_suites, get_suite, register_suite, registry  # noqa: E402
from hasten.diffusion.bench.digits import DigitsSuite  # noqa: E402
from hasten.diffusion.bench.plots import pareto_front, pareto_plot  # noqa: E402
from hasten.diffusion.bench.records import RecordLog, encode, read_bench_records, record_key  # noqa: E402
from hasten.diffusion.bench.runner import BenchOptions, run_bench  # noqa: E402
from hasten.diffusion.bench.suite import DiffusionSuite, Setting  # noqa: E402
from hasten.diffusion.models.digits import DigitClassifier  # noqa: E402
from hasten.diffusion.tstitch import TStitchConfig  # noqa: E402

DETERMINISTIC_FIELDS = (
    "model",
    "method",
    "setting",
    "seed",
    "skipped_fraction",
    "psnr",
    "ssim",
    "rel_l1",
    "accuracy",
    "deterministic",
    "repeats",
)


@pytest.fixture(scope="module")
def classifier():
    return DigitClassifier.fit()


class ThreeSettings(DigitsSuite):
    """The tiny suite with a hasten cache, T-Stitch and a diffusers peer only."""

    def settings(self, quick):
        return [
            Setting("static", "interval=2, warmup=1", hd.StaticCacheConfig(interval=2, warmup_steps=1)),
            Setting("tstitch", "fraction=0.5", TStitchConfig(0.5)),
            Setting("diffusers_fbc", "threshold=0.10", {"threshold": 0.10}),
        ]


class Interrupted(ThreeSettings):
    """Raises KeyboardInterrupt at its ``stop_after``-th sampling call."""

    stop_after = 0

    def run(self, method, config, seed):
        self.stop_after -= 1
        if self.stop_after == 0:
            raise KeyboardInterrupt
        return super().run(method, config, seed)


def _tiny(cls, classifier, **kwargs):
    suite = DigitsSuite.tiny(classifier=classifier)
    new = cls(
        suite.model, suite.small_model, steps=suite.steps, images=suite.images, classifier=classifier, name=suite.name
    )
    for key, value in kwargs.items():
        setattr(new, key, value)
    return new


def _options(out: Path, suite, **kwargs) -> BenchOptions:
    return BenchOptions(out=out, models=(suite.name,), repeats=1, progress=False, **kwargs)


# ----- records -----


def test_records_round_trip_through_the_log(tmp_path):
    records = [
        {
            "model": "m",
            "method": "uncached",
            "setting": "-",
            "seed": 0,
            "psnr": math.inf,
            "ssim": 1.0,
            "rel_l1": 0.0,
            "speedup": 1.0,
            "extra": {"calls": 5.0, "worst": -math.inf},
        },
        {"model": "m", "method": "static", "setting": "interval=2", "seed": 0, "psnr": 31.5, "speedup": 1.7},
        {"model": "m", "method": "first_block", "setting": "inf", "seed": 1, "error": "ValueError: inf"},
    ]
    with RecordLog(tmp_path / "r.jsonl") as log:
        for record in records:
            log.append(encode(record))
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [json.loads(line)["method"] for line in lines] == ["uncached", "static", "first_block"]
    assert json.loads(lines[0])["psnr"] == "inf"
    assert read_bench_records(tmp_path / "r.jsonl") == records
    assert record_key(records[2]) == ("m", "first_block", "inf", 1)


def test_an_unterminated_last_line_is_never_read_and_is_cut_on_reopening(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"model": "m", "method": "a", "setting": "-", "seed": 0}\n{"model": "m", "meth')
    assert len(read_bench_records(path)) == 1
    with RecordLog(path) as log:
        log.append({"model": "m", "method": "b", "setting": "-", "seed": 0})
    assert [r["method"] for r in read_bench_records(path)] == ["a", "b"]
    assert path.read_text().endswith("}\n")


# ----- fidelity and plots -----


def test_fidelity_on_hand_made_images(classifier):
    suite = DigitsSuite.tiny(classifier=classifier)
    zeros = np.zeros((4, 1, 16, 16), np.float32)  # 0.5 in [0, 1]
    same = suite.fidelity(SuiteOutput(zeros, 1.0), SuiteOutput(zeros.copy(), 1.0))
    assert same["psnr"] == math.inf and same["ssim"] == pytest.approx(1.0) and same["rel_l1"] == 0.0
    shifted = suite.fidelity(SuiteOutput(zeros, 1.0), SuiteOutput(zeros + 0.2, 1.0))  # 0.6: MSE 0.01
    assert shifted["psnr"] == pytest.approx(20.0, abs=1e-4)
    assert shifted["rel_l1"] == pytest.approx(0.2, rel=1e-5)
    assert shifted["ssim"] < 1.0
    assert 0.0 <= shifted["accuracy"] <= 1.0


def test_suite_output_validates():
    with pytest.raises(ValueError):
        SuiteOutput(np.zeros(1), -1.0)
    with pytest.raises(ValueError):
        SuiteOutput(np.zeros(1), 1.0, skipped_fraction=1.5)


def test_pareto_front_example():
    assert pareto_front([(1.0, 40.0), (2.0, 35.0), (1.5, 30.0)]) == [0, 1]
    assert pareto_front([(1.0, 0.1), (2.0, 0.3), (1.5, 0.05)], higher_is_better=False) == [2, 1]


def test_pareto_plot_draws_infinite_values(tmp_path):
    rows = [
        {"method": "uncached", "speedup": 1.0, "psnr": math.inf},
        {"method": "static", "speedup": 2.0, "psnr": 35.0},
        {"method": "bad", "error": "x"},
    ]
    pareto_plot(rows, "psnr", True, tmp_path / "p.png", "t")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError):
        pareto_plot(rows[2:], "psnr", True, tmp_path / "q.png", "t")


# ----- registry -----


def test_registry_knows_the_digits_suites_and_refuses_unknown_names():
    assert {"digits-dit", "digits-dit-tiny"} <= set(available_suites())
    with pytest.raises(KeyError, match="digits-dit"):
        get_suite("no-such-suite")


def test_registry_guard_skips_a_missing_suite_module(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "BUILTIN_SUITE_MODULES", ("hasten_test_no_suite_here",))
    assert "digits-dit" in available_suites()


def test_tiny_suite_follows_the_protocol(classifier):
    suite = DigitsSuite.tiny(classifier=classifier)
    assert isinstance(suite, DiffusionSuite)
    with pytest.raises(KeyError):
        suite.run("no_such_method", None, 0)


# ----- the harness -----


def test_quick_harness_end_to_end_on_a_tiny_dit(tmp_path, classifier):
    suite = DigitsSuite.tiny(classifier=classifier)
    blocks_before = [dict(vars(b)) for b in suite.model.transformer_blocks]
    out = run_bench(_options(tmp_path, suite, quick=True), {suite.name: suite})
    records = read_bench_records(out / "records.jsonl")
    expected = [("uncached", "-")] + [(s.method, s.label) for s in suite.settings(quick=True)]
    assert [(r["method"], r["setting"]) for r in records] == expected
    assert {m for m, _ in expected} >= {
        "static",
        "delta_dit",
        "first_block",
        "taylorseer",
        "cg_taylor",
        "tstitch",
        "diffusers_fbc",
        "diffusers_taylorseer",
        "diffusers_pab",
    }
    assert all("error" not in r and r["deterministic"] for r in records), records
    uncached = records[0]
    assert uncached["psnr"] == math.inf and uncached["rel_l1"] == 0.0 and uncached["speedup"] == 1.0
    by_method = {r["method"]: r for r in records}
    assert by_method["static"]["skipped_fraction"] == pytest.approx(1 / 3)  # interval 3, warm-up 2, 6 steps
    assert by_method["tstitch"]["skipped_fraction"] == 0.5
    assert 0 < by_method["diffusers_pab"]["skipped_fraction"] < 0.5  # attention only, counted by forward hooks
    assert by_method["static"]["psnr"] < math.inf
    assert all(r["speedup"] > 0 for r in records)
    report = (out / "report.md").read_text()
    assert "| method | setting | s/run | speedup | skipped | psnr | ssim | rel_l1 | accuracy |" in report
    for name in ("pareto-digits-dit-tiny-psnr.png", "samples-digits-dit-tiny.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    # the suite's model is left exactly as it was: no hasten or diffusers hooks
    assert hd.handle_of(suite.model) is None and "forward" not in vars(suite.model)
    assert not hasattr(suite.model, "_diffusers_hook")
    assert [dict(vars(b)) for b in suite.model.transformer_blocks] == blocks_before


def test_resume_after_an_interruption_gives_the_same_records(tmp_path, classifier):
    whole = _tiny(ThreeSettings, classifier)
    run_bench(_options(tmp_path / "whole", whole), {whole.name: whole})
    expected = read_bench_records(tmp_path / "whole" / "records.jsonl")
    assert len(expected) == 4

    # calls: reference, 1 uncached, (uncached, static), then the 5th is tstitch's uncached
    broken = _tiny(Interrupted, classifier, stop_after=5)
    with pytest.raises(KeyboardInterrupt):
        run_bench(_options(tmp_path / "cut", broken), {broken.name: broken})
    partial = read_bench_records(tmp_path / "cut" / "records.jsonl")
    assert [r["method"] for r in partial] == ["uncached", "static"]
    assert (tmp_path / "cut" / "report.md").is_file()  # the report of what finished is written
    with open(tmp_path / "cut" / "records.jsonl", "a") as f:
        f.write('{"model": "digits-dit-tiny", "method": "tst')  # as if killed mid-write

    resumed = _tiny(ThreeSettings, classifier)
    with pytest.raises(ValueError, match="--resume"):
        run_bench(_options(tmp_path / "cut", resumed), {resumed.name: resumed})
    with pytest.raises(ValueError, match="repeats"):
        run_bench(
            BenchOptions(out=tmp_path / "cut", models=(resumed.name,), repeats=2, resume=True, progress=False),
            {resumed.name: resumed},
        )
    run_bench(_options(tmp_path / "cut", resumed, resume=True), {resumed.name: resumed})
    got = read_bench_records(tmp_path / "cut" / "records.jsonl")
    assert [{k: r.get(k) for k in DETERMINISTIC_FIELDS} for r in got] == [
        {k: r.get(k) for k in DETERMINISTIC_FIELDS} for r in expected
    ]


def test_a_failing_setting_is_recorded_and_the_run_goes_on(tmp_path, classifier):
    class Failing(ThreeSettings):
        def settings(self, quick):
            return [Setting("static", "bad config", "not a config")] + super().settings(quick)[:1]

    suite = _tiny(Failing, classifier)
    run_bench(_options(tmp_path, suite), {suite.name: suite})
    records = read_bench_records(tmp_path / "records.jsonl")
    assert "TypeError" in records[1]["error"] and "error" not in records[2]
    assert "error: TypeError" in (tmp_path / "report.md").read_text()


def test_cli_runs_a_registered_suite(tmp_path, classifier, request):
    from typer.testing import CliRunner

    from hasten.cli import app

    register_suite("test-tiny", lambda quick: _tiny(ThreeSettings, classifier, name="test-tiny"))
    request.addfinalizer(lambda: registry.SUITES.unregister("test-tiny"))
    result = CliRunner().invoke(
        app, ["bench-diffusion", "--models", "test-tiny", "--out", str(tmp_path), "--repeats", "1", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "report:" in result.output and "tstitch" in result.output
    assert len(read_bench_records(tmp_path / "records.jsonl")) == 4
    bad = CliRunner().invoke(app, ["bench-diffusion", "--models", "nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and not (tmp_path / "x").exists()


def test_register_suite_replaces_a_factory(request):
    register_suite("x", lambda quick: None)
    request.addfinalizer(lambda: registry.SUITES.unregister("x"))
    register_suite("x", lambda quick: "second")
    assert get_suite("x") == "second"
