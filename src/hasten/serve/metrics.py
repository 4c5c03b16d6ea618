"""Prometheus metrics of ``hasten serve``, named like vLLM's so dashboards and benchmark
clients that read vLLM work unchanged (prefix ``hasten:`` instead of ``vllm:``).

Speculative decoding counters (vLLM's ``SpecDecodingProm``): ``hasten:spec_decode_num_drafts``
(verification steps that verified a non-empty draft), ``hasten:spec_decode_num_draft_tokens``
(draft tokens verified), ``hasten:spec_decode_num_accepted_tokens`` (draft tokens accepted),
``hasten:spec_decode_num_accepted_tokens_per_pos`` (label ``position``: accepted draft
tokens at depth position+1). Exported with prometheus' ``_total`` suffix.
Request figures: ``hasten:num_requests_running`` / ``hasten:num_requests_waiting``,
``hasten:request_success`` (label ``finished_reason``), ``hasten:prompt_tokens``,
``hasten:generation_tokens``, histograms ``hasten:time_to_first_token_seconds``,
``hasten:inter_token_latency_seconds`` and ``hasten:e2e_request_latency_seconds``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..engine import GenerationStats

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
    80.0,
)


class ServeMetrics:
    """One registry per app (several apps in one process never share counters)."""

    def __init__(self, model_name: str):
        self.registry = CollectorRegistry()
        labels = {"model_name": model_name}
        self._labels = labels
        r = self.registry
        names = ["model_name"]
        self.num_drafts = Counter("hasten:spec_decode_num_drafts", "Verified non-empty drafts.", names, registry=r)
        self.num_draft_tokens = Counter(
            "hasten:spec_decode_num_draft_tokens", "Draft tokens verified.", names, registry=r
        )
        self.num_accepted_tokens = Counter(
            "hasten:spec_decode_num_accepted_tokens", "Draft tokens accepted.", names, registry=r
        )
        self.accepted_per_pos = Counter(
            "hasten:spec_decode_num_accepted_tokens_per_pos",
            "Accepted draft tokens per draft position (0 = first).",
            names + ["position"],
            registry=r,
        )
        self.running = Gauge("hasten:num_requests_running", "Requests in the batch.", names, registry=r)
        self.waiting = Gauge("hasten:num_requests_waiting", "Requests queued.", names, registry=r)
        self.success = Counter("hasten:request_success", "Finished requests.", names + ["finished_reason"], registry=r)
        self.prompt_tokens = Counter("hasten:prompt_tokens", "Prompt tokens processed.", names, registry=r)
        self.generation_tokens = Counter("hasten:generation_tokens", "Tokens generated.", names, registry=r)
        self.ttft = Histogram(
            "hasten:time_to_first_token_seconds",
            "Time to first token (s).",
            names,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "hasten:inter_token_latency_seconds",
            "Time between output tokens (s).",
            names,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "hasten:e2e_request_latency_seconds", "Request latency (s).", names, buckets=_LATENCY_BUCKETS, registry=r
        )

    def observe_finished(self, stats: GenerationStats, finish_reason: str, seconds: float) -> None:
        """Count one finished request's tokens and speculation figures."""
        m = self._labels["model_name"]
        for drafted, accepted in zip(stats.drafted, stats.accepted):
            if drafted:
                self.num_drafts.labels(m).inc()
                self.num_draft_tokens.labels(m).inc(drafted)
                self.num_accepted_tokens.labels(m).inc(accepted)
                for position in range(accepted):
                    self.accepted_per_pos.labels(m, str(position)).inc()
        self.prompt_tokens.labels(m).inc(stats.prompt_tokens)
        self.generation_tokens.labels(m).inc(stats.new_tokens)
        self.success.labels(m, finish_reason).inc()
        self.e2e.labels(m).observe(seconds)

    def observe_tokens(self, count: int, since_first: float | None, since_last: float | None) -> None:
        """A chunk of ``count`` tokens arrived: TTFT for the first chunk, else the
        inter-token latency (the gap spread evenly over the chunk's tokens)."""
        m = self._labels["model_name"]
        if since_first is not None:
            self.ttft.labels(m).observe(since_first)
        elif since_last is not None and count:
            for _ in range(count):
                self.itl.labels(m).observe(since_last / count)

    def set_load(self, running: int, waiting: int) -> None:
        m = self._labels["model_name"]
        self.running.labels(m).set(running)
        self.waiting.labels(m).set(waiting)

    def render(self) -> bytes:
        return generate_latest(self.registry)
