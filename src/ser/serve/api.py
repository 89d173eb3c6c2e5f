"""The HTTP routes of ``ser serve``: health, models, predictions, timelines, speakers, and the page.

Audio comes as multipart files (any field name; ``curl -F file=@clip.wav``) or as a raw body
(``Content-Type: audio/*`` or ``application/octet-stream``). Whatever its name or content type says,
it is sniffed by decoding: what does not decode is 415. Uploads are written to a private temporary
folder that is removed as soon as the request's work is done.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ser.errors import SERError
from ser.serve.app import STATIC, ApiError, error_body, status_of

log = logging.getLogger(__name__)
router = APIRouter()

#: How an audio upload looks in the OpenAPI document (the body is parsed by hand, to enforce the limits).
AUDIO_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                 "description": "one or more audio files (any field name)"}}}},
    "audio/*": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}

#: Audio file name endings kept on the temporary copy (a hint for libsndfile; the content decides).
_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf"}


class Uploads:
    """One request's audio on disk: ``items`` = ``[(source name, temporary path)]``; :meth:`cleanup` removes them."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="ser-serve-"))
        self.items: list[tuple[str, Path]] = []

    def new_path(self, source: str) -> Path:
        suffix = Path(source).suffix.lower()
        return self.tmp / f"{len(self.items)}{suffix if suffix in _SUFFIXES else ''}"

    def cleanup(self, *_args) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def rename(self, exc: BaseException) -> str:
        """The error's message with the temporary paths replaced by the uploaded names."""
        text = str(exc)
        for source, path in self.items:
            text = text.replace(str(path), source)
        return text.replace(str(self.tmp), "upload")


def _source(name: str | None, index: int) -> str:
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or f"file{index + 1}"


async def receive_audio(request: Request, *, max_files: int) -> Uploads:
    """The request's audio files, written to a temporary folder (removed on any error here)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    uploads = Uploads()
    try:
        if media == "multipart/form-data":
            # Starlette's own file cap is only a backstop (the body limit bounds the total); ours says 413.
            async with request.form(max_files=max(1000, 4 * max_files), max_fields=100) as form:
                files = [v for _, v in form.multi_items() if not isinstance(v, str)]
                if not files:
                    raise ApiError(400, "no audio file in the form: send files as multipart fields "
                                        "(curl -F file=@clip.wav)")
                if len(files) > max_files:
                    raise ApiError(413, f"{len(files)} files: at most {max_files} per request")
                for i, upload in enumerate(files):
                    source = _source(upload.filename, i)
                    path = uploads.new_path(source)
                    with open(path, "wb") as out:  # noqa: ASYNC230 - a local temporary file, written in MB chunks
                        await upload.seek(0)
                        while chunk := await upload.read(1 << 20):
                            out.write(chunk)
                    uploads.items.append((source, path))
        elif media.startswith("audio/") or media == "application/octet-stream":
            source = _source(request.query_params.get("filename"), 0)
            path = uploads.new_path(source)
            size = 0
            with open(path, "wb") as out:  # noqa: ASYNC230 - a local temporary file
                async for chunk in request.stream():
                    size += len(chunk)
                    out.write(chunk)
            if size == 0:
                raise ApiError(400, "empty request body: send the audio file as the body, or as a multipart field")
            uploads.items.append((source, path))
        elif not media:
            raise ApiError(415 if request.headers.get("content-length", "0") != "0" else 400,
                           "no Content-Type: send multipart/form-data, audio/* or application/octet-stream")
        else:
            raise ApiError(415, f"Content-Type {media}: send multipart/form-data (files), audio/* or "
                                "application/octet-stream (one raw file)")
    except BaseException:
        uploads.cleanup()
        raise
    return uploads


def _state(request: Request):
    return request.app.state


def _model(request: Request, name: str | None):
    return _state(request).models.get(name)


def _renamed(exc: BaseException, uploads: Uploads) -> ApiError:
    return ApiError(status_of(exc), uploads.rename(exc))


# --- page, health, models -------------------------------------------------------------------------
@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                        headers={"cache-control": "no-cache"})


@router.get("/docs", include_in_schema=False)
async def docs() -> FileResponse:
    return FileResponse(STATIC / "docs.html", media_type="text/html; charset=utf-8")


@router.get("/health", summary="Liveness: models loaded, whether a token is needed")
async def health(request: Request) -> dict:
    from ser import __version__

    state = _state(request)
    return {"status": "ok", "version": __version__, "models": state.models.names, "auth": state.token is not None,
            "streams": len(state.streams)}


@router.get("/v1/models", summary="Loaded models: labels, limits, card summary")
async def models(request: Request) -> dict:
    state = _state(request)
    limits = state.limits
    return {**state.models.describe(),
            "limits": {"max_upload_mb": limits.max_upload_mb, "max_files": limits.max_files,
                       "max_timeline_s": limits.max_timeline_s, "max_stream_s": limits.max_stream_s,
                       "max_streams": limits.max_streams}}


# --- predictions --------------------------------------------------------------------------------
@router.post("/v1/predict", openapi_extra=AUDIO_BODY, summary="Emotion of one or more clips")
async def predict(request: Request, model: str | None = Query(None, description="default: the first loaded"),
                  speaker: str | None = Query(None, description="an enrolled speaker's profile"),
                  adapt: bool = Query(False, description="unlabelled adaptation over the uploaded batch")):
    """Results as "ser predict --json" gives them, one per file in order; a file that fails has
    error, detail and status in its place. When every file fails, the response takes the first
    failure's status."""
    from ser.speakers import check_name

    state = _state(request)
    loaded = _model(request, model)
    if speaker is not None and adapt:
        raise ApiError(400, "give speaker or adapt, not both")
    if speaker is not None:
        check_name(speaker)
        loaded.recognizer.profile(speaker, folder=state.speakers_dir)  # 404 before any upload is stored
    if adapt:
        loaded.recognizer.require_adapted_head()
    uploads = await receive_audio(request, max_files=state.limits.max_files)
    try:
        future = loaded.batcher.submit([p for _, p in uploads.items], speaker=speaker, adapt=adapt)
    except BaseException:
        uploads.cleanup()
        raise
    # The files go when the batch is done, even if this request is cancelled meanwhile.
    future.add_done_callback(uploads.cleanup)
    try:
        results = await asyncio.wrap_future(future)
    except SERError as exc:
        raise _renamed(exc, uploads) from None
    items, failures = [], []
    for (source, _), result in zip(uploads.items, results):
        if isinstance(result, SERError):
            status = status_of(result)
            failures.append(status)
            items.append({"source": source, **error_body(status, uploads.rename(result)), "status": status})
        else:
            items.append({**result.to_dict(), "source": source})
    if failures and len(failures) == len(items):
        first = next(i for i in items if "error" in i)
        return JSONResponse({"error": first["error"], "detail": first["detail"], "model": loaded.name,
                             "results": items}, status_code=failures[0])
    return {"model": loaded.name, "results": items, "errors": len(failures)}


