"""``report.md`` and PNG plots from a run folder's raw records (``hasten report DIR``).

Everything here is recomputed from ``meta.json`` + ``records.jsonl``, so a report can be
re-rendered at any time, from a finished, interrupted or resumed run. Column meanings are
in :mod:`hasten.bench.metrics` and docs/BENCH.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Sequence

from ..benchcore import grouped_bars, markdown_table, number, rate, scatter_plot
from ..benchcore import text_table as core_text_table
from .datasets import HUMANEVAL, SUBTASKS
from .metrics import (
    OVERALL,
    agreement,
    exact_match,
    generations,
    methods_in,
    mismatches,
    specbench_speedup,
    speedup,
    subtasks_in,
    summarize,
)
from .peers import baseline_of, parse_contender
from .records import RECORDS_FILE, read_meta, read_records

__all__ = ["render_report", "report_markdown", "text_table", "REPORT_FILE", "SPEEDUP_PLOT", "RATE_PLOT"]

REPORT_FILE = "report.md"
SPEEDUP_PLOT = "speedup_by_subtask.png"
RATE_PLOT = "tokens_per_second_vs_tau.png"
SUBTASK_ORDER = (*SUBTASKS, HUMANEVAL)
REFERENCE_PEER = "hf_greedy"
MAX_LISTED = 20


def _num(value: float | None, fmt: str = ".2f", suffix: str = "") -> str:
    """Example: (1.234, ".1f", "x") -> "1.2x"; (None,) -> "—"."""
    return number(value, fmt, suffix)


def _rate(pair: tuple[int, int]) -> str:
    """Example: (3, 4) -> "75% (3/4)"; (0, 0) -> "—"."""
    return rate(*pair)


_table = markdown_table


def _oracle(meta: dict[str, Any], method: str) -> float | None:
    """The run's oracle for contenders on the main model in the main dtype (the curve
    was measured there); None for other engines and for ``NAME@DTYPE`` variants."""
    info = meta.get("contenders", {}).get(method, {})
    oracle = meta.get("oracle") or {}
    variant = parse_contender(method).variant
    if variant is not None and variant != meta.get("dtype"):  # names in meta are canonical: "trie@bfloat16"
        return None
    return oracle.get("speedup") if info.get("uses_target", True) else None


def _label(meta: dict[str, Any], method: str) -> str:
    info = meta.get("contenders", {}).get(method, {})
    return f"{info.get('engine', '?')}, {info.get('precision', '?')}"


def _is_baseline(method: str) -> bool:
    return method == baseline_of(method)


def _overall_rows(meta, records, methods, code: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and one row per method of the overall table (``code``: method names in backticks)."""
    with_ref = REFERENCE_PEER in methods
    greedy = meta.get("sampling", {}).get("greedy", True)  # sampled runs: transformers' own RNG, no agreement
    header = (
        ["method", "engine, precision", "tok/s", "speedup vs ar"]
        + ([f"vs {REFERENCE_PEER}"] if with_ref else [])
        + ["oracle", "τ (mean accepted)", "fwd/token", "overhead ms/step", "exact vs plain (same dtype)"]
        + (["= hf_greedy"] if with_ref else [])
        + ["errors"]
    )
    ref = generations(records, REFERENCE_PEER) if with_ref else []
    rows = []
    for m in methods:
        s = summarize(records, m)
        row = [f"`{m}`" if code else m, _label(meta, m), _num(s.tokens_per_second, ".1f"), _num(s.speedup, ".2f", "x")]
        if with_ref:
            row.append(_num(speedup(generations(records, m), ref), ".2f", "x"))
        row += [
            _num(_oracle(meta, m), ".2f", "x"),
            _num(s.mean_accepted_tokens),
            _num(s.forward_passes_per_token, ".3f"),
            _num(s.overhead_ms_per_step, ".1f"),
            "baseline" if _is_baseline(m) else _rate(exact_match(records, m)),
        ]
        if with_ref:
            row.append(
                "reference"
                if m == REFERENCE_PEER
                else _rate(agreement(records, m, REFERENCE_PEER))
                if greedy
                else "n/a (sampled)"
            )
        rows.append(row + [str(s.errors)])
    return header, rows


def _main_table(meta, records, methods) -> list[str]:
    return _table(*_overall_rows(meta, records, methods))


def _subtask_table(records, methods, subtasks, field: str, fmt: str, suffix: str = "") -> list[str]:
    rows = []
    for m in methods:
        cells = [_num(getattr(summarize(records, m, s), field), fmt, suffix) for s in [*subtasks, OVERALL]]
        rows.append([f"`{m}`", *cells])
    return _table(["method", *subtasks, OVERALL], rows)


