"""The OpenAI-compatible FastAPI app: ``/v1/chat/completions``, ``/v1/completions``,
``/v1/models``, ``/health``, ``/metrics``.

Requests become :class:`hasten.batch.BatchRequest` objects for the
:class:`~hasten.serve.scheduler.Scheduler`; responses and stream chunks follow OpenAI's
shapes (``chat.completion`` / ``chat.completion.chunk`` / ``text_completion``, a final
``data: [DONE]``, ``stream_options.include_usage``). Streaming goes through
sse-starlette. ``usage`` carries OpenAI's counts plus ``usage.hasten`` (method, drafted,
accepted, mean accepted tokens, forward passes, verification steps).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette.sse import EventSourceResponse

from ..batch import BatchRequest
from ..drafters.base import UnknownMethodError, build_drafter
from ..engine import GenerationStats
from ..sampling import SamplingParams
from .metrics import ServeMetrics
from .prediction import PredictionConfig, PredictionDrafter
from .scheduler import Job, Scheduler, ServeConfig
from .schemas import ChatCompletionRequest, CompletionRequest, OpenAIError, parse_request

__all__ = ["TextStream", "chat_prompt_ids", "create_app"]

_FINISH = {"eos": "stop", "stop_string": "stop", "max_new_tokens": "length", "context_length": "length"}


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Prompt token ids of ``messages`` in the model's own chat template (generation prompt added)."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class TextStream:
    """Incremental detokenization with OpenAI's stop semantics: the text ends before the
    first stop string (the stop string itself is not returned); while generating, text that
    could still become a stop string, or an incomplete UTF-8 character, is held back."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer, self.stop = tokenizer, stop
        self.tokens: list[int] = []
        self.sent = 0

    def text(self, final: bool) -> str:
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        cut = min((text.find(s) for s in self.stop if s in text), default=-1)
        if cut >= 0:
            return text[:cut]
        if final:
            return text
        text = text.removesuffix("\ufffd")
        hold = max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        return text[: len(text) - hold]

    def delta(self, tokens: list[int], final: bool = False) -> str:
        self.tokens.extend(tokens)
        text = self.text(final)
        out = text[self.sent :] if len(text) > self.sent else ""
        self.sent = max(self.sent, len(text))
        return out


def usage(stats: GenerationStats, prediction: PredictionDrafter | None) -> dict[str, Any]:
    """OpenAI's usage object with hasten's figures under ``hasten``."""
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.new_tokens,
        "total_tokens": stats.prompt_tokens + stats.new_tokens,
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0 if prediction is None else prediction.accepted_prediction_tokens,
            "rejected_prediction_tokens": 0 if prediction is None else prediction.rejected_prediction_tokens,
        },
        "hasten": {
            "method": stats.method,
            "drafted": sum(stats.drafted),
            "accepted": sum(stats.accepted),
            "mean_accepted_tokens": round(stats.mean_accepted_tokens, 4),
            "steps": stats.steps,
            "forward_passes": stats.forward_passes,
            "auto_off_switches": stats.drafter.get("auto_off_switches", 0),
        },
    }


