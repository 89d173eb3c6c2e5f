"""The front end: how a clip becomes the features a model reads, for one clip or many.

A :class:`Frontend` is built from a model's :class:`~ser.config.Config` (and the
encoder its folder carries). It decodes a file (:mod:`ser.audio`), conditions the
waveform (silence trimming, peak normalisation), and computes the features
(:mod:`ser.features`, or the Whisper encoder of :mod:`ser.encoders`): the one path
from audio to model input, for training, prediction, the timeline and the service.

Many files are mapped on **one** executor, :func:`parallel_map`: worker threads,
in input order. Decoding (libsndfile), the STFT and the encoder's matrix products
run in C with the GIL released, so ``jobs`` threads fill ``jobs`` cores, with no
worker start-up, one shared copy of the encoder, nothing left running when the
process is killed, and no ``if __name__ == "__main__":`` guard in a user's script.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ser import audio as audio_mod
from ser.cache import FeatureCache, settings_digest
from ser.config import AudioConfig, Config
from ser.errors import AudioError, SERError
from ser.features import extract, stats_pool
from ser.utils import sha256_file

T = TypeVar("T")
R = TypeVar("R")

#: Below this many items, :func:`parallel_map` runs in the calling thread (a pool and its
#: thread limits cost more than they save).
POOL_MIN_ITEMS = 17
#: Files decoded and featurised together by one worker (spectral models): one STFT over
#: the batch and fewer Python-level steps holding the GIL cost less per clip.
CHUNK_FILES = 16


def parallel_map(fn: Callable[[T], R], items: Sequence[T], *, jobs: int | None = None,
                 min_items: int = POOL_MIN_ITEMS) -> Iterator[R]:
    """``fn`` over ``items`` on worker threads, results yielded in input order as they are ready.

    Parameters
    ----------
    fn : callable
        Called once per item; an exception it raises is raised here (the pool stops).
    items : sequence
        The work.
    jobs : int, optional
        Worker threads (default: all cores; 1 = in the calling thread).
    min_items : int
        Fewer items than this run in the calling thread.

    Notes
    -----
    Each worker runs BLAS single-threaded: the workers already fill the cores, and
    oversubscribed BLAS threads make small matrix products many times slower.
    Measured on 480 RAVDESS clips with the fast model (whole ``ser predict``): one
    process 2.5 s, a forkserver pool 2.0 s, threads 1.3-1.8 s.
    """
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(items) < min_items:
        for item in items:
            yield fn(item)
        return
    from threadpoolctl import threadpool_limits

    pool = ThreadPoolExecutor(max_workers=min(jobs, len(items)), thread_name_prefix="ser-worker")
    try:
        with threadpool_limits(1):
            yield from pool.map(fn, items)
    finally:
        # Also when the caller stops early or an error is raised: queued work is dropped.
        pool.shutdown(wait=True, cancel_futures=True)


def local_executor(fn: Callable[..., R], items: Sequence[T], **shared) -> Iterator[R]:
    """``fn(item, **shared)`` for each item, in this thread, in order: the executor of training's work.

    :func:`ser.batch.ray_executor` has the same signature and runs the same calls as
    Ray tasks (``--ray``); :func:`compute_features`, :func:`ser.training.cross_validate`
    and :func:`ser.training.grid_search` take either.
    """
    for item in items:
        yield fn(item, **shared)


_ENCODER_LOCK = threading.Lock()


def whisper_encoder(precision: str = "float32", graph: str = "none"):
    """The shared Whisper-base encoder, loaded once per process (checksum verified).

    ``graph`` ``"none"``: the numpy encoder at ``precision``; otherwise the ONNX graph at that
    precision (see ``FeatureConfig.encoder_graph``), built from the same weights.
    """
    with _ENCODER_LOCK:  # feature threads ask for it at once: load it once, not once per thread
        return _load_whisper_encoder(precision, graph)


@functools.lru_cache(maxsize=2)
def _load_whisper_encoder(precision: str, graph: str = "none"):
    from ser.encoders import WhisperEncoder

    if graph == "none":
        return WhisperEncoder.from_dir(precision=precision)
    from ser.encoder_onnx import OnnxWhisperEncoder, encoder_graph_bytes

    return OnnxWhisperEncoder(encoder_graph_bytes(precision=graph))


def describe_encoder(encoder, config: Config) -> str:
    """One line saying which encoder computes ``config``'s features (for ``ser predict --verbose``)."""
    if config.features.kind != "whisper":
        return f"features: {config.features.kind} (no speech encoder)"
    if hasattr(encoder, "describe"):
        return encoder.describe()
    f = config.features
    if encoder is None and f.encoder_graph != "none":
        return f"Whisper encoder: ONNX Runtime {f.encoder_graph}, built from the shared weights"
    where = "the model folder's encoder.npz" if encoder is not None else "the shared CTranslate2 weights"
    return f"Whisper encoder: numpy float32 ({f.encoder_precision} weights, from {where})"


