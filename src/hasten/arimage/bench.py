"""``hasten bench-arimage``: every AR image method on the models trained here, speed next
to fidelity.

Protocol, per model (``digits-ar``: discrete tokens; ``digits-mar``: continuous tokens):

1. Reference sets: the reference sampler on ``images`` labels (0-9 in turn) with seeds
   A, B and C (untimed). The *noise floor* of the Fréchet distance is the largest of
   FID(A, B), FID(A, C), FID(B, C); reference accuracy is the mean over the three sets.
2. Per setting: the method on seed A over the same labels gives the fidelity figures:
   classifier ``accuracy``, ``fid`` = mean of FID(method A, reference B) and FID(method A,
   reference C) (never against A: a lossless method with other random streams would look
   worse than it is), ``within_floor`` = fid <= floor, forwards per image, and for lossless
   discrete methods per-position token tests against reference B (``token_min_p``,
   ``token_rejections`` = positions with p < 0.01; about 1% of positions by chance).
3. Timing, interleaved: ``repeats`` pairs of (reference, method) calls on the first
   ``timing_images`` labels with seed A, the order alternating pair to pair; ``speedup`` =
   fastest reference call / fastest method call (wall clock, same run).

Records (one JSON line each, written as soon as measured, ``--resume`` skips finished
ones; the reference sets are saved under ``outputs/`` and reloaded): ``model``,
``method``, ``setting``, ``seed``, ``speedup``, ``seconds``, ``reference_seconds``,
``forwards_per_image``, ``reference_forwards_per_image``, ``forward_reduction``,
``head_calls_per_image`` (continuous), ``mean_accepted_tokens``, ``acceptance_rate``,
``accuracy``, ``reference_accuracy``, ``fid``, ``fid_floor``, ``within_floor``,
``target`` / ``target_met`` (the issue's goal for that method), or ``error``.
Outputs: ``records.jsonl``, ``meta.json``, ``report.md``, ``grid.png`` (reference then
each setting, the same labels and seeds), ``speedup_fidelity.png``.
"""

from __future__ import annotations

import datetime
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bench.records import read_meta, write_meta
from ..diffusion.bench.plots import image_rows
from ..diffusion.bench.records import RECORDS_FILE, RecordLog, encode, read_bench_records
from .fidelity import Judge, token_tests
from .generate import generate
from .models import load

__all__ = ["ArimageBenchOptions", "Setting", "settings_for", "run_bench", "render_report", "SEEDS"]

SEEDS = {"A": 0, "B": 1, "C": 2}
SAMPLING = {"digits-ar": dict(cfg_scale=3.0, top_k=8), "digits-mar": dict(cfg_scale=3.0)}
TARGETS = {  # the goals: (description, check(record))
    "sjd": (
        "forward_reduction >= 2, speedup >= 1.5, fid within floor",
        lambda r: r["forward_reduction"] >= 2 and r["speedup"] >= 1.5 and r["within_floor"],
    ),
    "gsd": ("speedup >= 3, accuracy within 2 points", lambda r: r["speedup"] >= 3 and r["accuracy_drop"] <= 0.02),
    "continuous_sd": ("speedup >= 1.5, fid within floor", lambda r: r["speedup"] >= 1.5 and r["within_floor"]),
    "disa": ("speedup >= 2, fid within floor", lambda r: r["speedup"] >= 2 and r["within_floor"]),
}


@dataclass(frozen=True)
class Setting:
    """One measured configuration: ``method`` with ``options`` (its config fields)."""

    method: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.options) or "-"


def settings_for(model: str, quick: bool) -> list[Setting]:
    """The settings measured for ``model`` (fewer with ``quick``)."""
    if model == "digits-ar":
        full = [
            Setting("sjd", (("window", 16), ("init", "spatial"))),
            Setting("sjd", (("window", 16), ("init", "random"))),
            Setting("sjd", (("window", 32), ("init", "spatial"))),
            Setting("gsd", (("window", 16), ("group_size", 4), ("neighbours", 2))),
            Setting("gsd", (("window", 32), ("group_size", 8), ("neighbours", 4))),
            Setting("lantern", (("window", 16), ("k", 2), ("delta", 0.1))),
            Setting("lantern", (("window", 16), ("k", 4), ("delta", 0.3))),
        ]
        return [full[0], full[3], full[5]] if quick else full
    full = [
        Setting("continuous_sd", (("gamma", 4), ("head_steps", 25))),
        Setting("continuous_sd", (("gamma", 2), ("head_steps", 25))),
        Setting("disa", (("start_steps", 25), ("end_steps", 5))),
        Setting("disa", (("start_steps", 25), ("end_steps", 2))),
        Setting("disa", (("start_steps", 25), ("end_steps", 2), ("schedule", "two_stage"), ("switch", 0.25))),
        Setting("disa", (("start_steps", 25), ("end_steps", 5), ("schedule", "two_stage"), ("switch", 0.25))),
    ]
    return [Setting("continuous_sd", (("gamma", 4), ("head_steps", 10))), full[5]] if quick else full


