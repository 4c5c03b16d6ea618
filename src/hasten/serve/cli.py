"""``hasten serve``: load a model and serve it (one process with uvicorn, or Ray Serve replicas).

The CLI is a thin adapter: it builds a :class:`~hasten.serve.ServeConfig` and calls
:func:`serve`. Uvicorn turns SIGTERM / Ctrl-C into a graceful shutdown: it stops accepting
connections, lets in-flight requests finish (the scheduler drains), then exits.
"""

from __future__ import annotations

from typing import Any

from .scheduler import ServeConfig

__all__ = ["run_server", "serve"]


def run_server(app, host: str = "127.0.0.1", port: int = 8000, drain_seconds: float = 300.0) -> None:
    """Serve ``app`` with uvicorn until SIGTERM / SIGINT, then drain in-flight requests
    (at most ``drain_seconds``) and return."""
    import uvicorn

    uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=drain_seconds)
    ).run()


def serve(
    model: str = "smollm2-135m",
    method: str | None = None,
    method_options: dict[str, Any] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    dtype: str = "float32",
    max_batch: int = 8,
    max_queue: int = 64,
    replicas: int = 0,
    auto_off: bool = True,
    threads: int | None = None,
) -> None:
    """Load ``model`` and serve it until SIGTERM.

    Args:
        model: a built-in name, local folder or hub id (:func:`hasten.load_model`).
        method: the default draft method (None = plain decoding).
        method_options: its config fields.
        replicas: 0 = one process here; N >= 1 = N Ray Serve replicas (needs the ``ray`` extra).
        auto_off: turn speculation off per request while it measures as losing.
        threads: torch intra-op threads (None = torch's default).

    Raises:
        ValueError: an unknown method, max_batch < 1, max_queue < 0, replicas < 0.
        ImportError: replicas without ray installed.
    """
    from ..batch import AutoOffConfig
    from ..drafters.base import build_drafter

    if method is not None:
        build_drafter(method, **(method_options or {}))  # fail before loading anything
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    config = ServeConfig(
        model_name=model,
        method=method,
        method_options=dict(method_options or {}),
        max_batch=max_batch,
        max_queue=max_queue,
        auto_off=AutoOffConfig() if auto_off else None,
        threads=threads,
    )
    if replicas:
        from .ray_app import run_replicas

        run_replicas(model, dtype, config, replicas, host=host, port=port)
        return
    import torch

    from ..models import load_model
    from .app import create_app

    if threads:
        torch.set_num_threads(threads)
    lm, tokenizer = load_model(model, dtype=dtype)
    run_server(create_app(lm, tokenizer, config), host=host, port=port)
