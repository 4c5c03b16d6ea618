"""``hasten bench-dllm``: every dLLM method against the reference sampler of the same model.

For each (task, gen length) the reference sampler (LLaDA, arXiv 2502.09992; one token per
step, ``steps_per_block = block_length``) and every method setting decode the same prompts,
back to back per prompt in an order that rotates prompt by prompt, so load on the machine hits
all alike; the reference's time on a prompt is every setting's baseline for it. One JSONL record per
(task, gen length, setting) holds: ``method``, ``setting``, ``gen_length``, ``speedup`` (reference
seconds / method seconds, summed over prompts), ``forwards_per_token`` (dLLM forwards per
generated token), ``accuracy`` and ``reference_accuracy`` and ``agreement`` (fraction of
generated tokens equal to the reference output).

Tasks: ``arithmetic`` - the held-out GSM8K-style set (:func:`hasten.dllm.data.eval_problems`),
accuracy = exact final answer after ``####``; ``text`` - 32-token prompts from held-out
standard-library files; there is no single right continuation, so accuracy there is the
token agreement with the reference output (reference_accuracy = 1 by definition).

Outputs in the run folder: ``records.jsonl``, ``report.md``, ``pareto.png`` (speedup vs
accuracy) and ``canvas.png`` (the canvas filling step by step, reference vs fast_dllm).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..benchcore import (
    RECORDS_FILE,
    RecordLog,
    check_resume,
    machine,
    markdown_table,
    number,
    progress_bar,
    read_records,
    rotated,
    utc_date,
    versions,
    write_meta,
)
from . import data
from .api import generate, load

__all__ = ["SETTINGS", "DLLMBenchOptions", "run_bench", "report_table"]

# name -> (method, options)
# "control ..." settings are lossless by construction (threshold 1 with no cache is the reference
# sampler): their agreement must be 1.0, which checks the harness itself.
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "control fast_dllm t1.0 none": ("fast_dllm", {"threshold": 1.0, "cache": "none"}),
    "fast_dllm t0.9 dual": ("fast_dllm", {"threshold": 0.9, "cache": "dual"}),
    "fast_dllm t0.9 prefix": ("fast_dllm", {"threshold": 0.9, "cache": "prefix"}),
    "dkv_cache decode": ("dkv_cache", {}),
    "dkv_cache greedy": ("dkv_cache", {"variant": "greedy"}),
    "local_leap dual": ("local_leap", {}),
    "prophet": ("prophet", {}),
    "ar_guided smollm2-135m": ("ar_guided", {"guide": "smollm2-135m"}),
}
PROTOCOL_FIELDS = ("model", "block_length", "n_prompts")  # records of other values would mix in one table
QUICK_SETTINGS = ("fast_dllm t0.9 dual", "dkv_cache decode", "local_leap dual")


@dataclass(frozen=True)
class DLLMBenchOptions:
    """What one run measures. ``quick``: 8 arithmetic prompts, gen length 64, three settings."""

    out: Path
    model: str = "mdlm-small"
    quick: bool = False
    resume: bool = False
    command: str = ""
    gen_lengths: tuple[int, ...] = (128, 256)
    tasks: tuple[str, ...] = ("arithmetic", "text")
    n_prompts: int = 50
    block_length: int = 32
    settings: tuple[str, ...] = tuple(SETTINGS)

    def __post_init__(self) -> None:
        unknown = [s for s in self.settings if s not in SETTINGS]
        if unknown:
            raise ValueError(f"unknown settings {unknown}; known: {list(SETTINGS)}")
        if self.n_prompts < 1 or any(g < 1 or g % self.block_length for g in self.gen_lengths):
            raise ValueError("n_prompts must be >= 1 and every gen length a multiple of block_length")
        bad = set(self.tasks) - {"arithmetic", "text"}
        if bad:
            raise ValueError(f"unknown tasks {sorted(bad)}")

    @classmethod
    def make(cls, out: Path, quick: bool = False, **kw: Any) -> DLLMBenchOptions:
        if quick:
            kw = {"gen_lengths": (64,), "tasks": ("arithmetic",), "n_prompts": 8, "settings": QUICK_SETTINGS, **kw}
        return cls(out=Path(out), quick=quick, **kw)


@dataclass
class _Acc:
    ref_s: float = 0.0
    m_s: float = 0.0
    forwards: int = 0
    tokens: int = 0
    correct: int = 0
    ref_correct: int = 0
    agree: int = 0
    n: int = 0
    outputs: list = field(default_factory=list)


def _prompts(task: str, n: int, tok, adapter=None) -> list[tuple[torch.Tensor, int | None]]:
    """``n`` (prompt ids (1, P), answer or None) pairs. Text prompts are 32-token windows of the
    held-out files' lines the model's vocabulary covers (``adapter.encode_ids`` accepts them)."""
    if task == "arithmetic":
        return [(torch.tensor([tok(data.prompt_text(p))["input_ids"]]), p.answer) for p in data.eval_problems(n)]
    out = []
    for path in (p for p in data.stdlib_files() if data.is_heldout_file(p)):
        # the held-out file's lines that the model's vocabulary covers, joined (the training
        # stream was built the same way from the training files)
        stream: list[int] = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
            ids = tok(line)["input_ids"]
            if adapter is not None:
                try:
                    adapter.encode_ids(torch.tensor([ids]))
                except ValueError:
                    continue
            stream += ids
        for start in range(0, max(0, len(stream) - 32), 997)[:2]:  # at most two per file: spread over files
            out.append((torch.tensor([stream[start : start + 32]]), None))
            if len(out) >= n:
                return out
    return out


def _decode(adapter, ids, gen_length, block_length, method, options, trace=False):
    t0 = time.perf_counter()
    out = generate(adapter, ids, gen_length, block_length, method, options, trace=trace)
    return out, time.perf_counter() - t0


def run_bench(options: DLLMBenchOptions, progress: Callable[[str], None] = print) -> list[dict]:
    """Run (or resume) the bench; returns every record of the run folder. See the module docstring."""
    options.out.mkdir(parents=True, exist_ok=True)
    path = options.out / RECORDS_FILE
    meta = {
        "model": options.model,
        "block_length": options.block_length,
        "n_prompts": options.n_prompts,
        "command": options.command,
        "machine": machine(),
        "date": utc_date(),
        "versions": versions(),
    }
    check_resume(options.out, meta, options.resume, PROTOCOL_FIELDS)  # before any model loads
    done = read_records(path)
    keys = {(r["task"], r["gen_length"], r["setting"]) for r in done}
    write_meta(options.out, meta)
    adapter, tok = load(options.model)
    groups = [
        (task, g, missing)
        for task in options.tasks
        for g in options.gen_lengths
        if (missing := [s for s in options.settings if (task, g, s) not in keys])
    ]
    prompts = {task: _prompts(task, options.n_prompts, tok, adapter) for task in options.tasks}
    total = sum(len(prompts[t]) for t, _, _ in groups)
    with RecordLog(path) as log, progress_bar(total, unit="prompt", desc="bench-dllm") as bar:
        for task, g, settings in groups:
            _measure(options, adapter, tok, prompts, task, g, settings, log, bar, done, progress)
    _write_report(options, done)
    _plot_pareto(options.out / "pareto.png", done)
    if not (options.out / "canvas.png").exists():
        ids = prompts[options.tasks[0]][0][0]
        _plot_canvas(options.out / "canvas.png", adapter, ids, options.gen_lengths[0], options.block_length)
    return done


def _measure(options, adapter, tok, prompts, task, g, settings, log, bar, done, progress) -> None:
    """Records for ``settings`` of one (task, gen length): per prompt the reference sampler and
    every setting run back to back, the order rotating prompt by prompt (so drift and load hit
    all alike); the reference's time on a prompt is each setting's baseline for that prompt.
    One record per setting is appended to ``log`` and ``done`` when the group ends."""
    contenders = ["reference", *settings]
    acc = {s: _Acc() for s in settings}
    for i, (ids, answer) in enumerate(prompts[task]):
        pl = ids.shape[1]
        runs = {}
        for name in rotated(contenders, i):
            method, opts = ("reference", {}) if name == "reference" else SETTINGS[name]
            runs[name] = _decode(adapter, ids, g, options.block_length, method, opts)
        ref, ref_s = runs["reference"]
        ref_gen = ref.sequences[0, pl:]
        ref_ok = answer is not None and data.parse_answer(tok.decode(ref_gen, skip_special_tokens=True)) == answer
        for setting in settings:
            out, m_s = runs[setting]
            gen, a = out.sequences[0, pl:], acc[setting]
            a.ref_s += ref_s
            a.m_s += m_s
            a.forwards += out.stats.forward_passes
            a.tokens += g
            a.agree += int((ref_gen == gen).sum())
            a.n += 1
            if answer is not None:
                a.correct += data.parse_answer(tok.decode(gen, skip_special_tokens=True)) == answer
                a.ref_correct += ref_ok
        bar.update(1)
    for setting in settings:
        method, opts = SETTINGS[setting]
        a = acc[setting]
        agreement = a.agree / a.tokens
        record = {
            "task": task,
            "model": options.model,
            "method": method,
            "setting": setting,
            "options": opts,
            "gen_length": g,
            "block_length": options.block_length,
            "prompts": a.n,
            "speedup": round(a.ref_s / a.m_s, 3),
            "reference_seconds": round(a.ref_s, 3),
            "method_seconds": round(a.m_s, 3),
            "forwards_per_token": round(a.forwards / a.tokens, 4),
            "accuracy": round(a.correct / a.n if task == "arithmetic" else agreement, 4),
            "reference_accuracy": round(a.ref_correct / a.n if task == "arithmetic" else 1.0, 4),
            "agreement": round(agreement, 4),
            "timing": "per prompt: reference and every setting back to back, order rotating; wall clock",
            "command": options.command,
        }
        log.append(record)
        done.append(record)
        progress(
            f"{task} G={g} {setting}: speedup {record['speedup']:.2f}x  acc {record['accuracy']:.3f} "
            f"(ref {record['reference_accuracy']:.3f})  agreement {agreement:.3f}"
        )


def report_table(records: list[dict]) -> list[str]:
    """Markdown table lines, one row per record."""
    header = ("task", "G", "setting", "speedup", "forwards/token", "accuracy", "reference acc.", "agreement")
    rows = [
        (
            r["task"],
            str(r["gen_length"]),
            r["setting"],
            number(r["speedup"], ".2f", "x"),
            number(r["forwards_per_token"], ".3f"),
            number(r["accuracy"], ".3f"),
            number(r["reference_accuracy"], ".3f"),
            number(r["agreement"], ".3f"),
        )
        for r in sorted(records, key=lambda r: (r["task"], r["gen_length"], r["setting"]))
    ]
    return markdown_table(header, rows)


def _write_report(options: DLLMBenchOptions, records: list[dict]) -> None:
    text = [
        f"# bench-dllm ({options.model})",
        "",
        f"command: `{options.command}`",
        "",
        "Speedup = reference sampler seconds / method seconds, same prompts, interleaved prompt by prompt "
        "(wall clock; measured on a shared, loaded machine unless stated). Arithmetic accuracy = exact final "
        "answer; text accuracy = token agreement with the reference output.",
        "",
        *report_table(records),
        "",
        "![pareto](pareto.png)  ![canvas](canvas.png)",
        "",
        f"options: `{json.dumps({k: str(v) for k, v in asdict(options).items()})}`",
    ]
    (options.out / "report.md").write_text("\n".join(text) + "\n")


def _plot_pareto(path: Path, records: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for r in records:
        ax.scatter(r["speedup"], r["accuracy"], label=f"{r['task']} G={r['gen_length']} {r['setting']}", s=25)
    for r in records:
        ax.scatter(1.0, r["reference_accuracy"], marker="x", color="k")
    ax.set_xlabel("speedup over the reference sampler (x)")
    ax.set_ylabel("accuracy (arithmetic: exact answer; text: agreement)")
    ax.set_title("dLLM methods: speedup vs accuracy (x = reference)")
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_canvas(path: Path, adapter, ids: torch.Tensor, gen_length: int, block_length: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    pl = ids.shape[1]
    for ax, (method, opts) in zip(axes, [("reference", {}), ("fast_dllm", {"threshold": 0.9, "cache": "dual"})]):
        out = generate(adapter, ids, gen_length, block_length, method, opts, trace=True)
        filled = torch.stack([(c[0, pl:] != adapter.mask_id).float() for c in out.trace])
        ax.imshow(filled.numpy(), aspect="auto", cmap="Greys", interpolation="nearest")
        ax.set_title(f"{method}: {len(out.trace)} steps")
        ax.set_xlabel("generated position")
        ax.set_ylabel("step")
    fig.suptitle("canvas filling (black = decoded)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