@dataclass(frozen=True)
class ArimageBenchOptions:
    """One run.

    Attributes:
        out: run folder. models: model names. quick: fewer images, settings and repeats.
        images: images per fidelity set (labels 0-9 in turn). continuous_images: the same
        for continuous-token models (capped by ``images``; their head makes each image
        ~10x dearer). timing_images: images per timed call (capped by the set size).
        repeats: timed (reference, method) pairs per setting. resume: skip finished
        records in ``out``. command: recorded in meta.json. methods: measure only these
        methods' settings (None = all); not part of the protocol, so a resumed run may
        add the others later.

    Raises:
        ValueError: no models, or a count < 1.
    """

    out: Path
    models: tuple[str, ...] = ("digits-ar", "digits-mar")
    quick: bool = False
    images: int = 200
    timing_images: int = 20
    repeats: int = 2
    continuous_images: int = 200
    resume: bool = False
    command: str = ""
    methods: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("need at least one model")
        if self.methods is not None:
            known = {s.method for m in self.models for s in settings_for(m, self.quick)}
            unknown = sorted(set(self.methods) - known)
            if unknown or not self.methods:
                raise ValueError(f"methods {unknown or '()'} are not measured on {self.models}; known: {sorted(known)}")
        if min(self.images, self.timing_images, self.repeats, self.continuous_images) < 1:
            raise ValueError("images, continuous_images, timing_images and repeats must be >= 1")

    @classmethod
    def make(
        cls,
        out: Path,
        quick: bool = False,
        resume: bool = False,
        command: str = "",
        models: tuple[str, ...] = ("digits-ar", "digits-mar"),
        methods: tuple[str, ...] | None = None,
    ) -> ArimageBenchOptions:
        if quick:
            # < 3 min on 2 cores: 60 discrete images (30 gave accuracy noise of +-6 points),
            # 6 continuous ones (a smoke run of the MAR methods, not a fidelity measurement)
            return cls(
                out,
                models,
                True,
                images=60,
                timing_images=5,
                repeats=1,
                continuous_images=6,
                resume=resume,
                command=command,
                methods=methods,
            )
        return cls(out, models, False, resume=resume, command=command, methods=methods)


def _labels(count: int) -> torch.Tensor:
    return torch.arange(count) % 10


def _head_options(setting: Setting) -> dict[str, Any]:
    """The reference sampler's options matching a continuous setting (its head steps)."""
    steps = dict(setting.options).get("head_steps", dict(setting.options).get("start_steps"))
    return {"head_steps": steps} if steps else {}


class _ModelRun:
    """Reference sets and judges for one model (loaded from ``outputs/`` when resuming)."""

    def __init__(self, name: str, options: ArimageBenchOptions, judge: Judge):
        self.name, self.options, self.judge = name, options, judge
        self.model = load(name)
        self.sampling = SAMPLING[name]
        self.labels = _labels(
            options.images if self.model.kind == "discrete" else min(options.images, options.continuous_images)
        )
        folder = options.out / "outputs" / name
        folder.mkdir(parents=True, exist_ok=True)
        self.reference: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.reference_forwards = 0.0
        for key, seed in SEEDS.items():
            path = folder / f"reference_{key}.pt"
            if path.is_file():
                saved = torch.load(path)
                self.reference[key] = (saved["images"], saved["tokens"])
                self.reference_forwards = saved["forwards_per_image"]
                continue
            images, stats, tokens = self.run("reference", {}, seed, self.labels)
            self.reference[key] = (images, tokens)
            self.reference_forwards = stats.forwards_per_image
            torch.save({"images": images, "tokens": tokens, "forwards_per_image": stats.forwards_per_image}, path)
        sets = [v[0] for v in self.reference.values()]
        self.floor = max(judge.fid(sets[i], sets[j]) for i, j in ((0, 1), (0, 2), (1, 2)))
        self.reference_accuracy = float(np.mean([judge.accuracy(s, self.labels) for s in sets]))

    def run(self, method: str, options: dict[str, Any], seed: int, labels: torch.Tensor):
        """(images, stats, tokens or None) of one generate call."""
        images, stats = generate(self.model, labels, method, seed=seed, **self.sampling, **options)
        return images, stats, stats.tokens if self.model.kind == "discrete" else None


