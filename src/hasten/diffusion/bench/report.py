"""``report.md``, Pareto plots and sample grids of a ``hasten bench-diffusion`` run folder.

The markdown and the Pareto plots are recomputed from ``meta.json`` + ``records.jsonl``
alone, so they can be re-rendered from a finished, interrupted or resumed run. Sample grids
need the suite (its ``render``) and the ``outputs/*.npy`` the runner saved for the first seed.

Columns: ``s/run`` the fastest timed sampling call of the setting (seconds); ``speedup``
the fastest interleaved uncached call over it; ``skipped`` the fraction of block
evaluations not computed; then the suite's metrics (PSNR in dB, ``inf`` = identical to
uncached). With several seeds each number is the mean over seeds.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...benchcore import markdown_table, number, pareto_plot, read_meta
from .records import RECORDS_FILE, output_path, read_bench_records
from .suite import UNCACHED, DiffusionSuite, SuiteOutput

__all__ = ["REPORT_FILE", "render_report", "report_markdown", "summarize", "best_setting"]

REPORT_FILE = "report.md"
FORMATS = {"psnr": ".1f", "ssim": ".4f", "rel_l1": ".4f", "accuracy": ".1%", "success_rate": ".1%", "action_mse": ".3g"}
PSNR_TARGET = 30.0  # dB: the fidelity bar the report's "best" line uses


def _fmt(value: Any, spec: str) -> str:
    """Example: (inf, ".1f") -> "inf"; (None, ...) -> "—"; (0.25, ".1%") -> "25.0%"."""
    return number(value, spec)


def _mean(values: Sequence[float]) -> float:
    """Mean; ``inf`` if every value is ``inf``, else the mean of the finite ones."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else (values[0] if values else math.nan)