def condition_audio(y: np.ndarray, audio: AudioConfig) -> np.ndarray:
    """Silence trimming and level normalisation as configured (both off by default)."""
    if audio.trim_db:
        trimmed = audio_mod.trim_silence(y, top_db=audio.trim_db)
        # Never trim a clip to almost nothing: keep the original if too little is left.
        y = trimmed if trimmed.size >= audio.min_duration * audio.sample_rate else y
    if audio.peak_normalize:
        y = y / max(float(np.max(np.abs(y))), 1e-8)
    return y.astype(np.float32, copy=False)


def featurize_many(ys: Sequence[np.ndarray], config: Config, *, encoder=None) -> list[np.ndarray]:
    """Features of decoded clips (at ``config.audio.sample_rate``), as the model expects them.

    Spectral kinds cut or zero-pad each clip to exactly ``audio.duration`` and
    compute the batch at once (the same values as clip by clip); the whisper kind
    runs the encoder (``encoder``, default: :func:`whisper_encoder`) on each clip's
    own length.

    Returns
    -------
    list of numpy.ndarray
        float32, each of shape :func:`ser.features.feature_shape`.
    """
    a = config.audio
    size = int(round(a.duration * a.sample_rate))
    ys = [condition_audio(y, a) for y in ys]
    if not ys:
        return []
    if config.features.kind == "whisper":
        from ser.encoders import encode_waveform

        encoder = encoder or whisper_encoder(config.features.encoder_precision, config.features.encoder_graph)
        return [stats_pool(encode_waveform(y[:size], encoder)) for y in ys]
    batch = np.stack([audio_mod.fix_length(y, size=size) for y in ys])
    return list(extract(batch, sr=a.sample_rate, config=config.features))


def featurize(y: np.ndarray, config: Config, *, encoder=None) -> np.ndarray:
    """Features of one decoded clip (see :func:`featurize_many`)."""
    return featurize_many([y], config, encoder=encoder)[0]


def decode_clip(path: str | os.PathLike, config: Config, *,
                max_duration: float | None = None) -> tuple[np.ndarray, float]:
    """The part of a file the model analyses (at most ``audio.duration`` s at its rate), and the file's length in s."""
    a = config.audio
    return audio_mod.decode(path, sr=a.sample_rate, duration=a.duration, min_duration=a.min_duration,
                            max_duration=max_duration)


def load_clip(path: str | os.PathLike, config: Config, *, max_duration: float | None = None) -> np.ndarray:
    """:func:`decode_clip` without the file's length."""
    return decode_clip(path, config, max_duration=max_duration)[0]


#: One file's features and its length in seconds, or the error that names it (and 0.0).
FileFeatures = tuple[Any, float]


