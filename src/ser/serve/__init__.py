"""``ser serve``: the HTTP service and its web page (needs the ``serve`` extra: FastAPI, uvicorn).

* :mod:`ser.serve.app` — :func:`create_app`, the guard (host, token, body size), JSON errors;
* :mod:`ser.serve.api` — the HTTP routes; :mod:`ser.serve.stream` — the live WebSocket;
* :mod:`ser.serve.batcher` — micro-batching of concurrent requests over one shared model;
* :mod:`ser.serve.live` — the causal timeline of a live stream (no web dependencies);
* :mod:`ser.serve.registry` — the loaded models and the :class:`Limits`;
* :mod:`ser.serve.server` — :func:`serve`, uvicorn with graceful shutdown;
* ``static/`` — the page (plain HTML, CSS and JavaScript; nothing fetched from elsewhere).
"""

from __future__ import annotations

from ser.serve.registry import Limits, Models

__all__ = ["Limits", "Models", "create_app", "serve"]


def create_app(*args, **kwargs):
    """See :func:`ser.serve.app.create_app`."""
    from ser.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)


def serve(**kwargs) -> int:
    """See :func:`ser.serve.server.serve`."""
    from ser.serve.server import serve as _serve

    return _serve(**kwargs)