def _timed(run: _ModelRun, setting: Setting, repeats: int, count: int) -> tuple[float, float]:
    """Fastest (reference, method) wall seconds over ``repeats`` interleaved pairs."""
    labels, ref_times, method_times = _labels(count), [], []
    reference_options = _head_options(setting) if run.model.kind == "continuous" else {}
    for pair in range(repeats):
        order = [("reference", reference_options, ref_times), (setting.method, dict(setting.options), method_times)]
        for method, options, times in order if pair % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            run.run(method, options, SEEDS["A"], labels)
            times.append(time.perf_counter() - started)
    return min(ref_times), min(method_times)


def measure(run: _ModelRun, setting: Setting) -> dict[str, Any]:
    """One record (see the module docstring)."""
    options = run.options
    images, stats, tokens = run.run(setting.method, dict(setting.options), SEEDS["A"], run.labels)
    ref_seconds, seconds = _timed(run, setting, options.repeats, min(options.timing_images, run.labels.numel()))
    fid = float(np.mean([run.judge.fid(images, run.reference[k][0]) for k in ("B", "C")]))
    accuracy = run.judge.accuracy(images, run.labels)
    record: dict[str, Any] = {
        "model": run.name,
        "method": setting.method,
        "setting": setting.label,
        "seed": SEEDS["A"],
        "images": int(run.labels.numel()),
        "speedup": ref_seconds / seconds,
        "seconds": seconds,
        "reference_seconds": ref_seconds,
        "forwards_per_image": stats.forwards_per_image,
        "reference_forwards_per_image": run.reference_forwards,
        "forward_reduction": run.reference_forwards / stats.forwards_per_image,
        "head_calls_per_image": sum(s.head_calls for s in stats.per_image) / stats.images,
        "mean_accepted_tokens": stats.mean_accepted_tokens,
        "acceptance_rate": stats.acceptance_rate,
        "accuracy": accuracy,
        "reference_accuracy": run.reference_accuracy,
        "accuracy_drop": run.reference_accuracy - accuracy,
        "fid": fid,
        "fid_floor": run.floor,
        "within_floor": fid <= run.floor,
        "repeats": options.repeats,
        "timing_images": options.timing_images,
    }
    if tokens is not None and setting.method == "sjd":
        pvalues = token_tests(tokens.numpy(), run.reference["B"][1].numpy())
        record["token_min_p"] = float(pvalues.min())
        record["token_rejections"] = int((pvalues < 0.01).sum())
    if setting.method in TARGETS:
        description, check = TARGETS[setting.method]
        record["target"], record["target_met"] = description, bool(check(record))
    np.save(options.out / "outputs" / run.name / f"{setting.method}_{setting.label}.npy", images[:10].numpy())
    return record


