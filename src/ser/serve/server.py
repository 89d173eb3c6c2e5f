"""Run the service: load the models, then uvicorn until Ctrl-C or SIGTERM (in-flight requests finish)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import uvicorn

from ser.errors import ConfigError
from ser.serve.app import create_app, is_loopback
from ser.serve.registry import Limits, Models

log = logging.getLogger(__name__)

#: Seconds uvicorn waits for in-flight requests after SIGTERM before it closes them.
GRACE_S = 30


def check_binding(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token (one line, before anything loads)."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"--host {host}: not a loopback address; anyone who can reach it could use the service. "
                          "Give a token (--token or SER_TOKEN) or bind 127.0.0.1")


def serve(*, host: str = "127.0.0.1", port: int = 8000, models: Sequence[str] = ("default", "fast"),
          token: str | None = None, cors: Sequence[str] = (), limits: Limits | None = None,
          speakers_dir: str | os.PathLike | None = None, runtime: str = "auto", workers: int = 1,
          access_log: bool = True, log_level: str = "info") -> int:
    """Serve ``models`` over HTTP on ``host:port`` until stopped; returns 0 after a clean shutdown.

    Prints ``ser serve: listening on http://HOST:PORT/`` on standard error once the socket is open
    (``port=0`` picks a free port, and this line names it).
    """
    check_binding(host, token)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected 0-65535 (0 picks a free port)")
    if token is not None and (not token.strip() or len(token) < 8 or not token.isprintable()):
        raise ConfigError("--token: use at least 8 printable characters")
    loaded = Models(models, limits=limits, runtime=runtime, speakers_dir=speakers_dir, workers=workers)
    single_blas_thread()
    try:
        app = create_app(loaded, token=token, cors=cors, local_only=is_loopback(host) and token is None,
                         speakers_dir=speakers_dir)
    except BaseException:
        loaded.close()
        raise
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                            timeout_graceful_shutdown=GRACE_S, proxy_headers=False, server_header=False,
                            ws_max_size=2 * 1024 * 1024, lifespan="on")
    server = _Server(config)
    server.run()
    return 0 if server.started else 1


def single_blas_thread() -> None:
    """One BLAS thread per worker, for every BLAS loaded by now (numpy's, scipy's: call it after the models load).

    The requests already run on several threads (the event loop, each model's worker, the live
    streams'); OpenBLAS's own threads on top spin against them. The first benchmark run, without
    this, served 1.0 request/s with the default model at concurrency 1 and the run after it 6.3
    (benchmarks/results/service_default_blas-threads-2.json against service_default.json; the first
    run also predates the predictor redesign).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


class _Server(uvicorn.Server):
    """uvicorn's Server, saying once where it listens (the real port when 0 was asked)."""

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if not self.started:
            return
        names = []
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                names.append(f"http://{'[' + host + ']' if ':' in host else host}:{port}/")
        models = ", ".join(self.config.app.state.models.names)
        print(f"ser serve: listening on {' '.join(names)} (models: {models}; Ctrl-C or SIGTERM stops)",
              file=sys.stderr, flush=True)
