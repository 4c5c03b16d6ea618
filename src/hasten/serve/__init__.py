"""``hasten serve``: an OpenAI-compatible server with lossless speculative decoding.

:func:`create_app` builds the FastAPI app for a model and tokenizer; :class:`ServeConfig`
holds the server settings; :func:`serve` runs it with uvicorn; :mod:`hasten.serve.ray_app`
deploys it as Ray Serve replicas. See docs/SERVE.md.
"""

from .app import create_app
from .scheduler import ServeConfig

__all__ = ["ServeConfig", "create_app"]
