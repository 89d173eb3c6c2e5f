"""The models a service holds: each loaded once, shared by every request, with its micro-batcher."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.errors import ConfigError, ModelError, SERError
from ser.serve.batcher import MicroBatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one client can ask of the service; every limit is configurable (``ser serve --help``).

    Attributes
    ----------
    max_upload_mb : float
        Request body, in MB (10^6 bytes): 413 beyond it.
    max_files : int
        Files in one request.
    max_timeline_s : float
        Longest recording ``/v1/timeline`` takes, in seconds (413 beyond).
    max_stream_s : float
        Longest live stream, in seconds of audio.
    max_streams : int
        Live streams at once (more are refused with ``busy``).
    max_queue : int
        Requests waiting for a model (503 with ``Retry-After`` beyond).
    max_batch : int
        Clips per model call.
    max_long_jobs : int
        Timelines and enrolments waiting beyond the one running (503 beyond).
    """

    max_upload_mb: float = 25.0
    max_files: int = 64
    max_timeline_s: float = 7200.0
    max_stream_s: float = 3600.0
    max_streams: int = 8
    max_queue: int = 64
    max_batch: int = 32
    max_long_jobs: int = 2

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_timeline_s", "max_stream_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ConfigError(f"{name}={value!r}: expected a positive number")
        for name in ("max_files", "max_streams", "max_queue", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: expected a positive integer")
        if isinstance(self.max_long_jobs, bool) or not isinstance(self.max_long_jobs, int) or self.max_long_jobs < 0:
            raise ConfigError(f"max_long_jobs={self.max_long_jobs!r}: expected an integer >= 0")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


class ModelNotLoaded(SERError, LookupError):
    """A request named a model the service did not load."""


@dataclass(frozen=True)
class Loaded:
    """One served model."""

    name: str
    recognizer: object
    batcher: MicroBatcher
    adapted_head: bool


class Models:
    """Load each model once (verified, warmed up) and keep it for the life of the service.

    Parameters
    ----------
    specs : sequence of str
        Bundled model names (``default``, ``fast``) or model folders; the first is used when a
        request names none.
    runtime : {"auto", "onnx", "keras"}
        As :meth:`ser.inference.Recognizer.load`.
    """

    def __init__(self, specs: Sequence[str], *, limits: Limits | None = None, runtime: str = "auto",
                 speakers_dir: str | os.PathLike | None = None, workers: int = 1) -> None:
        from ser.inference import Recognizer, bundled_models, resolve_model

        if not specs:
            raise ConfigError("models: give at least one model")
        self.limits = limits or Limits()
        self.speakers_dir = speakers_dir
        self._models: dict[str, Loaded] = {}
        bundled = set(bundled_models())
        try:
            for spec in specs:
                folder = resolve_model(spec)
                name = spec if spec in bundled else Path(folder).name
                if name in self._models:
                    raise ConfigError(f"--model {spec}: a model named {name!r} is already loaded")
                recognizer = Recognizer.load(folder, runtime=runtime)
                _warm_up(recognizer)
                try:
                    recognizer.require_adapted_head()
                    adapted = True
                except ModelError:
                    adapted = False
                batcher = MicroBatcher(recognizer, max_queue=self.limits.max_queue, max_batch=self.limits.max_batch,
                                       speakers_dir=speakers_dir, workers=workers, name=name)
                self._models[name] = Loaded(name, recognizer, batcher, adapted)
                log.info("model %s loaded from %s", name, folder)
        except BaseException:
            self.close()
            raise
        self.default = next(iter(self._models))

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str | None) -> Loaded:
        """The model ``name`` (default: the first loaded); :class:`ModelNotLoaded` when not served."""
        if name is None or name == "":
            return self._models[self.default]
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotLoaded(f"model {_short(name)} is not loaded here; loaded: {', '.join(self._models)}") \
                from None

    def describe(self) -> dict:
        """``GET /v1/models``: each loaded model's labels, limits and card summary; the bundled names."""
        from ser.inference import bundled_models

        return {"default": self.default, "loaded": self.names, "bundled": bundled_models(),
                "models": [_card(m) for m in self._models.values()]}

    def close(self) -> None:
        """Finish the queued work and stop every model's workers."""
        for m in self._models.values():
            m.batcher.close()


def _warm_up(recognizer) -> None:
    """One prediction on a synthetic voice, so the first request does not pay for lazy start-up."""
    from ser.errors import AudioError

    sr = int(recognizer.config.audio.sample_rate)
    t = np.arange(sr) / sr
    f0 = 150 + 20 * np.sin(2 * np.pi * 2 * t)  # a gliding pitch with harmonics and breath: not a pure tone
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    y = (0.1 * voice + 0.01 * np.random.default_rng(0).standard_normal(sr)).astype(np.float32)
    try:
        recognizer.predict(y, sr)
    except AudioError as exc:  # a model whose checks refuse it still serves; only the warm-up is lost
        log.warning("warm-up prediction refused (%s)", exc)


def _card(m: Loaded) -> dict:
    rec = m.recognizer
    config = rec.config
    meta = rec.metadata
    evaluation = meta.get("evaluation", {}) if isinstance(meta.get("evaluation"), dict) else {}
    headline = {k: v for k, v in evaluation.get("si6", {}).items() if k in ("accuracy", "uar", "macro_f1")}
    return {"name": m.name, "classes": list(rec.classes), "preset": config.name,
            "features": config.features.kind, "sample_rate": config.audio.sample_rate,
            "window_s": config.audio.duration, "max_clip_s": config.audio.max_duration,
            "min_clip_s": config.audio.min_duration, "adapted_head": m.adapted_head,
            "si6": headline or None, "data_license": meta.get("data_license")}


def _short(text: str) -> str:
    text = repr(text)
    return text if len(text) <= 80 else text[:77] + "..."
