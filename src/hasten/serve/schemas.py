"""OpenAI request schemas (the fields hasten serves) and OpenAI's error JSON.

Unknown fields are ignored, as OpenAI's API ignores them; a field of the wrong type or
out of range is a 400 with ``{"error": {"message", "type", "param", "code"}}``. Types are
strict (``"max_tokens": "5"`` is an error, as it is for OpenAI). ``hasten`` is this
server's extension object: ``{"method": "trie", "options": {...}}``; ``"method": null``
asks for plain decoding, an absent ``hasten`` (or ``method``) uses the server's default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["ChatCompletionRequest", "CompletionRequest", "HastenOptions", "OpenAIError", "error_body", "parse_request"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Model):
    type: Literal["text"]
    text: str


class Message(_Model):
    role: str
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Model):
    include_usage: bool = False


class Prediction(_Model):
    type: Literal["content"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class HastenOptions(_Model):
    """The ``hasten`` extension object."""

    method: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class _Sampling(_Model):
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    hasten: HastenOptions | None = None

    def stop_list(self) -> list[str]:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > 4:
            raise OpenAIError("stop takes at most 4 sequences", param="stop")
        return [s for s in stop if s]


class ChatCompletionRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: dict[str, Any] | None = None
    prediction: Prediction | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[int]
    max_tokens: int | None = Field(default=16, ge=1)

    def token_limit(self) -> int | None:
        return self.max_tokens


class OpenAIError(Exception):
    """An error answered as OpenAI's error JSON with ``status`` (400 by default)."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str | None = None,
    ):
        super().__init__(message)
        self.message, self.param, self.status, self.type, self.code = message, param, status, type, code

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict:
    """OpenAI's error JSON: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def parse_request(cls: type[_Model], raw: bytes) -> Any:
    """Validate a JSON body; raises :class:`OpenAIError` (400) naming the first bad field."""
    try:
        return cls.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        if first.get("type") == "json_invalid":
            raise OpenAIError(f"invalid JSON body: {first.get('msg')}") from None
        raise OpenAIError(f"{param}: {first.get('msg')}" if param else str(first.get("msg")), param=param) from None