class _Handler:
    """Turns validated requests into jobs and jobs into OpenAI responses."""

    def __init__(self, model, tokenizer, config: ServeConfig, scheduler: Scheduler, metrics: ServeMetrics):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.scheduler, self.metrics = scheduler, metrics
        self.context_length = getattr(model.config, "max_position_embeddings", None)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self._grammar = None

    def grammar(self):
        if self._grammar is None:
            from ..targets import model_eos_ids
            from .grammar import GRAMMAR_ENGINES

            self._grammar = GRAMMAR_ENGINES.get("xgrammar")(
                self.tokenizer, self.vocab_size, sorted(model_eos_ids(self.model, None))
            )
        return self._grammar

    def _method(self, req) -> tuple[Any, dict]:
        ext = req.hasten
        if ext is None or "method" not in ext.model_fields_set:
            method, options = self.config.method, {**self.config.method_options, **(ext.options if ext else {})}
        else:
            method, options = ext.method, dict(ext.options)
        if method is None:
            if ext is not None and ext.options:
                raise OpenAIError("hasten.options need a hasten.method", param="hasten.options")
            return None, {}
        try:
            return build_drafter(method, **options), {}
        except UnknownMethodError as exc:
            raise OpenAIError(str(exc), param="hasten.method") from None
        except (TypeError, ValueError) as exc:
            raise OpenAIError(f"hasten.options: {exc}", param="hasten.options") from None

    def build(self, req, prompt: list[int]) -> tuple[BatchRequest, PredictionDrafter | None]:
        if not prompt:
            raise OpenAIError("empty prompt", param="prompt")
        if self.context_length is not None and len(prompt) >= self.context_length:
            raise OpenAIError(
                f"the prompt has {len(prompt)} tokens; this model's context length is {self.context_length} tokens",
                param="messages",
                code="context_length_exceeded",
            )
        limit = req.token_limit()
        max_new = limit if limit is not None else (self.context_length or 4096) - len(prompt)
        greedy = req.temperature == 0
        params = SamplingParams(
            do_sample=not greedy, temperature=req.temperature if not greedy else 1.0, top_p=req.top_p
        )
        method, options = self._method(req)
        prediction = None
        if getattr(req, "prediction", None) is not None:
            predicted = self.tokenizer(req.prediction.text(), add_special_tokens=False)["input_ids"]
            prediction = PredictionDrafter(PredictionConfig(tuple(predicted)))
            method, options = prediction, {}
        constraint = None
        if getattr(req, "response_format", None) is not None:
            try:
                compiled = self.grammar().compile(req.response_format)
            except ValueError as exc:
                raise OpenAIError(str(exc), param="response_format") from None
            constraint = None if compiled is None else self.grammar().constraint(compiled)
        batch_req = BatchRequest(
            prompt,
            max_new,
            method=method,
            method_options=options,
            params=params,
            seed=req.seed,
            stop=req.stop_list(),
            tokenizer=self.tokenizer,
            draft_budget=self.config.draft_budget,
            auto_off=self.config.auto_off,
            constraint=constraint,
        )
        return batch_req, prediction

    async def run(self, request: Request, req, prompt: list[int], chat: bool) -> Response:
        batch_req, prediction = self.build(req, prompt)
        job = Job(batch_req, asyncio.get_running_loop(), self.metrics, prediction)
        self.scheduler.submit(job)
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        shape = _Shape(ident, self.config.model_name, chat)
        stream = TextStream(self.tokenizer, batch_req.stop)
        if req.stream:
            return await self._stream(request, job, shape, stream, req)
        return await self._complete(request, job, shape, stream)

    async def _next(self, request: Request, job: Job) -> tuple[str, Any]:
        while True:
            try:
                return await asyncio.wait_for(job.events.get(), timeout=0.25)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    job.cancelled.set()
                    raise OpenAIError("client disconnected", status=499) from None

    async def _complete(self, request: Request, job: Job, shape: _Shape, stream: TextStream) -> Response:
        try:
            while True:
                kind, payload = await self._next(request, job)
                if kind == "error":
                    raise payload
                if kind == "tokens":
                    stream.tokens.extend(payload)
                    continue
                text = stream.text(final=True)
                return JSONResponse(shape.full(text, _FINISH[payload.finish_reason], usage(payload, job.prediction)))
        finally:
            job.cancelled.set()  # a no-op once finished; frees the row if the handler was cancelled

    async def _stream(self, request: Request, job: Job, shape: _Shape, stream: TextStream, req) -> Response:
        first = await self._next(request, job)  # errors before any token are plain JSON errors
        if first[0] == "error":
            job.cancelled.set()
            raise first[1]
        include_usage = req.stream_options is not None and req.stream_options.include_usage

        async def events() -> AsyncIterator[dict]:
            try:
                yield {"data": json.dumps(shape.chunk(role=True, usage=include_usage))}
                event = first
                while True:
                    kind, payload = event
                    if kind == "error":
                        yield {"data": json.dumps(payload.body())}
                        break
                    if kind == "tokens":
                        text = stream.delta(payload)
                        if text:
                            yield {"data": json.dumps(shape.chunk(text=text, usage=include_usage))}
                    else:
                        text = stream.delta([], final=True)
                        if text:
                            yield {"data": json.dumps(shape.chunk(text=text, usage=include_usage))}
                        yield {
                            "data": json.dumps(shape.chunk(finish=_FINISH[payload.finish_reason], usage=include_usage))
                        }
                        if include_usage:
                            yield {"data": json.dumps(shape.usage_chunk(usage(payload, job.prediction)))}
                        break
                    event = await job.events.get()
                yield {"data": "[DONE]"}
            finally:
                job.cancelled.set()

        # on shutdown (SIGTERM) sse-starlette would cut open streams at once; let them finish instead
        return EventSourceResponse(
            events(), ping=600, shutdown_event=anyio.Event(), shutdown_grace_period=self.config.drain_seconds
        )


