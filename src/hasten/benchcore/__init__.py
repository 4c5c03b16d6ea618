"""The one bench core: what ``hasten bench``, ``hasten bench-diffusion`` and every new
family's bench (``bench-dllm``, ``bench-arimage``, the serving bench) share.

A family's bench owns only its *protocol* (what one measurement is, which fields make a
record unique, which figures the report shows). Everything else comes from here:

Records (:mod:`.records`)
    ``with RecordLog(out / RECORDS_FILE) as log: log.append(record)`` writes one JSON
    object per line, synced before the next measurement; an unterminated last line left by
    a kill is ignored by :func:`read_records` and cut when the log is reopened. Wrap
    records holding non-finite floats (PSNR ``inf``) in :func:`encode_non_finite` and read
    them back with :func:`decode_non_finite`. ``meta.json`` (the run's settings) is written
    atomically by :func:`write_meta` and read by :func:`read_meta`.
Resume (:func:`check_resume`)
    Call ``check_resume(out, meta, resume, PROTOCOL_FIELDS)`` before loading any model: it
    refuses an ``out`` folder that holds records unless ``resume``, and refuses to resume
    a run whose protocol fields differ. Then skip every measurement whose key (your
    ``record_key(record)``, a tuple) is in ``{record_key(r) for r in read_records(...)}``,
    and start the progress bar at the number already done.
Contender names (:class:`Contender`)
    Parse ``NAME@VARIANT`` once, at the command line's edge:
    ``Contender.parse("trie@bf16", normalize=canonical_dtype)`` -> ``.base``, ``.variant``,
    ``.name`` (canonical text, what records store), ``.baseline("ar")``.
Interleaved timing (:mod:`.timing`)
    Never time one contender after another in blocks. Many contenders per item:
    ``for c in rotated(contenders, item_index)``. One method against its baseline:
    ``base, method = interleaved_pairs(run_baseline, run_method, repeats)`` (order
    alternating per pair) and publish ``speedup_of_fastest(base_seconds, method_seconds)``.
Progress (:func:`progress_bar`)
    ``with progress_bar(total, initial=resumed, enabled=progress, unit="gen") as bar:``
    ``bar.update(1)``; a silent :class:`NullBar` when disabled or tqdm is missing.
Meta (:mod:`.meta`)
    ``{"machine": machine(), "date": utc_date(), "command": command_line(),
    "versions": versions("transformers")}`` plus your protocol fields.
Report (:mod:`.report`) and plots (:mod:`.plots`)
    Build rows of strings with :func:`number` / :func:`rate` cells and render them with
    :func:`markdown_table` (``report.md``) or :func:`text_table` (terminal). Figures:
    :func:`grouped_bars` (speedup per group, an oracle level), :func:`scatter_plot`,
    :func:`pareto_plot` / :func:`pareto_front` (speedup vs fidelity), :func:`image_rows`
    (sample grids). Render the report from ``meta.json`` + ``records.jsonl`` alone, so an
    interrupted or resumed run re-renders; call it in a ``finally`` after the loop.

A new bench, in one screen (see :mod:`hasten.diffusion.bench.runner` for a complete one)::

    PROTOCOL_FIELDS = ("models", "methods", "seeds")
    def record_key(r): return r["model"], r["method"], r["seed"]

    def run(out, meta, resume, items, progress=True):
        check_resume(out, meta, resume, PROTOCOL_FIELDS)
        write_meta(out, meta)
        done = {record_key(r) for r in read_records(out / RECORDS_FILE)} if resume else set()
        todo = [i for i in items if i.key not in done]
        try:
            with RecordLog(out / RECORDS_FILE) as log, progress_bar(len(items), len(items) - len(todo),
                                                                    enabled=progress) as bar:
                for item in todo:
                    log.append(encode_non_finite(item.measure()))  # errors recorded, run goes on
                    bar.update(1)
        finally:
            render_my_report(out)  # markdown_table(...) rows from read_records(...)
"""

from .meta import command_line, machine, utc_date, versions
from .names import Contender
from .plots import grouped_bars, image_rows, pareto_front, pareto_plot, scatter_plot
from .progress import NullBar, progress_bar
from .records import (
    META_FILE,
    RECORDS_FILE,
    RecordLog,
    check_resume,
    decode_non_finite,
    encode_non_finite,
    read_meta,
    read_records,
    write_meta,
)
from .report import MISSING, markdown_table, number, rate, text_table
from .timing import interleaved_pairs, rotated, speedup_of_fastest

__all__ = [
    "Contender",
    "RecordLog",
    "read_records",
    "write_meta",
    "read_meta",
    "check_resume",
    "encode_non_finite",
    "decode_non_finite",
    "RECORDS_FILE",
    "META_FILE",
    "rotated",
    "interleaved_pairs",
    "speedup_of_fastest",
    "progress_bar",
    "NullBar",
    "machine",
    "utc_date",
    "command_line",
    "versions",
    "markdown_table",
    "text_table",
    "number",
    "rate",
    "MISSING",
    "grouped_bars",
    "scatter_plot",
    "pareto_plot",
    "pareto_front",
    "image_rows",
]
