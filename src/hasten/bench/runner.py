"""The benchmark loop: the Spec-Bench protocol over contenders, interleaved per question.

Protocol (Spec-Bench, Xia et al., arXiv 2401.07851): batch size 1; greedy unless sampling
is asked for; wall time includes the prefill; warm-up generations before anything is
timed; ``runs`` passes over the questions. For every question turn, every method runs
back to back, the order rotating from one turn to the next, so machine drift hits all
methods alike. An mt_bench second turn carries the method's own first answer.

Exactness audit: after all methods finished a question turn, each method's token ids are
compared with its plain-decoding baseline's (``ar``, or ``ar@DTYPE`` for a contender run
in another dtype); at a greedy mismatch one extra target forward gives the baseline's
top-2 logit margin at the first differing position (a near-tie, or a logic bug when the
margin is large). Sampling runs audit the contenders that must then be token-identical
too (``Contender.sampled_exact``: plain decoding and draft-free hasten methods, which
draw each position's token from a uniform keyed by seed and position).

Records go to ``records.jsonl`` as they are made (see :mod:`hasten.bench.records`); a
question that raises is recorded with its error and the run goes on; ``resume`` skips
every record already on disk.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..benchcore import check_resume as core_check_resume
from ..benchcore import progress_bar, rotated
from ..targets import is_backend_model, resolve_target
from .datasets import Question, build_messages, encode_chat
from .metrics import first_difference, top2_margin
from .peers import Contender, Request, baseline_of, split_variant
from .records import RECORDS_FILE, RecordLog, read_records, record_key, write_meta

__all__ = ["BenchSettings", "BenchRunner", "RunResult", "rotated", "sha1_of", "PROTOCOL_FIELDS", "check_resume"]

# meta.json fields that must match for --resume to continue a run: records made under
# other settings (a method option, the draft model, a peer's draft length or GGUF file, an
# engine version or precision) would be averaged into the same row
PROTOCOL_FIELDS = (
    "model",
    "dtype",
    "methods",
    "max_new_tokens",
    "runs",
    "sampling",
    "questions",
    "max_turns",
    "method_options",
    "draft_model",
    "peer_options",
    "contenders",
)
# (the compile outcome is recorded in meta.json but not compared: compile times differ run to run;
# whether hasten contenders were compiled is part of their "precision" in "contenders")


def check_resume(out_dir: Path, meta: dict[str, Any], resume: bool) -> bool:
    """Whether ``out_dir`` holds a run that ``resume`` continues, checking the
    :data:`PROTOCOL_FIELDS` present in both ``meta`` and the run's ``meta.json`` (the CLI
    checks the fields it knows before loading any model, then all of them; a field that
    an older version did not record is not compared). See :func:`hasten.benchcore.check_resume`.

    Returns:
        True when continuing a run whose ``meta.json`` exists (do not rewrite it).

    Raises:
        ValueError: records exist and ``resume`` is False, or ``resume`` with a run whose
            protocol differs (the message lists the differing fields).
    """
    return core_check_resume(out_dir, meta, resume, PROTOCOL_FIELDS)


@dataclass(frozen=True)
class BenchSettings:
    """How each question is run.

    Attributes:
        max_new_tokens: tokens generated per turn at most.
        runs: passes over all questions (more = tighter numbers, longer run).
        warmup: untimed generations per method before the first timed one.
        warmup_tokens: tokens per warm-up generation.
        max_turns: turns asked per question (None = all; 1 = first turn only).
        request: sampling and seed; its ``max_new_tokens`` / ``eos_token_ids`` are set by
            the runner.

    Raises:
        ValueError: a count below its minimum.
    """

    max_new_tokens: int = 128
    runs: int = 1
    warmup: int = 1
    warmup_tokens: int = 32
    max_turns: int | None = None
    request: Request = field(default_factory=lambda: Request(max_new_tokens=1))

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.runs < 1 or self.warmup < 0 or self.warmup_tokens < 1:
            raise ValueError("need max_new_tokens >= 1, runs >= 1, warmup >= 0, warmup_tokens >= 1")
        if self.max_turns is not None and self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1 or None, got {self.max_turns}")


@dataclass
class RunResult:
    """What one :meth:`BenchRunner.run` call did: records written now, records found on
    disk from before (resume), errors among the new ones."""

    written: int = 0
    resumed: int = 0
    errors: int = 0


def sha1_of(ids: Sequence[int]) -> str:
    """Hex SHA-1 of a token id sequence (comma-separated decimal ids).

    Example: [1, 2] -> sha1(b"1,2").
    """
    return hashlib.sha1(",".join(str(int(t)) for t in ids).encode()).hexdigest()


def _eos_ids(model: torch.nn.Module) -> tuple[int, ...]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        return ()
    return (int(eos),) if isinstance(eos, int) else tuple(int(t) for t in eos)


class BenchRunner:
    """Runs contenders over questions and writes records to ``out_dir``.

    Args:
        model: the target torch model (for the audit's margin forward).
        variant_models: ``{"bfloat16": model}`` for ``NAME@DTYPE`` contenders (their
            audit's margin forward runs the ``ar@DTYPE`` baseline's model).
        tokenizer: encodes chat prompts and decodes first answers for second turns.
        contenders: in ``--methods`` order; one must be named ``ar``.
        settings: :class:`BenchSettings`.
        out_dir: where ``meta.json`` and ``records.jsonl`` live.
        clock: seconds (monotonic); the same clock times every contender.
        progress: show a progress bar with ETA on stderr.
        on_record: called with each record after it is written (tests use it to stop).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        contenders: Sequence[Contender],
        settings: BenchSettings,
        out_dir: str | Path,
        *,
        clock: Callable[[], float] = time.perf_counter,
        progress: bool = True,
        on_record: Callable[[dict], None] | None = None,
        variant_models: dict[str, torch.nn.Module] | None = None,
    ):
        names = [c.name for c in contenders]
        missing = sorted({baseline_of(n) for n in names} - set(names))
        if missing:
            raise ValueError(f"the contenders must include {', '.join(map(repr, missing))} (plain-decoding baselines)")
        self.model, self.tokenizer, self.contenders = model, tokenizer, list(contenders)
        self.variant_models = dict(variant_models or {})
        self.settings, self.out_dir, self.clock = settings, Path(out_dir), clock
        self.progress, self.on_record = progress, on_record
        eos = settings.request.eos_token_ids or _eos_ids(model)
        self.request = Request(settings.max_new_tokens, settings.request.sampling, settings.request.seed, eos)
        self.greedy = settings.request.sampling.greedy

    # -- setup -----------------------------------------------------------------------

    def prepare(self, meta: dict[str, Any], resume: bool) -> None:
        """Write ``meta.json`` for a new run, or check it against the one on disk
        (:func:`check_resume`).

        Raises:
            ValueError: records exist and ``resume`` is False, or ``resume`` with a run
                whose protocol differs (the message lists the differing fields).
        """
        if not check_resume(self.out_dir, meta, resume):
            write_meta(self.out_dir, meta)

    def warm_up(self, questions: Sequence[Question]) -> None:
        """Untimed generations of every contender on the first question's first turn."""
        if not questions or not self.settings.warmup:
            return
        prompt = encode_chat(self.tokenizer, build_messages(questions[0].turns, []))
        request = Request(
            min(self.settings.warmup_tokens, self.settings.max_new_tokens),
            self.request.sampling,
            self.request.seed,
            self.request.eos_token_ids,
        )
        for contender in self.contenders:
            for _ in range(self.settings.warmup):
                try:
                    contender.generate(prompt, request)
                except Exception as err:  # reported per question later; a warm-up failure is not fatal
                    print(f"warm-up of {contender.name} failed: {type(err).__name__}: {err}", file=sys.stderr)

    # -- the loop --------------------------------------------------------------------

    def _items(self, questions: Sequence[Question]) -> list[tuple[int, Question, int]]:
        limit = self.settings.max_turns
        return [
            (run, q, turn)
            for run in range(self.settings.runs)
            for q in questions
            for turn in range(len(q.turns) if limit is None else min(limit, len(q.turns)))
        ]

    def run(self, questions: Sequence[Question], resume: bool = False) -> RunResult:
        """Run (or finish) the benchmark; records are on disk as soon as they are made.

        Raises:
            KeyboardInterrupt: passed on after closing the log (everything finished is
                kept; continue with ``resume=True``).
        """
        path = self.out_dir / RECORDS_FILE
        done = {record_key(r): r for r in read_records(path)} if resume else {}
        items = self._items(questions)
        result = RunResult(resumed=sum(1 for k in done if k[0] == "generation"))
        with (
            progress_bar(len(items) * len(self.contenders), result.resumed, enabled=self.progress, unit="gen") as bar,
            RecordLog(path) as log,
        ):
            for index, (run, question, turn) in enumerate(items):
                self._run_item(log, done, result, bar, index, run, question, turn)
        return result

    def _base_fields(self, run: int, question: Question, turn: int, method: str) -> dict[str, Any]:
        return {
            "run": run,
            "subtask": question.subtask,
            "question_id": question.question_id,
            "turn": turn,
            "method": method,
        }

    def _prompt(self, done: dict, run: int, question: Question, turn: int, method: str) -> list[int] | str:
        """Prompt ids for this turn, or an error string when an earlier turn failed."""
        answers = []
        for earlier in range(turn):
            rec = done.get(("generation", run, question.subtask, question.question_id, earlier, method))
            if rec is None or rec.get("error") is not None:
                return f"turn {earlier + 1} of this question failed or is missing; no answer to carry"
            answers.append(self.tokenizer.decode(rec["output_ids"], skip_special_tokens=True).strip())
        return encode_chat(self.tokenizer, build_messages(question.turns, answers))

    def _emit(self, log: RecordLog, done: dict, record: dict[str, Any]) -> None:
        log.append(record)
        done[record_key(record)] = record
        if self.on_record is not None:
            self.on_record(record)

    def _run_item(
        self, log: RecordLog, done: dict, result: RunResult, bar, index: int, run: int, question: Question, turn: int
    ) -> None:
        """Every contender on one question turn (order rotated by ``index``), then the audit."""
        prompts: dict[str, list[int] | str] = {}
        for contender in rotated(self.contenders, index):
            name = contender.name
            key = ("generation", run, question.subtask, question.question_id, turn, name)
            prompts[name] = self._prompt(done, run, question, turn, name)
            if key in done:
                continue
            bar.set_postfix_str(f"{question.subtask} {question.question_id} t{turn + 1} {name}", refresh=False)
            record = self._generate(contender, prompts[name]) | self._base_fields(run, question, turn, name)
            record["category"] = question.category
            self._emit(log, done, record)
            result.written += 1
            result.errors += record["error"] is not None
            bar.update(1)
        self._audit(log, done, run, question, turn, prompts)

    def _generate(self, contender: Contender, prompt: list[int] | str) -> dict[str, Any]:
        """A generation record (without its key fields): timings and ids, or the error."""
        record: dict[str, Any] = {"kind": "generation", "error": None}
        if isinstance(prompt, str):
            return record | {"error": prompt}
        record.update(prompt_tokens=len(prompt), prompt_sha1=sha1_of(prompt))
        start = self.clock()
        try:
            outcome = contender.generate(prompt, self.request)
        except Exception as err:  # one failing question must not end the benchmark
            return record | {"error": f"{type(err).__name__}: {err}"}
        seconds = self.clock() - start
        steps = outcome.steps
        if steps is None and outcome.forward_passes is not None:
            steps = max(outcome.forward_passes - 1, 0)
        record.update(
            new_tokens=len(outcome.new_ids),
            seconds=seconds,
            output_ids=outcome.new_ids,
            output_sha1=sha1_of(outcome.new_ids),
            forward_passes=outcome.forward_passes,
            forward_seconds=outcome.forward_seconds,
            steps=steps,
            prefill_tokens=outcome.prefill_tokens,
            prefill_seconds=outcome.prefill_seconds,
            decode_seconds=outcome.decode_seconds,
            accepted=outcome.accepted,
            drafted=outcome.drafted,
            finish_reason=outcome.finish_reason,
            drafter=outcome.drafter,
        )
        return record

    def _audit(self, log: RecordLog, done: dict, run: int, question: Question, turn: int, prompts: dict) -> None:
        """Audit records for every contender that finished this turn and has none yet,
        each against its own baseline (``ar``, or ``ar@DTYPE`` for ``NAME@DTYPE``)."""
        for contender in self.contenders:
            if not (self.greedy or contender.sampled_exact):
                continue  # equal in distribution only: nothing to compare token by token
            name, baseline = contender.name, baseline_of(contender.name)
            base = done.get(("generation", run, question.subtask, question.question_id, turn, baseline))
            rec = done.get(("generation", run, question.subtask, question.question_id, turn, name))
            if name == baseline or base is None or base["error"] is not None or rec is None or rec["error"] is not None:
                continue
            if ("audit", run, question.subtask, question.question_id, turn, name) in done:
                continue
            position = first_difference(base["output_ids"], rec["output_ids"])
            margin, margin_error = None, None
            if self.greedy and position is not None and position < len(base["output_ids"]):
                try:
                    margin = self._margin(baseline, prompts[baseline], base["output_ids"][:position])
                except Exception as err:  # explaining a mismatch must not end the benchmark
                    margin_error = f"{type(err).__name__}: {err}"
                if margin is not None and not math.isfinite(margin):  # e.g. an overflowed half-precision logit
                    margin, margin_error = None, f"non-finite margin {margin}"
            audit = {
                "kind": "audit",
                "baseline": baseline,
                "exact": position is None,
                "first_diff": position,
                "margin": margin,
                "prompt_differs": rec["prompt_sha1"] != base["prompt_sha1"],
            }
            if margin_error is not None:
                audit["margin_error"] = margin_error
            self._emit(log, done, audit | self._base_fields(run, question, turn, name))

    def _margin(self, baseline: str, prompt: list[int], prefix: list[int]) -> float:
        """The baseline's top-2 margin for the token after prompt + prefix, on the scores
        greedy decoding chose from: logits (one forward; on llama.cpp a replay of plain
        decoding), after the repetition penalty when the run sets one."""
        from ..sampling import process_logits

        dtype = split_variant(baseline)[1]
        model = self.model if dtype is None else self.variant_models.get(dtype, self.model)
        history = list(prompt) + list(prefix)
        if is_backend_model(model):  # a backend model (llama.cpp)
            # replayed as plain decoding ran it (prompt in one batch, then one token per
            # forward): llama.cpp rounds a row differently with other rows in its batch
            target = resolve_target(model)
            cache = target.new_cache()
            logits = target.forward(cache, list(prompt), last_only=True)[0]
            for token in prefix:
                logits = target.forward(cache, [token], last_only=True)[0]
        else:
            device = next(model.parameters()).device
            ids = torch.tensor([history], dtype=torch.long, device=device)
            with torch.inference_mode():
                logits = model(input_ids=ids, use_cache=False).logits[0, -1]
        params = self.request.sampling
        if params.uses_history:
            seen = torch.zeros(1, logits.shape[-1], dtype=torch.bool, device=logits.device)
            seen[0, torch.tensor(history, device=logits.device)] = True
            logits = process_logits(logits.unsqueeze(0), params, seen)[0]
        return top2_margin(logits)