def run_bench(options: ArimageBenchOptions, progress: Any = print) -> list[dict[str, Any]]:
    """Measure every setting of every model; write records, report and plots.

    Raises:
        ValueError: ``resume`` with a run folder made with other protocol options.
    """
    out = options.out
    protocol = {
        "models": list(options.models),
        "quick": options.quick,
        "images": options.images,
        "continuous_images": options.continuous_images,
        "timing_images": options.timing_images,
        "repeats": options.repeats,
    }
    if options.resume and (out / "meta.json").is_file():
        previous = read_meta(out)
        if previous.get("protocol") != protocol:
            raise ValueError(f"--resume: {out} was made with {previous.get('protocol')}, not {protocol}")
    write_meta(
        out,
        {
            "protocol": protocol,
            "command": options.command,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )
    done = (
        {(r["model"], r["method"], r["setting"]) for r in read_bench_records(out / RECORDS_FILE)}
        if options.resume
        else set()
    )
    if not options.resume and (out / RECORDS_FILE).exists():
        (out / RECORDS_FILE).unlink()
    judge = Judge()
    with RecordLog(out / RECORDS_FILE) as log:
        for name in options.models:
            todo = [
                s
                for s in settings_for(name, options.quick)
                if (name, s.method, s.label) not in done and (options.methods is None or s.method in options.methods)
            ]
            if not todo:
                continue
            run = _ModelRun(name, options, judge)
            progress(f"{name}: reference sets ({run.labels.numel()} images x 3 seeds) ready")
            for setting in todo:
                progress(f"{name}: {setting.method} {setting.label}")
                try:
                    record = measure(run, setting)
                except (ValueError, RuntimeError, OSError) as err:
                    record = {
                        "model": name,
                        "method": setting.method,
                        "setting": setting.label,
                        "seed": SEEDS["A"],
                        "error": f"{type(err).__name__}: {err}",
                    }
                log.append(encode(record))
    records = read_bench_records(out / RECORDS_FILE)
    render_report(out, records, options)
    return records


def _fmt(value: Any, spec: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and math.isfinite(value):
        return format(value, spec)
    return "-" if value is None else str(value)


COLUMNS = [
    ("method", "method", "s"),
    ("setting", "setting", "s"),
    ("speedup", "speedup", ".2f"),
    ("fwd/img", "forwards_per_image", ".1f"),
    ("fwd reduction", "forward_reduction", ".2f"),
    ("head calls/img", "head_calls_per_image", ".0f"),
    ("tau", "mean_accepted_tokens", ".2f"),
    ("accept", "acceptance_rate", ".2f"),
    ("accuracy", "accuracy", ".3f"),
    ("ref accuracy", "reference_accuracy", ".3f"),
    ("FID", "fid", ".2f"),
    ("floor", "fid_floor", ".2f"),
    ("within floor", "within_floor", ""),
    ("token tests p<0.01", "token_rejections", "d"),
    ("target met", "target_met", ""),
]


def report_table(records: list[dict[str, Any]], model: str) -> list[str]:
    """Markdown table rows of ``model``'s records."""
    lines = ["| " + " | ".join(c[0] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in (r for r in records if r["model"] == model):
        if "error" in r:
            lines.append(f"| {r['method']} | {r['setting']} | error: {r['error']} |")
            continue
        lines.append("| " + " | ".join(_fmt(r.get(key), spec) for _, key, spec in COLUMNS) + " |")
    return lines


def render_report(out: Path, records: list[dict[str, Any]], options: ArimageBenchOptions) -> None:
    """report.md, grid.png and speedup_fidelity.png from the records."""
    lines = [
        "# hasten bench-arimage",
        "",
        f"Command: `{options.command or 'hasten bench-arimage'}`  ",
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.machine()}; "
        f"{options.images} images per fidelity set ({min(options.images, options.continuous_images)} for "
        f"continuous-token models), timing on {options.timing_images} images, "
        f"{options.repeats} interleaved pair(s). Timing on a shared machine is noisy: re-run on a quiet one.",
        "",
        "Targets (issue 19): " + "; ".join(f"`{m}`: {d}" for m, (d, _) in TARGETS.items()),
        "",
    ]
    for model in options.models:
        lines += [f"## {model}", "", f"Sampling: {SAMPLING[model]}", ""] + report_table(records, model) + [""]
    lines += ["![grid](grid.png)", "", "![speedup vs fidelity](speedup_fidelity.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    rows = []
    for model in options.models:
        ref = out / "outputs" / model / "reference_A.pt"
        if ref.is_file():
            rows.append((f"{model} reference", torch.load(ref)["images"][:10].numpy()))
        for r in (r for r in records if r["model"] == model and "error" not in r):
            path = out / "outputs" / model / f"{r['method']}_{r['setting']}.npy"
            if path.is_file():
                rows.append((f"{r['method']} {r['setting']}", np.load(path)))
    if rows:
        image_rows(rows, out / "grid.png")
    _scatter([r for r in records if "error" not in r], out / "speedup_fidelity.png")


def _scatter(records: list[dict[str, Any]], path: Path) -> None:
    """Speedup (x) against accuracy and FID / floor (y), one colour per method."""
    if not records:
        return
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.6, 4.0), dpi=90)
    left, right = figure.subplots(1, 2)
    methods = list(dict.fromkeys(r["method"] for r in records))
    for r in records:
        colour = f"C{methods.index(r['method']) % 10}"
        marker = "o" if r["model"] == "digits-ar" else "s"
        left.scatter(r["speedup"], r["accuracy"], color=colour, marker=marker)
        right.scatter(r["speedup"], r["fid"] / max(r["fid_floor"], 1e-9), color=colour, marker=marker)
    for m in methods:
        left.scatter([], [], color=f"C{methods.index(m) % 10}", label=m)
    right.axhline(1.0, color="0.5", ls="--", lw=0.8)
    left.set(xlabel="speedup vs reference sampler (wall clock, same run)", ylabel="classifier accuracy")
    right.set(xlabel="speedup vs reference sampler (wall clock, same run)", ylabel="FID / noise floor (<= 1: inside)")
    left.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    figure.suptitle("bench-arimage: o digits-ar, s digits-mar", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
