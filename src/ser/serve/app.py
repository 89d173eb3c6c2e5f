"""The HTTP application: :func:`create_app` wires the models, the guard, the JSON errors and the routes.

Every error a client can cause is a JSON body ``{"error": "<short title>", "detail": "<one line>"}``
with its status; anything unforeseen is logged with its traceback on the server and answered with
a 500 that says nothing more than ``internal error``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from ser.errors import AudioError, ConfigError, ModelError, SERError
from ser.serve.batcher import Busy, SlowLane
from ser.serve.registry import ModelNotLoaded, Models

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"

TITLES = {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found", 405: "method not allowed",
          409: "conflict", 413: "too large", 415: "unsupported media type", 422: "unprocessable audio",
          429: "too many requests", 500: "internal error", 501: "not available", 503: "busy"}


class ApiError(Exception):
    """An error answered as ``{"error", "detail"}`` with ``status`` (and ``headers``)."""

    def __init__(self, status: int, detail: str, *, headers: dict | None = None, extra: dict | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers or {}, extra or {}


class BodyTooLarge(Exception):
    """The request body passed the upload limit while it was being read."""


def status_of(exc: BaseException) -> int:
    """The HTTP status of an error from the library (the classes are coarse, so the message refines them)."""
    from ser.speakers import ProfileError

    text = str(exc)
    if isinstance(exc, Busy):
        return 503
    if isinstance(exc, ModelNotLoaded):
        return 404
    if isinstance(exc, AudioError):
        if "not a readable audio file" in text or "cannot decode" in text:
            return 415  # sniffed by decoding: whatever the name or content type said, it is not audio we read
        if "longer than" in text:
            return 413
        return 422  # audio, but unusable: empty, truncated, silent, too short, NaN samples
    if isinstance(exc, ProfileError):
        if "no profile" in text:
            return 404
        if "use 1-64 letters" in text:
            return 400
        return 422  # a profile that cannot be used with this model (remade for another, damaged)
    if isinstance(exc, ModelError):
        return 400 if "adapted head" in text else 500
    if isinstance(exc, (ConfigError, ValueError)):
        return 400
    if isinstance(exc, SERError):
        return 422
    return 500


def error_body(status: int, detail: str, **extra) -> dict:
    return {"error": TITLES.get(status, "error"), "detail": _one_line(detail), **extra}


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """``Host`` header without its port (``[::1]:8000`` → ``::1``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def token_ok(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of a bearer token (``None`` expected: no token needed)."""
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bearer(headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Guard:
    """Pure ASGI middleware: host check, bearer token, body size, for HTTP and WebSocket alike.

    * Without a token the service answers only requests addressed to a loopback name (``Host:
      localhost``, ``127.0.0.1``, ``[::1]``): a web page elsewhere cannot reach it through DNS rebinding.
    * With a token every ``/v1/`` request must carry ``Authorization: Bearer <token>`` (a WebSocket
      may send it in its first message instead, since browsers cannot set headers there).
    * A body over the limit is refused by its ``Content-Length`` before it is read, or as soon as
      the bytes read pass the limit (chunked uploads).
    """

    def __init__(self, app, *, token: str | None, max_body: int, local_only: bool) -> None:
        self.app, self.token, self.max_body, self.local_only = app, token, max_body, local_only

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.local_only and not is_loopback(_host_name(headers.get("host", "localhost"))):
            await self._refuse(scope, receive, send, 400,
                               f"Host {headers.get('host')!r}: this service answers only to localhost (start it "
                               "with a --token to serve other names)")
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)  # the token is checked by the stream (header or first message)
            return
        if self.token is not None and scope["path"].startswith("/v1/") and not token_ok(self.token, bearer(headers)):
            await self._refuse(scope, receive, send, 401, "missing or wrong bearer token (Authorization: Bearer "
                               "<token>)", {"www-authenticate": "Bearer"})
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._refuse(scope, receive, send, 413, f"request body of {int(length)} bytes is over the "
                               f"{self.max_body} byte limit")
            return
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(f"request body is over the {self.max_body} byte limit")
            return message

        await self.app(scope, counted, send)

    @staticmethod
    async def _refuse(scope, receive, send, status: int, detail: str, headers: dict | None = None) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        from starlette.responses import JSONResponse

        await JSONResponse(error_body(status, detail), status_code=status, headers=headers)(scope, receive, send)


def create_app(models: Models, *, token: str | None = None, cors: Sequence[str] = (), local_only: bool = True,
               speakers_dir: str | os.PathLike | None = None):
    """The FastAPI application serving ``models``.

    Parameters
    ----------
    models : Models
        Loaded models (closed when the application shuts down).
    token : str, optional
        Bearer token every ``/v1/`` request must carry.
    cors : sequence of str
        Origins allowed to call the API from their pages (none by default).
    local_only : bool
        Answer only requests addressed to a loopback name (the server is bound to one, no token).
    speakers_dir : path-like, optional
        Where enrolled speaker profiles live (default: :func:`ser.speakers.default_profiles_dir`).
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.staticfiles import StaticFiles

    from ser import __version__
    from ser.serve import api, stream

    @asynccontextmanager
    async def lifespan(app):
        yield
        # Shutdown (SIGTERM): uvicorn has already let the in-flight requests finish.
        stream.close_all(app)
        app.state.slow.close()
        models.close()

    # FastAPI's own /docs loads Swagger UI from a CDN; ours renders /openapi.json with nothing from elsewhere.
    app = FastAPI(title="ser — speech emotion recognition", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Emotions in speech: clips, long recordings, enrolled speakers and live streams. "
                              "Errors are JSON {\"error\": ..., \"detail\": ...}.")
    app.state.models = models
    app.state.limits = models.limits
    app.state.token = token
    app.state.cors = tuple(cors)
    app.state.speakers_dir = speakers_dir
    app.state.slow = SlowLane(workers=1, max_waiting=models.limits.max_long_jobs)
    app.state.streams = set()

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return JSONResponse(error_body(exc.status, exc.detail, **exc.extra), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request, exc: BodyTooLarge):
        return JSONResponse(error_body(413, str(exc)), status_code=413, headers={"connection": "close"})

    @app.exception_handler(Busy)
    async def _busy(request, exc: Busy):
        return JSONResponse(error_body(503, str(exc)), status_code=503,
                            headers={"retry-after": str(exc.retry_after)})

    @app.exception_handler(SERError)
    async def _ser_error(request, exc: SERError):
        status = status_of(exc)
        if status == 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
            return JSONResponse(error_body(500, "the model failed on this input"), status_code=500)
        return JSONResponse(error_body(status, str(exc)), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path", "body"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", "invalid"))
        return JSONResponse(error_body(400, "; ".join(parts) or "invalid request"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"{request.url.path}: no such endpoint (see /docs)"
        elif exc.status_code == 405:
            detail = f"{request.method} {request.url.path}: method not allowed"
        return JSONResponse(error_body(exc.status_code, detail), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request, exc: Exception):
        # Never a stack trace to the client; the log has it.
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(error_body(500, "internal error (see the server log)"), status_code=500)

    app.include_router(api.router)
    app.include_router(stream.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(Guard, token=token, max_body=models.limits.max_upload_bytes, local_only=local_only)
    if cors:
        # Outside the guard (added last = outermost): preflights carry no token, refusals get CORS headers.
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["authorization", "content-type"], max_age=600)
    return app