def summarize(records: Sequence[dict[str, Any]], model: str, metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (method, setting) of ``model`` in first-seen order, means over seeds; failed
    settings become rows with ``error``."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r.get("model") == model:
            groups.setdefault((r["method"], r["setting"]), []).append(r)
    rows = []
    for (method, setting), recs in groups.items():
        good = [r for r in recs if "error" not in r]
        row: dict[str, Any] = {"model": model, "method": method, "setting": setting, "seeds": len(good)}
        if not good:
            row["error"] = recs[0]["error"]
        else:
            for key in ("seconds", "speedup", "skipped_fraction", *metrics):
                values = [float(r[key]) for r in good if isinstance(r.get(key), (int, float))]
                if values:
                    row[key] = _mean(values)
            row["deterministic"] = all(r.get("deterministic", True) for r in good)
        rows.append(row)
    rows.sort(key=lambda row: row["method"] != UNCACHED)  # stable: uncached first, then as measured
    return rows


def best_setting(
    rows: Sequence[dict[str, Any]], metric: str = "psnr", minimum: float = PSNR_TARGET
) -> dict[str, Any] | None:
    """The fastest non-uncached row whose ``metric`` is at least ``minimum``, or None."""
    eligible = [r for r in rows if r["method"] != UNCACHED and "speedup" in r and r.get(metric, -math.inf) >= minimum]
    return max(eligible, key=lambda r: r["speedup"], default=None)


def _model_section(model: str, info: dict[str, Any], records: Sequence[dict[str, Any]], out: Path) -> list[str]:
    metrics = info.get("metric_names", [])
    rows = summarize(records, model, metrics)
    lines = [f"## {model}", "", info.get("describe", ""), ""]
    header = ["method", "setting", "s/run", "speedup", "skipped", *metrics]
    lines += markdown_table(header, [], "ll" + "r" * (len(header) - 2))
    for row in rows:
        if "error" in row:
            lines.append(
                f"| {row['method']} | {row['setting']} | error: {row['error'][:80]} |" + " |" * (len(header) - 3)
            )
            continue
        cells = [
            row["method"],
            row["setting"] + ("" if row.get("deterministic", True) else " (nondeterministic!)"),
            _fmt(row.get("seconds"), ".2f"),
            _fmt(row.get("speedup"), ".2f") + "x",
            _fmt(row.get("skipped_fraction"), ".0%"),
        ]
        cells += [_fmt(row.get(m), FORMATS.get(m, ".4g")) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    if "psnr" in metrics:
        best = best_setting(rows)
        lines += [
            "",
            f"Fastest setting with PSNR >= {PSNR_TARGET:.0f} dB: "
            + (
                f"**{best['method']} {best['setting']}, {best['speedup']:.2f}x, {_fmt(best['psnr'], '.1f')} dB**"
                if best
                else "none"
            ),
        ]
    for metric in info.get("pareto_metrics", []):
        name = f"pareto-{model}-{metric}.png"
        if (out / name).is_file():
            lines += ["", f"![speedup vs {metric}]({name})"]
    if (out / f"samples-{model}.png").is_file():
        lines += ["", f"![samples, uncached first]({f'samples-{model}.png'})"]
    return lines + [""]


def report_markdown(meta: dict[str, Any], records: Sequence[dict[str, Any]], out: Path) -> str:
    """The report text (see the module docstring for the columns)."""
    lines = [
        "# hasten bench-diffusion",
        "",
        f"- command: `{meta.get('command', '')}`",
        f"- date: {meta.get('date', '?')}",
        f"- machine: {meta.get('machine', '?')}",
        f"- versions: {meta.get('versions', {})}",
        f"- seeds: {meta.get('seeds')}, timed pairs per setting: {meta.get('repeats')}"
        + (" (quick)" if meta.get("quick") else ""),
        "- protocol: each setting is timed in (uncached, method) pairs, order alternating; speedup = fastest "
        "uncached / fastest method call of those pairs; fidelity vs the uncached output from the same noise.",
        "",
    ]
    for model in meta.get("models", []):
        lines += _model_section(model, meta.get("suites", {}).get(model, {}), records, out)
    return "\n".join(lines)


def _pareto_plots(meta: dict[str, Any], records: Sequence[dict[str, Any]], out: Path) -> None:
    for model in meta.get("models", []):
        info = meta.get("suites", {}).get(model, {})
        rows = summarize(records, model, info.get("metric_names", []))
        for metric in info.get("pareto_metrics", []):
            if any(metric in r and "speedup" in r for r in rows):
                pareto_plot(
                    rows,
                    metric,
                    info.get("higher_is_better", {}).get(metric, True),
                    out / f"pareto-{model}-{metric}.png",
                    f"{model}: speedup vs {metric}",
                )


def _sample_grids(
    meta: dict[str, Any], records: Sequence[dict[str, Any]], out: Path, suites: Mapping[str, DiffusionSuite]
) -> None:
    for model in meta.get("models", []):
        suite = suites.get(model)
        if suite is None:
            continue
        rows = summarize(records, model, [])
        pairs = []
        for row in rows:
            path = output_path(out, model, row["method"], row["setting"])
            if path.is_file():
                title = row["method"] if row["method"] == UNCACHED else f"{row['method']} {row['setting']}"
                pairs.append((title, SuiteOutput(np.load(path), 0.0)))
        if pairs:
            suite.render(pairs, out / f"samples-{model}.png")


def render_report(out_dir: str | Path, suites: Mapping[str, DiffusionSuite] | None = None, plots: bool = True) -> Path:
    """Write ``report.md`` (and the Pareto plots, and sample grids for the given suites).

    Returns:
        the path of report.md.

    Raises:
        FileNotFoundError: ``out_dir`` holds no bench-diffusion run.
    """
    out = Path(out_dir)
    meta = read_meta(out)
    records = read_bench_records(out / RECORDS_FILE)
    if plots and importlib.util.find_spec("matplotlib") is not None:
        _pareto_plots(meta, records, out)
        _sample_grids(meta, records, out, suites or {})
    path = out / REPORT_FILE
    path.write_text(report_markdown(meta, records, out), encoding="utf-8")
    return path