def _specbench_table(records, methods, subtasks) -> list[str]:
    rows = []
    for m in methods:
        cells = [
            _num(specbench_speedup(generations(records, m, s), generations(records, "ar", s)), ".2f", "x")
            for s in [*subtasks, OVERALL]
        ]
        rows.append([f"`{m}`", *cells])
    return _table(["method", *subtasks, OVERALL], rows)


def _audit_section(records, methods) -> list[str]:
    lines = []
    for m in methods:
        if _is_baseline(m):
            continue
        bad = mismatches(records, m)
        if not bad:
            continue
        lines.append(
            f"\n`{m}`: {len(bad)} question turn(s) differ from `{baseline_of(m)}`"
            + (f" (first {MAX_LISTED} listed)" if len(bad) > MAX_LISTED else "")
            + ":\n"
        )
        rows = [
            [
                a["subtask"],
                str(a["question_id"]),
                str(a["turn"] + 1),
                str(a["run"]),
                str(a["first_diff"]),
                _num(a["margin"], ".3g"),
                "yes" if a.get("prompt_differs") else "no",
            ]
            for a in bad[:MAX_LISTED]
        ]
        lines += _table(
            [
                "subtask",
                "question",
                "turn",
                "run",
                "first differing token",
                "baseline top-2 logit margin",
                "prompt differs",
            ],
            rows,
        )
    return lines or ["\nEvery audited output is token-identical to plain decoding in its dtype."]


def _errors_section(records) -> list[str]:
    errors = [r for r in records if r.get("kind") == "generation" and r.get("error") is not None]
    if not errors:
        return []
    rows = [
        [f"`{r['method']}`", r["subtask"], str(r["question_id"]), str(r["turn"] + 1), r["error"][:200]]
        for r in errors[:MAX_LISTED]
    ]
    return [
        "",
        "## Errors",
        "",
        f"{len(errors)} generation(s) raised (first {MAX_LISTED} listed):",
        "",
        *_table(["method", "subtask", "question", "turn", "error"], rows),
    ]


def _setup_section(meta: dict[str, Any]) -> list[str]:
    oracle = meta.get("oracle") or {}
    sampling = meta.get("sampling", {})
    lines = [
        "## Setup",
        "",
        f"- model: `{meta.get('model')}` ({meta.get('dtype')}); methods: {', '.join(meta.get('methods', []))}",
        f"- {meta.get('max_new_tokens')} new tokens per turn, {meta.get('runs')} run(s), "
        f"{meta.get('warmup')} warm-up generation(s) per method, "
        + ("greedy" if sampling.get("greedy", True) else f"sampling {sampling}"),
        f"- datasets: {', '.join(meta.get('datasets', []))}; {len(meta.get('questions', []))} questions",
        f"- machine: {meta.get('machine', '?')}; date: {meta.get('date', '?')}",
        f"- command: `{meta.get('command', '?')}`",
    ]
    if oracle:
        curve = oracle.get("curve", {})
        costs = ", ".join(f"{n}: {1000 * t:.0f}" for n, t in zip(curve.get("sizes", []), curve.get("seconds", [])))
        lines.append(
            f"- oracle speedup on this hardware: {oracle['speedup']:.2f}x at draft length {oracle['k']} "
            "(a drafter that is always right; from the measured cost of verifying k tokens; "
            f"curve from {oracle.get('source', 'cache')}, ms per forward by tokens: {costs})"
        )
    for dtype, info in (meta.get("compile") or {}).items():
        outcome = "compiled" if info.get("compiled") else f"eager fallback ({info.get('fallback_reason')})"
        lines.append(
            f"- torch.compile of the target forward for hasten methods ({dtype}): {outcome}; compile and "
            f"warm-up {info.get('seconds', 0):.1f} s, not counted in any generation's time"
        )
    lines += [f"- note: {note}" for note in meta.get("notes", [])]
    return lines