@router.post("/v1/timeline", openapi_extra=AUDIO_BODY, summary="Emotion timeline of a long recording")
async def timeline(request: Request, model: str | None = None, adapt: bool = False,
                   format: Literal["json", "png", "csv"] = Query("json", description="png: the plot")):
    """Speech segments with start, end, label, confidence and scores, as "ser predict --timeline"
    finds them (format=png: the plot; csv: the table)."""
    state = _state(request)
    loaded = _model(request, model)
    rec = loaded.recognizer
    if adapt:
        rec.require_adapted_head()
    limit = state.limits.max_timeline_s
    uploads = await receive_audio(request, max_files=1)
    source, path = uploads.items[0]

    def work():
        from ser import timeline as tl

        duration = tl.file_duration(path)
        if duration > limit:
            raise ApiError(413, f"{source}: {duration:.0f} s is longer than the {limit:g} s limit for a timeline")
        segments = tl.timeline(path, rec, adapt=adapt)
        if format == "png":
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                raise ApiError(501, "format=png needs matplotlib on the server (pip install "
                                    "'speech-emotion-recognition[plot]')") from None
            return tl.plot_timeline(segments, uploads.tmp / "timeline.png", classes=rec.classes, duration=duration,
                                    title=source).read_bytes()
        if format == "csv":
            return tl.write_csv(segments, uploads.tmp / "timeline.csv", classes=rec.classes).read_bytes()
        return {"model": loaded.name, "source": source, "duration": round(duration, 3),
                "segments": [s.to_dict() for s in segments]}

    try:
        result = await asyncio.wrap_future(state.slow.submit(work))
    except SERError as exc:
        raise _renamed(exc, uploads) from None
    finally:
        uploads.cleanup()
    if format == "png":
        return Response(result, media_type="image/png")
    if format == "csv":
        return Response(result, media_type="text/csv; charset=utf-8")
    return result


# --- speakers -----------------------------------------------------------------------------------
@router.get("/v1/speakers", summary="Enrolled speakers")
def speakers(request: Request) -> dict:
    from ser.speakers import list_profiles

    rows = []
    for row in list_profiles(_state(request).speakers_dir):
        path = row.pop("path", "")
        if "error" in row:  # never show the server's folders
            row["error"] = row["error"].replace(str(path), f"{row['name']}.npz")
        rows.append(row)
    return {"speakers": rows}


@router.put("/v1/speakers/{name:path}", openapi_extra=AUDIO_BODY, status_code=201,
            summary="Enrol a speaker from clips of them reading calmly (replaces an earlier profile)")
async def enrol(request: Request, name: str, model: str | None = None):
    from ser.speakers import check_name, profile_path
    from ser.speakers import enrol as enrol_speaker

    state = _state(request)
    check_name(name)
    loaded = _model(request, model)
    loaded.recognizer.require_adapted_head()
    uploads = await receive_audio(request, max_files=state.limits.max_files)
    existed = profile_path(name, state.speakers_dir).exists()
    try:
        profile = await asyncio.wrap_future(state.slow.submit(
            enrol_speaker, loaded.recognizer, name, [p for _, p in uploads.items], folder=state.speakers_dir))
    except SERError as exc:
        raise _renamed(exc, uploads) from None
    finally:
        uploads.cleanup()
    return JSONResponse({"name": profile.name, "clips": int(profile.stats.n), "created": profile.created,
                         "model": loaded.name, "replaced": existed}, status_code=200 if existed else 201)


@router.delete("/v1/speakers/{name:path}", summary="Remove a speaker's profile")
def remove(request: Request, name: str) -> dict:
    from ser.speakers import check_name, remove_profile

    check_name(name)
    try:
        remove_profile(name, _state(request).speakers_dir)
    except SERError as exc:
        raise ApiError(status_of(exc), f"speaker {name!r}: no profile" if status_of(exc) == 404 else str(exc)) \
            from None
    return {"removed": name}