class _Shape:
    """OpenAI's response and chunk objects for one request."""

    def __init__(self, ident: str, model: str, chat: bool):
        self.ident, self.model, self.chat, self.created = ident, model, chat, int(time.time())

    def _base(self, obj: str) -> dict:
        return {
            "id": self.ident,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }

    def full(self, text: str, finish: str, usage_obj: dict) -> dict:
        if self.chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
            return {**self._base("chat.completion"), "choices": [choice], "usage": usage_obj}
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return {**self._base("text_completion"), "choices": [choice], "usage": usage_obj}

    def chunk(self, text: str = "", finish: str | None = None, role: bool = False, usage: bool = False) -> dict:
        if self.chat:
            delta: dict[str, Any] = {}
            if role:
                delta = {"role": "assistant", "content": ""}
            elif text:
                delta = {"content": text}
            body = {
                **self._base("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
        else:
            body = {
                **self._base("text_completion"),
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
            }
        if usage:
            body["usage"] = None
        return body

    def usage_chunk(self, usage_obj: dict) -> dict:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._base(obj), "choices": [], "usage": usage_obj}


def create_app(model, tokenizer, config: ServeConfig | None = None) -> FastAPI:
    """The OpenAI-compatible app serving ``model`` (a transformers causal LM) with ``tokenizer``.

    The scheduler thread starts with the app's lifespan and, on shutdown (SIGTERM under
    uvicorn), finishes every admitted request before the process exits.
    """
    config = config if config is not None else ServeConfig()
    metrics = ServeMetrics(config.model_name)
    scheduler = Scheduler(model, tokenizer, config, metrics)
    handler = _Handler(model, tokenizer, config, scheduler, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        scheduler.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, scheduler.stop)

    app = FastAPI(title="hasten serve", lifespan=lifespan)
    app.state.scheduler, app.state.metrics, app.state.config = scheduler, metrics, config

    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        headers = {"Retry-After": str(config.retry_after)} if exc.status == 429 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            OpenAIError(f"internal error: {exc}", status=500, type="server_error").body(), status_code=500
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        req = parse_request(ChatCompletionRequest, await request.body())
        prompt = chat_prompt_ids(tokenizer, [{"role": m.role, "content": m.text()} for m in req.messages])
        return await handler.run(request, req, prompt, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req = parse_request(CompletionRequest, await request.body())
        prompt = req.prompt if isinstance(req.prompt, list) else tokenizer(req.prompt)["input_ids"]
        return await handler.run(request, req, list(prompt), chat=False)

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [{"id": config.model_name, "object": "model", "created": 0, "owned_by": "hasten"}],
        }

    @app.get("/health")
    async def health() -> dict:
        running, waiting = scheduler.load
        return {"status": "ok", "running": running, "waiting": waiting}

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app
