"""The server's scheduler: one thread owns the model and runs continuous batching.

Requests wait in a bounded queue (``max_queue``; a full queue is refused at once, the
app answers 429). Between steps the thread admits waiting requests into the
:class:`hasten.batch.BatchedDecoder` (up to ``max_batch`` rows), drops cancelled ones
(client disconnects) and finished ones, then runs one batched verification step. A
request whose method cannot join a batch runs alone through :func:`hasten.generate` once
the batch is empty. A failing request gets an error event and the thread keeps serving;
``stop(drain=True)`` finishes everything admitted or queued before it returns.

Events go back to the request's asyncio queue: ``("tokens", [ids])``, ``("done", stats)``,
``("error", OpenAIError)``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..batch import AutoOffConfig, BatchedDecoder, BatchRequest, BatchRow, NotBatchableError
from ..engine import GenerationStats, generate
from .metrics import ServeMetrics
from .schemas import OpenAIError

__all__ = ["Job", "Scheduler", "ServeConfig"]

log = logging.getLogger("hasten.serve")


@dataclass(frozen=True)
class ServeConfig:
    """Server settings.

    Attributes:
        model_name: the name ``/v1/models`` lists and responses carry.
        method: default draft method (None = plain decoding) for requests without a
            ``hasten.method``.
        method_options: default options of that method.
        max_batch: most requests decoded together (rows); more batch = more throughput,
            more latency per token.
        max_queue: most requests waiting for a row; beyond it requests get 429.
        draft_budget: "auto", a :class:`hasten.BudgetConfig` or None (see :func:`hasten.generate`).
        auto_off: the auto-off rule (:class:`hasten.batch.AutoOffConfig`), None = never.
        retry_after: seconds a 429 asks the client to wait.
        threads: torch intra-op threads of the decoding thread (None = leave as is).
        drain_seconds: on shutdown, how long open streams may run to completion (seconds).

    Raises:
        ValueError: max_batch < 1 or max_queue < 0.
    """

    model_name: str = "smollm2-135m"
    method: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    max_batch: int = 8
    max_queue: int = 64
    draft_budget: Any = "auto"
    auto_off: AutoOffConfig | None = field(default_factory=AutoOffConfig)
    retry_after: int = 1
    threads: int | None = None
    drain_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 0:
            raise ValueError(f"max_batch must be >= 1 and max_queue >= 0, got {self.max_batch}, {self.max_queue}")


class _Cancelled(Exception):
    pass


class Job:
    """One request in flight: its :class:`BatchRequest`, event queue and timings."""

    def __init__(
        self,
        request: BatchRequest,
        loop: asyncio.AbstractEventLoop,
        metrics: ServeMetrics | None = None,
        prediction=None,
    ):
        self.request, self.loop, self.metrics, self.prediction = request, loop, metrics, prediction
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self.t_submit = time.perf_counter()
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.stats: GenerationStats | None = None
        request.streamer = self.on_tokens

    def emit(self, kind: str, payload: Any) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))

    def on_tokens(self, tokens: list[int]) -> None:
        now = time.perf_counter()
        if self.metrics is not None:
            first = now - self.t_submit if self.t_first is None else None
            self.metrics.observe_tokens(len(tokens), first, None if self.t_last is None else now - self.t_last)
        self.t_first = self.t_first or now
        self.t_last = now
        self.emit("tokens", list(tokens))


class Scheduler:
    """See the module docstring. ``start()`` launches the thread."""

    def __init__(self, model, tokenizer, config: ServeConfig, metrics: ServeMetrics):
        self.model, self.tokenizer, self.config, self.metrics = model, tokenizer, config, metrics
        try:
            self.decoder: BatchedDecoder | None = BatchedDecoder(model)
        except ValueError:
            self.decoder = None  # sliding-window model: every request runs alone
        self.pending: collections.deque[Job] = collections.deque()
        self.active: dict[BatchRow, Job] = {}
        self.cond = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="hasten-serve-scheduler", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Admit nothing new, finish every queued and running request, end the thread."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.thread.join(timeout)

    @property
    def load(self) -> tuple[int, int]:
        """(running, waiting) requests."""
        return len(self.active), len(self.pending)

    def submit(self, job: Job) -> None:
        """Queue ``job``.

        Raises:
            OpenAIError: 429 when the queue is full, 503 while shutting down.
        """
        with self.cond:
            if self.stopping:
                raise OpenAIError("the server is shutting down", status=503, type="server_error")
            if len(self.pending) + len(self.active) >= self.config.max_queue + self.config.max_batch:
                raise OpenAIError(
                    f"the request queue is full ({self.config.max_queue} waiting); retry later",
                    status=429,
                    type="rate_limit_exceeded",
                    code="rate_limit_exceeded",
                )
            self.pending.append(job)
            self.metrics.set_load(*self.load)
            self.cond.notify_all()

    # ----- the thread -----
    def _run(self) -> None:
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        while True:
            with self.cond:
                while not self.pending and not self.active and not self.stopping:
                    self.cond.wait()
                if self.stopping and not self.pending and not self.active:
                    return
            self._admit()
            self._drop_cancelled()
            if self.active:
                self._step()
            self.metrics.set_load(*self.load)

    def _next_pending(self) -> Job | None:
        with self.cond:
            return self.pending[0] if self.pending else None

    def _pop_pending(self) -> None:
        with self.cond:
            self.pending.popleft()

    def _admit(self) -> None:
        while len(self.active) < self.config.max_batch:
            job = self._next_pending()
            if job is None:
                return
            if job.cancelled.is_set():
                self._pop_pending()
                job.emit("error", OpenAIError("cancelled", status=499))
                continue
            try:
                if self.decoder is None:
                    raise NotBatchableError("model decodes one request at a time")
                row = self.decoder.make_row(job.request)
            except NotBatchableError:
                if self.active:
                    return  # run it alone once the batch has drained
                self._pop_pending()
                self._run_alone(job)
                continue
            except (ValueError, TypeError) as exc:
                self._pop_pending()
                job.emit("error", OpenAIError(str(exc)))
                continue
            self._pop_pending()
            try:
                self.decoder.add(row)
            except Exception as exc:
                log.exception("prefill failed")
                job.emit("error", OpenAIError(f"generation failed: {exc}", status=500, type="server_error"))
                continue
            self.active[row] = job

    def _drop_cancelled(self) -> None:
        for row, job in list(self.active.items()):
            if job.cancelled.is_set():
                self.decoder.remove(row)
                del self.active[row]
                job.emit("error", OpenAIError("cancelled", status=499))

    def _step(self) -> None:
        rows, start = len(self.decoder.rows), time.perf_counter()
        try:
            finished = self.decoder.step()
            log.debug("batched step: %d rows, %.1f ms", rows, 1000 * (time.perf_counter() - start))
        except Exception as exc:
            log.exception("batched step failed")
            for job in self.active.values():
                job.emit("error", OpenAIError(f"generation failed: {exc}", status=500, type="server_error"))
            self.active.clear()
            self.decoder = BatchedDecoder(self.model)
            return
        for row in finished:
            job = self.active.pop(row)
            self.decoder.remove(row)
            if row.error is not None:
                log.error("request failed: %r", row.error)
                job.emit("error", OpenAIError(f"generation failed: {row.error}", status=500, type="server_error"))
                continue
            self._finish(job, row.finish())

    def _finish(self, job: Job, stats: GenerationStats) -> None:
        job.stats = stats
        self.metrics.observe_finished(stats, stats.finish_reason, time.perf_counter() - job.t_submit)
        job.emit("done", stats)

    def _run_alone(self, job: Job) -> None:
        """A request that cannot be batched: :func:`hasten.generate`, streaming, cancellable."""
        req = job.request
        if req.constraint is not None:
            job.emit(
                "error",
                OpenAIError(
                    "response_format needs a model-free draft method (or none) on this server", param="response_format"
                ),
            )
            return

        def streamer(tokens: list[int]) -> None:
            if job.cancelled.is_set():
                raise _Cancelled
            job.on_tokens(tokens)

        p = req.params
        try:
            result = generate(
                self.model,
                req.prompt,
                method=req.method,
                method_options=req.method_options or None,
                max_new_tokens=req.max_new_tokens,
                do_sample=p.do_sample,
                temperature=p.temperature,
                top_p=p.top_p,
                eos_token_id=req.eos_token_id,
                stop=list(req.stop) or None,
                tokenizer=req.tokenizer,
                seed=req.seed,
                streamer=streamer,
                draft_budget=req.draft_budget,
            )
        except _Cancelled:
            job.emit("error", OpenAIError("cancelled", status=499))
            return
        except (ValueError, TypeError) as exc:
            job.emit("error", OpenAIError(str(exc)))
            return
        except Exception as exc:
            log.exception("generation failed")
            job.emit("error", OpenAIError(f"generation failed: {exc}", status=500, type="server_error"))
            return
        self._finish(job, result.stats)
