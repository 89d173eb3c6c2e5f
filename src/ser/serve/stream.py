"""``WS /v1/stream``: live audio in, an emotion event out as soon as each speech segment ends.

Protocol (JSON text messages and binary audio frames):

1. The client may first send ``{"type": "start", "sample_rate": 48000, "model": "default",
   "speaker": NAME | null, "adapt": false, "token": "..."}`` (every field optional; the same settings
   may be given as query parameters ``?sample_rate=&model=&speaker=&adapt=``; the token only here or
   in an ``Authorization`` header, never in the URL). Without it, audio is 16 kHz.
2. The server answers ``{"type": "ready", "model", "sample_rate", "classes"}``.
3. Binary frames: little-endian 16-bit mono PCM at that rate, of any length.
4. The server sends ``{"type": "segment", "start", "end", "label", "confidence", "scores"}`` for each
   speech segment once it has ended (the causal timeline of :class:`ser.serve.live.LiveTimeline`),
   and ``{"type": "progress", "seconds"}`` about every half second of audio.
5. ``{"type": "stop"}`` ends the stream: the open segment is closed and recognised, then
   ``{"type": "end", "seconds", "segments", "skipped"}`` and the socket closes (1000).

Errors are ``{"type": "error", "error", "detail"}`` followed by a close: 1008 (token, origin,
a limit), 1003 (a message that is not this protocol), 1013 (too many streams: try again later),
1011 (the server failed).
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ser.errors import SERError
from ser.serve.app import TITLES, bearer, status_of, token_ok
from ser.serve.live import LiveTimeline

log = logging.getLogger(__name__)
router = APIRouter()

#: Seconds a stream may stay silent on the wire (no frame at all) before it is closed.
IDLE_S = 60.0
#: Largest audio frame accepted, in bytes (10 s of 48 kHz PCM16).
MAX_FRAME = 960_000
#: Seconds of audio between two progress events.
PROGRESS_S = 0.5


class _Refused(Exception):
    def __init__(self, code: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.error, self.detail = code, error, detail


def close_all(app) -> None:
    """Cancel the live streams still open (at shutdown, after uvicorn closed their sockets)."""
    for task in list(app.state.streams):
        task.cancel()


def _origin_ok(ws: WebSocket) -> bool:
    """Browsers do not apply CORS to WebSockets: accept pages of this very host, or of a --cors origin."""
    origin = ws.headers.get("origin")
    if origin is None or origin in ws.app.state.cors:  # no Origin: not a browser
        return True
    return urlsplit(origin).netloc.lower() == ws.headers.get("host", "").lower()


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
        return value.lower() in ("1", "true", "yes", "on")
    raise _Refused(1008, "bad request", f"adapt={value!r}: expected true or false")


def _settings(ws: WebSocket, start: dict) -> dict:
    q = ws.query_params
    settings = {"model": q.get("model"), "speaker": q.get("speaker"), "adapt": q.get("adapt", "false"),
                "sample_rate": q.get("sample_rate", "16000")}
    for key in settings:
        if key in start and start[key] is not None:
            settings[key] = start[key]
    try:
        rate = settings["sample_rate"]
        if isinstance(rate, float) and rate.is_integer():
            rate = int(rate)
        settings["sample_rate"] = rate if isinstance(rate, int) and not isinstance(rate, bool) else int(str(rate))
    except ValueError:
        raise _Refused(1008, "bad request", f"sample_rate={settings['sample_rate']!r}: expected an integer") \
            from None
    settings["adapt"] = _flag(settings["adapt"])
    for key in ("model", "speaker"):
        if settings[key] is not None and not isinstance(settings[key], str):
            raise _Refused(1008, "bad request", f"{key}={settings[key]!r}: expected a string")
    return settings


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    state = ws.app.state
    if not _origin_ok(ws):
        await ws.close(code=1008, reason="origin not allowed")
        return
    await ws.accept()
    task = asyncio.current_task()
    try:
        if len(state.streams) >= state.limits.max_streams:
            raise _Refused(1013, "busy", f"{len(state.streams)} live streams are open (the limit); try again later")
        state.streams.add(task)
        await _session(ws, state)
    except _Refused as exc:
        await _close(ws, exc.code, {"type": "error", "error": exc.error, "detail": exc.detail})
    except WebSocketDisconnect:
        pass
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("live stream failed")
        await _close(ws, 1011, {"type": "error", "error": "internal error", "detail": "internal error (see the "
                                                                                     "server log)"})
    finally:
        state.streams.discard(task)


async def _close(ws: WebSocket, code: int, event: dict | None = None) -> None:
    try:
        if event is not None:
            await ws.send_text(json.dumps(event))
        await ws.close(code=code)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client is already gone


def _parse(text: str) -> dict:
    try:
        message = json.loads(text)
    except ValueError:
        raise _Refused(1003, "bad request", "text messages must be JSON objects like {\"type\": \"stop\"}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise _Refused(1003, "bad request", "a text message needs a \"type\" (start or stop)")
    return message


async def _receive(ws: WebSocket) -> dict:
    try:
        message = await asyncio.wait_for(ws.receive(), timeout=IDLE_S)
    except asyncio.TimeoutError:
        raise _Refused(1008, "timeout", f"no audio for {IDLE_S:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message


async def _session(ws: WebSocket, state) -> None:
    first = await _receive(ws)
    start: dict = {}
    pending_audio: bytes | None = None
    if first.get("text") is not None:
        start = _parse(first["text"])
        if start["type"] != "start":
            raise _Refused(1003, "bad request", f"first message of type {start['type']!r}: expected start or audio")
    else:
        pending_audio = first.get("bytes") or b""
    if not token_ok(state.token, start.get("token") if isinstance(start.get("token"), str) else bearer(ws.headers)):
        raise _Refused(1008, TITLES[401], "missing or wrong token: send {\"type\": \"start\", \"token\": ...} first")
    settings = _settings(ws, start)
    try:
        loaded = state.models.get(settings["model"])
        if settings["speaker"] is not None:
            from ser.speakers import check_name

            check_name(settings["speaker"])
            speaker = loaded.recognizer.profile(settings["speaker"], folder=state.speakers_dir)
        else:
            speaker = None
        live = LiveTimeline(loaded.recognizer, sample_rate=settings["sample_rate"], speaker=speaker,
                            adapt=settings["adapt"])
    except SERError as exc:
        raise _Refused(1008, TITLES.get(status_of(exc), "bad request"), str(exc)) from None
    limit = state.limits.max_stream_s
    send_lock = asyncio.Lock()

    async def send(event: dict) -> None:
        async with send_lock:
            await ws.send_text(json.dumps(event))

    await send({"type": "ready", "model": loaded.name, "sample_rate": live.sample_rate,
                "classes": list(loaded.recognizer.classes)})
    spans: asyncio.Queue = asyncio.Queue(maxsize=32)  # a full queue slows the reader: TCP back-pressure
    loop = asyncio.get_running_loop()
    counts = {"segments": 0}

    async def recognise() -> None:
        while (span := await spans.get()) is not None:
            segment = await loop.run_in_executor(None, live.recognise, span)
            if segment is not None:
                counts["segments"] += 1
                await send({"type": "segment", **segment.to_dict()})

    worker = asyncio.create_task(recognise())
    try:
        last_progress = 0.0
        message = {"bytes": pending_audio} if pending_audio is not None else None
        while True:
            if message is None:
                message = await _receive(ws)
            if message.get("bytes") is not None:
                data = message["bytes"]
                if len(data) > MAX_FRAME:
                    raise _Refused(1009, "too large", f"audio frame of {len(data)} bytes: at most {MAX_FRAME}")
                for span in live.feed_pcm16(data):
                    await spans.put(span)
                if live.seconds > limit:
                    for span in live.flush():
                        await spans.put(span)
                    await spans.put(None)
                    await worker
                    raise _Refused(1008, "too large", f"the stream passed the {limit:g} s limit")
                if live.seconds - last_progress >= PROGRESS_S:
                    last_progress = live.seconds
                    await send({"type": "progress", "seconds": round(live.seconds, 3)})
            else:
                command = _parse(message.get("text") or "")
                if command["type"] == "stop":
                    break
                if command["type"] != "start":
                    raise _Refused(1003, "bad request", f"unknown message type {command['type']!r}")
            if worker.done():
                worker.result()  # a failed recognition ends the stream here
            message = None
        for span in live.flush():
            await spans.put(span)
        await spans.put(None)
        await worker
        await send({"type": "end", "seconds": round(live.seconds, 3), "segments": counts["segments"],
                    "skipped": live.skipped})
        await ws.close(code=1000)
    finally:
        if not worker.done():
            worker.cancel()