def report_markdown(meta: dict[str, Any], records: list[dict[str, Any]], plots: Sequence[str] = ()) -> str:
    """The report text. Sections: Setup, Results (overall table, speedup / tokens/s / tau
    per subtask), Exactness audit, Errors."""
    present = methods_in(records)
    methods = [m for m in meta.get("methods", []) if m in present] + [
        m for m in present if m not in meta.get("methods", [])
    ]
    subtasks = subtasks_in(records, SUBTASK_ORDER)
    lines = ["# hasten bench report", "", *_setup_section(meta), "", "## Results", ""]
    if not methods:
        return "\n".join(lines + ["No records yet.", ""])
    lines += _main_table(meta, records, methods)
    lines += [
        "",
        "### Speedup vs `ar` per subtask",
        "",
        *_subtask_table(records, methods, subtasks, "speedup", ".2f", "x"),
    ]
    lines += [
        "",
        "### Speedup by Spec-Bench's formula",
        "",
        "Mean of per-question tokens/s over the mean for `ar` (Spec-Bench's `speed.py`: short answers "
        "weigh as much as long ones); the tables above use total tokens over total seconds.",
        "",
        *_specbench_table(records, methods, subtasks),
    ]
    lines += [
        "",
        "### Tokens per second per subtask",
        "",
        *_subtask_table(records, methods, subtasks, "tokens_per_second", ".1f"),
    ]
    lines += [
        "",
        "### Mean accepted tokens (τ) per subtask",
        "",
        *_subtask_table(records, methods, subtasks, "mean_accepted_tokens", ".2f"),
    ]
    lines += [""] + [f"![{p}]({p})" for p in plots]
    greedy = meta.get("sampling", {}).get("greedy", True)
    lines += ["", "## Exactness audit", ""]
    audited = [
        m
        for m in methods
        if not _is_baseline(m) and (greedy or meta.get("contenders", {}).get(m, {}).get("sampled_exact", False))
    ]
    if not greedy:
        others = [m for m in methods if not _is_baseline(m) and m not in audited]
        lines += [
            "Sampling run, one seed per question shared by every method: plain decoding and the draft-free "
            "hasten methods draw each position's token from a uniform keyed by (seed, position), so their "
            "outputs must be token-identical (audited below)."
            + (
                f" {', '.join(f'`{m}`' for m in others)}: outputs differ by design (drafts sampled from a "
                "draft distribution and the speculative sampling rule, or another library's RNG); their "
                "losslessness is a distribution property (tests/test_sampling_distribution.py)."
                if others
                else ""
            ),
            "",
        ]
        if audited:
            lines += _table(
                ["method", "baseline", "exact match"],
                [[f"`{m}`", f"`{baseline_of(m)}`", _rate(exact_match(records, m))] for m in audited],
            )
            lines += _audit_section(records, audited)
    else:
        lines += [
            "Token ids of every method against plain decoding in the same dtype (`ar`, or `ar@DTYPE`) on "
            "the same question turn; at a mismatch, the first differing token (0 = first generated token) "
            "and the baseline's top-2 logit margin there.",
            "",
        ]
        lines += _table(
            ["method", "baseline", "exact match"],
            [[f"`{m}`", f"`{baseline_of(m)}`", _rate(exact_match(records, m))] for m in methods if not _is_baseline(m)],
        )
        lines += _audit_section(records, methods)
    lines += _errors_section(records)
    return "\n".join(lines) + "\n"


def _plot_speedups(path: Path, records, methods, subtasks, oracle: float | None) -> None:
    groups = [*subtasks, OVERALL]
    series = {m: [summarize(records, m, s).speedup or 0.0 for s in groups] for m in methods if m != "ar"}
    grouped_bars(
        path,
        groups,
        series,
        ylabel="speedup vs ar (x)",
        title="Speedup per subtask",
        level=oracle,
        level_label="oracle",
    )


def _plot_rates(path: Path, records, methods, subtasks) -> None:
    series = {}
    for m in methods:
        points = [summarize(records, m, s) for s in subtasks]
        points = [p for p in points if p.mean_accepted_tokens is not None and p.tokens_per_second is not None]
        series[m] = ([p.mean_accepted_tokens for p in points], [p.tokens_per_second for p in points])
    scatter_plot(
        path,
        series,
        xlabel="mean accepted tokens τ (tokens per verification step)",
        ylabel="tokens / s",
        title="Throughput vs mean accepted tokens (one point per subtask)",
    )


def render_report(out_dir: str | Path, plots: bool = True) -> Path:
    """Write ``report.md`` (and the PNG plots) in ``out_dir`` from its records.

    Returns:
        the path of ``report.md``.

    Raises:
        FileNotFoundError: ``out_dir`` has no ``meta.json``.
    """
    out_dir = Path(out_dir)
    meta = read_meta(out_dir)
    records = read_records(out_dir / RECORDS_FILE)
    names: list[str] = []
    methods = methods_in(records)
    if plots and methods and importlib.util.find_spec("matplotlib") is None:
        meta = meta | {
            "notes": [*meta.get("notes", []), "no plots: matplotlib is not installed (pip install 'hasten[bench]')"]
        }
    elif plots and methods:
        subtasks = subtasks_in(records, SUBTASK_ORDER)
        _plot_speedups(out_dir / SPEEDUP_PLOT, records, methods, subtasks, (meta.get("oracle") or {}).get("speedup"))
        _plot_rates(out_dir / RATE_PLOT, records, methods, subtasks)
        names = [SPEEDUP_PLOT, RATE_PLOT]
    path = out_dir / REPORT_FILE
    path.write_text(report_markdown(meta, records, names))
    return path


def text_table(records: list[dict[str, Any]], methods: Sequence[str], meta: dict[str, Any]) -> list[str]:
    """The overall figures as an aligned plain-text table (for the terminal)."""
    present = methods_in(records)
    methods = [m for m in methods if m in present] + [m for m in present if m not in methods]
    return core_text_table(*_overall_rows(meta, records, methods, code=False))
