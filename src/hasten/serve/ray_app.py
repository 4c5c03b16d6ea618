"""Ray Serve replicas of the same app (``hasten serve --replicas N``; the ``ray`` extra).

Each replica is a ``@serve.deployment`` whose FastAPI ingress is :func:`create_app`'s
app: it loads the model once, runs its own scheduler (continuous batching inside the
replica), and Ray Serve's proxy spreads requests over replicas. On one machine,
``--replicas 2`` gives two processes (here: one per CPU core). On several machines, start
a Ray cluster first (``ray start --head`` on one, ``ray start --address HEAD:6379`` on the
others) and run ``hasten serve --replicas N`` on the head: replicas are placed across the
cluster's nodes, each node needs hasten and the model installed. Responses carry the
``x-hasten-replica`` header (the serving replica's id), so clients and tests can see
which replica answered.
"""

from __future__ import annotations

from .scheduler import ServeConfig

__all__ = ["build_deployment", "replica_app", "run_replicas"]


def build_deployment(model_name: str, dtype: str, config: ServeConfig, replicas: int, threads: int = 1):
    """A bound Ray Serve application: ``replicas`` copies of the hasten app.

    Raises:
        ImportError: ray[serve] is not installed (``pip install 'hasten[ray]'``).
    """
    try:
        from ray import serve
    except ImportError as exc:
        raise ImportError("--replicas needs Ray Serve: pip install 'hasten[ray]'") from exc

    @serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": threads})
    @serve.ingress(lambda: replica_app(model_name, dtype, config))  # built inside each replica process
    class HastenReplica:
        pass

    return HastenReplica.bind()


def replica_app(model_name: str, dtype: str, config: ServeConfig):
    """One replica's app: the model loaded in this process, tagged with a replica id."""
    import os
    import uuid

    from ..models import load_model
    from .app import create_app

    replica_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    lm, tokenizer = load_model(model_name, dtype=dtype)
    app = create_app(lm, tokenizer, config)

    @app.middleware("http")
    async def tag_replica(request, call_next):
        response = await call_next(request)
        response.headers["x-hasten-replica"] = replica_id
        return response

    return app


def run_replicas(
    model_name: str, dtype: str, config: ServeConfig, replicas: int, host: str = "127.0.0.1", port: int = 8000
) -> None:
    """Start Ray Serve with ``replicas`` replicas on ``host:port`` and block until Ctrl-C / SIGTERM."""
    import signal
    import threading

    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise ImportError("--replicas needs Ray Serve: pip install 'hasten[ray]'") from exc
    ray.init(ignore_reinit_error=True)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_deployment(model_name, dtype, config, replicas), route_prefix="/")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    serve.shutdown()