@dataclass(frozen=True)
class Frontend:
    """A model's path from audio to features; immutable, safe to share between threads.

    Parameters
    ----------
    config : Config
        The model's config: its ``audio`` and ``features`` sections are used.
    encoder : ser.encoders.WhisperEncoder, optional
        The encoder a model folder carries (whisper features); default: the shared one.
    """

    config: Config
    encoder: Any = None

    @property
    def sample_rate(self) -> int:
        """The rate the model reads, in Hz."""
        return self.config.audio.sample_rate

    def clip(self, y: np.ndarray, sr: int, *, name: str = "audio") -> np.ndarray:
        """Features of an in-memory signal of any rate and channel count (checked like a file's)."""
        return finite(featurize(self._prepare(y, sr, name), self.config, encoder=self.encoder), name)

    def clips(self, ys: Sequence[np.ndarray], sr: int, *, jobs: int | None = None,
              names: Sequence[str] | None = None) -> list[np.ndarray | SERError]:
        """:meth:`clip` of many in-memory signals: each one's features or the :class:`SERError` naming it.

        The speech encoder runs one clip per worker thread of :func:`parallel_map` (from two
        clips on), BLAS single-threaded in each; spectral features are one batch. The features
        equal :meth:`clip`'s to float round-off.

        Parameters
        ----------
        ys : sequence of numpy.ndarray
            Signals, each ``(n_samples,)`` or ``(n_samples, n_channels)``, at ``sr``.
        sr : int
            Their sample rate.
        jobs : int, optional
            Worker threads for the encoder (default: all cores).
        names : sequence of str, optional
            Used in error messages (default: ``"audio"``).

        Returns
        -------
        list
            Per signal, in order: float32 features of :func:`ser.features.feature_shape`, or the error.
        """
        names = list(names) if names is not None else ["audio"] * len(ys)
        out: list = []
        for y, name in zip(ys, names):
            try:
                out.append(self._prepare(y, sr, name))
            except SERError as exc:
                out.append(exc)
        ok = [i for i, y in enumerate(out) if not isinstance(y, SERError)]
        if self.config.features.kind == "whisper":
            # Batching the encoder over equal lengths is slower than clip by clip (measured, 8 clips of
            # 10 s: numpy 8.2 s one by one vs 29 s as one batch; the int8 ONNX graph 0.75-0.79 s of CPU
            # vs 0.87-1.00 s); threads are what pays.
            one = functools.partial(featurize, config=self.config, encoder=self.encoder)
            features = list(parallel_map(one, [out[i] for i in ok], jobs=jobs, min_items=2))
        else:
            from threadpoolctl import threadpool_limits

            # One BLAS thread: the batch's mel products are small, and BLAS threads spinning on a busy
            # machine made a timeline hour of noise 3x slower in wall time than clip by clip.
            with threadpool_limits(1):
                features = featurize_many([out[i] for i in ok], self.config, encoder=self.encoder)
        for i, x in zip(ok, features):
            try:
                out[i] = finite(x, names[i])
            except SERError as exc:
                out[i] = exc
        return out

    def _prepare(self, y: np.ndarray, sr: int, name: str) -> np.ndarray:
        """``y`` checked (length limit, :func:`ser.audio.prepare`) and at the model's rate."""
        a = self.config.audio
        duration = seconds(y, sr)
        if duration > a.max_duration:
            raise AudioError(f"{name}: {duration:.1f} s is longer than the {a.max_duration:g} s limit for one clip "
                             "(use ser.timeline for long recordings)")
        return audio_mod.prepare(y, sr, sr=a.sample_rate, min_duration=a.min_duration, name=name)

    def files(self, paths: Sequence[str | os.PathLike]) -> list[FileFeatures]:
        """``(features, file duration)`` or ``(SERError, 0.0)`` per path; spectral features as one batch.

        For prediction and enrolment: a file that is clearly no speech (:func:`ser.audio.check_speech`)
        is an error.
        """
        decoded: list[FileFeatures] = []
        for path in paths:
            try:
                y, duration = decode_clip(path, self.config, max_duration=self.config.audio.max_duration)
                # A test tone, a DC offset or a dead microphone gets an error, not a confident
                # emotion. Files to predict only: training data is what it is, and the timeline
                # (its own speech segments, in memory) has a voice-activity detector of its own.
                audio_mod.check_speech(y, self.config.audio.sample_rate, name=str(path))
                decoded.append((y, duration))
            except SERError as exc:
                decoded.append((exc, 0.0))
        ok = [i for i, (y, _) in enumerate(decoded) if not isinstance(y, SERError)]
        for i, x in zip(ok, featurize_many([decoded[i][0] for i in ok], self.config, encoder=self.encoder)):
            try:
                decoded[i] = (finite(x, str(paths[i])), decoded[i][1])
            except SERError as exc:
                decoded[i] = (exc, 0.0)
        return decoded

    def file(self, path: str | os.PathLike) -> tuple[np.ndarray, float]:
        """``(features, file duration)`` of one file; raises its :class:`SERError`."""
        x, duration = self.files([path])[0]
        if isinstance(x, SERError):
            raise x
        return x, duration

    def stream(self, paths: Sequence[str | os.PathLike], *, jobs: int | None = None) -> Iterator[FileFeatures]:
        """:meth:`files` of many paths on :func:`parallel_map`, one result per path, in order."""
        # The encoder runs clip by clip; spectral features in small batches (see CHUNK_FILES).
        size = 1 if self.config.features.kind == "whisper" else CHUNK_FILES
        chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
        min_chunks = -(-POOL_MIN_ITEMS // size)
        for results in parallel_map(self.files, chunks, jobs=jobs, min_items=min_chunks):
            yield from results


def seconds(y, sr) -> float:
    """Length of an in-memory signal in seconds; 0 for a rate or array that :func:`ser.audio.prepare` will refuse."""
    # bool is an int subclass: True is no rate; a ragged list or a scalar has no length.
    if isinstance(sr, (bool, np.bool_)) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        return 0.0
    try:
        shape = np.shape(y)
    except Exception:  # noqa: BLE001 - whatever it is, prepare() names the problem
        return 0.0
    return shape[0] / sr if shape else 0.0


def finite(x: np.ndarray, source: str) -> np.ndarray:
    """``x`` if every feature is finite, else the :class:`AudioError` naming ``source``."""
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{source}: the audio gives non-finite features (samples far outside [-1, 1]?)")
    return x


# --- training: many files, augmented copies, the cache ------------------------------

def _clip_task(args: tuple[str, Config, int, FeatureCache, str | None]) -> list[np.ndarray]:
    """Clean features plus ``copies`` augmented ones for one file (under ``condition``, if given)."""
    path, config, copies, cache, condition = args
    audio_mod.read_info(path)  # an unusable file raises the AudioError that names it, before hashing
    content = sha256_file(path)
    keys = [hashlib.sha256((content + settings_digest(config, c, condition)).encode()).hexdigest()
            for c in range(copies + 1)]
    out = [cache.get(k) for k in keys]
    if all(x is not None for x in out):
        return out  # type: ignore[return-value]
    y = load_clip(path, config)
    sr = config.audio.sample_rate
    if condition or copies:
        from ser.augment import apply_condition, augment_waveform  # the train extra (audiomentations)
    if condition:
        # A recording condition (robustness benchmark), the same for a file in every run.
        y = apply_condition(y, condition, sr=sr, rng=np.random.default_rng([int(content[:15], 16), 7]))
    for c, key in enumerate(keys):
        if out[c] is not None:
            continue
        if c == 0:
            x = featurize(y, config)
        else:
            # Seeded by run seed, file content and copy index: the same training clip
            # gets the same copies in every fold and every rerun.
            rng = np.random.default_rng([config.train.seed, int(content[:15], 16), c])
            x = featurize(augment_waveform(y, sr=sr, config=config.augment, rng=rng), config)
        cache.put(key, x)
        out[c] = x
    return out  # type: ignore[return-value]


def compute_features(paths: Sequence[str | os.PathLike], config: Config, *, copies: int = 0,
                     cache: FeatureCache | None = None, jobs: int | None = None, progress: bool = False,
                     condition: str | None = None, executor: Callable[..., Iterator] | None = None,
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Features of many files for training, from the cache where possible.

    Parameters
    ----------
    paths : sequence of path-like
        Audio files.
    config : Config
        Audio, feature and augmentation settings (and the seed for augmentation).
    copies : int
        Augmented copies to compute per file (0 = clean features only).
    cache : FeatureCache, optional
        Where to read/write entries; ``None`` computes everything in memory.
    jobs : int, optional
        Worker threads (default: all cores; 1 = in this thread).
    progress : bool
        Show a progress bar.
    condition : str, optional
        A recording condition of :data:`ser.augment.CONDITIONS` applied to every
        file before its features (for robustness tests).
    executor : callable, optional
        Runs the per-file work instead of :func:`parallel_map` on ``jobs`` threads:
        :func:`ser.batch.ray_executor` for Ray tasks (the same function per file, so
        the same features and cache entries).

    Returns
    -------
    clean : numpy.ndarray
        float32, shape ``(n_files, *feature_shape)``.
    augmented : numpy.ndarray or None
        float32, shape ``(n_files, copies, *feature_shape)``, or ``None``.

    Raises
    ------
    ser.errors.AudioError
        The first unusable file, by name.
    """
    from tqdm.auto import tqdm

    if not paths:
        raise ValueError("paths: expected at least one audio file")
    cache = cache if cache is not None else FeatureCache(None)
    tasks = [(str(p), config, copies, cache, condition) for p in paths]
    bar = dict(total=len(tasks), disable=not progress, desc="features", unit="clip")
    work = executor(_clip_task, tasks) if executor else parallel_map(_clip_task, tasks, jobs=jobs, min_items=16)
    results = list(tqdm(work, **bar))
    clean = np.stack([r[0] for r in results]).astype(np.float32)
    augmented = np.stack([np.stack(r[1:]) for r in results]).astype(np.float32) if copies else None
    return clean, augmented

