"""Feature extraction over many files, with an on-disk cache.

Each entry is keyed by the audio file's content (SHA-256), the audio and feature
settings, and — for augmented copies — the augmentation settings, seed and copy
index. A corrupt entry is recomputed, never fatal. Files are decoded and
featurised on worker threads so both cores are used.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ser import audio as audio_mod
from ser.augment import apply_condition, augment_waveform
from ser.config import AudioConfig, Config
from ser.features import extract, stats_pool
from ser.utils import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

#: Bump when the way features are computed changes, so old entries are ignored.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$SER_CACHE_DIR``, else ``~/.cache/ser/features``."""
    env = os.environ.get("SER_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ser" / "features"


_ENCODER_LOCK = threading.Lock()


def whisper_encoder(precision: str = "float32"):
    """The Whisper-base encoder at ``precision``, loaded once per process (checksum verified)."""
    with _ENCODER_LOCK:  # feature threads ask for it at once: load it once, not once per thread
        return _load_whisper_encoder(precision)


@functools.lru_cache(maxsize=2)
def _load_whisper_encoder(precision: str):
    from ser.encoders import WhisperEncoder

    return WhisperEncoder.from_dir(precision=precision)


@functools.lru_cache(maxsize=2)
def _encoder_digest() -> str:
    from ser.encoders import default_whisper_dir

    # The folder's SHA256SUMS names the weights; hashing 145 MB per process would be wasteful.
    sums = default_whisper_dir() / "SHA256SUMS"
    for line in sums.read_text().splitlines() if sums.exists() else []:
        if line.strip().endswith("model.bin"):
            return line.split()[0]
    return sha256_file(default_whisper_dir() / "model.bin")


def _changed(section) -> dict:
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section)
            if getattr(section, f.name) != f.default}


def settings_digest(config: Config, copy: int, condition: str | None = None) -> str:
    """Digest of everything besides the file content that determines an entry."""
    # Only settings that differ from their defaults: adding a new setting (at its
    # default) to the config then leaves every existing entry valid.
    parts = {"v": CACHE_VERSION, "audio": _changed(config.audio), "features": _changed(config.features)}
    if condition:
        parts["condition"] = condition
    if config.features.kind == "whisper":
        parts["encoder"] = _encoder_digest()
    if copy:
        parts.update(augment=_changed(config.augment), seed=config.train.seed, copy=copy)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class FeatureCache:
    """A folder of ``.npy`` feature arrays, each followed by its SHA-256; ``root=None`` disables caching."""

    #: Ends every entry: this marker, then the SHA-256 of the ``.npy`` bytes before it, so a
    #: flipped bit is caught instead of used. ``np.load`` ignores trailing bytes: an entry still
    #: opens as a plain ``.npy`` file.
    TRAILER = b"ser-sha256:"

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = Path(root) if root is not None else None

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached array, or ``None`` if absent, from an older version, or damaged.

        A damaged entry (a digest that does not match, unreadable or unexpected content) is
        logged as a warning and removed, so it is recomputed and warned about once.
        """
        if self.root is None:
            return None
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # a folder in its place, no permission: recompute, leave it be
            log.warning("%s: unreadable cache entry (%s); recomputing", path, exc.strerror or exc)
            return None
        try:
            x = self._unpack(data)
        except Exception as exc:  # noqa: BLE001 - any damage means: recompute
            log.warning("%s: corrupt cache entry (%s); recomputing", path, exc)
            path.unlink(missing_ok=True)
            return None
        if x is None:
            # Written before entries carried a digest: a miss, overwritten by put() (no warning
            # for each entry of an old cache).
            log.debug("%s: cache entry without a digest (older version); recomputing", path)
        return x

    def put(self, key: str, x: np.ndarray) -> None:
        """Store ``x`` with its digest, atomically (a crash never leaves a partial entry)."""
        if self.root is None:
            return
        import io

        buf = io.BytesIO()
        np.save(buf, np.asarray(x, dtype=np.float32), allow_pickle=False)
        payload = buf.getvalue()
        atomic_write_bytes(self._path(key), payload + self.TRAILER + hashlib.sha256(payload).digest())

    @classmethod
    def _unpack(cls, data: bytes) -> np.ndarray | None:
        """The array of an entry's bytes, checked against its digest; ``None`` for an older entry."""
        import io

        size = len(cls.TRAILER) + 32
        payload, marker, digest = data[:-size], data[-size:-32], data[-32:]
        if len(data) <= size or marker != cls.TRAILER:
            if data.startswith(b"\x93NUMPY"):
                return None
            raise ValueError("no digest")
        if hashlib.sha256(payload).digest() != digest:
            raise ValueError("digest mismatch")
        x = np.load(io.BytesIO(payload), allow_pickle=False)
        if x.dtype != np.float32 or x.ndim != 2 or not np.all(np.isfinite(x)):
            raise ValueError(f"unexpected content {x.dtype} {x.shape}")
        return x


def load_clip(path: str | os.PathLike, config: Config, *, max_duration: float | None = None) -> np.ndarray:
    """Decode the part of a file the model analyses: at most ``audio.duration`` seconds at its rate."""
    return decode_clip(path, config, max_duration=max_duration)[0]


def decode_clip(path: str | os.PathLike, config: Config, *,
                max_duration: float | None = None) -> tuple[np.ndarray, float]:
    """:func:`load_clip`, plus the whole file's length in seconds."""
    a = config.audio
    return audio_mod.decode(path, sr=a.sample_rate, duration=a.duration, min_duration=a.min_duration,
                            max_duration=max_duration)


def condition_audio(y: np.ndarray, audio: AudioConfig) -> np.ndarray:
    """Silence trimming and level normalisation as configured (both off by default)."""
    if audio.trim_db:
        trimmed = audio_mod.trim_silence(y, top_db=audio.trim_db)
        # Never trim a clip to almost nothing: keep the original if too little is left.
        y = trimmed if trimmed.size >= audio.min_duration * audio.sample_rate else y
    if audio.peak_normalize:
        y = y / max(float(np.max(np.abs(y))), 1e-8)
    return y.astype(np.float32, copy=False)


def featurize(y: np.ndarray, config: Config, *, encoder=None) -> np.ndarray:
    """Features of one decoded clip, as the model expects them (see :func:`featurize_many`).

    Returns
    -------
    numpy.ndarray
        float32, shape :func:`ser.features.feature_shape`.
    """
    return featurize_many([y], config, encoder=encoder)[0]


def featurize_many(ys: Sequence[np.ndarray], config: Config, *, encoder=None) -> list[np.ndarray]:
    """Features of decoded clips, as the model expects them.

    Spectral kinds cut or zero-pad each clip to exactly ``audio.duration`` and
    compute the batch at once (the same values as clip by clip); the whisper kind
    runs the encoder (``encoder``, default: :func:`whisper_encoder`) on each clip's
    own length. The one place that maps waveforms to model input, for training and
    inference alike.
    """
    a = config.audio
    size = int(round(a.duration * a.sample_rate))
    ys = [condition_audio(y, a) for y in ys]
    if not ys:
        return []
    if config.features.kind == "whisper":
        from ser.encoders import encode_waveform

        encoder = encoder or whisper_encoder(config.features.encoder_precision)
        return [stats_pool(encode_waveform(y[:size], encoder)) for y in ys]
    batch = np.stack([audio_mod.fix_length(y, size=size) for y in ys])
    return list(extract(batch, sr=a.sample_rate, config=config.features))


def _clip_task(args: tuple[str, dict, int, str | None, str | None]) -> list[np.ndarray]:
    """Worker: clean features plus ``copies`` augmented ones for one file (under ``condition``, if given)."""
    path, config_dict, copies, cache_root, condition = args
    config = Config.from_dict(config_dict)
    cache = FeatureCache(cache_root)
    audio_mod.read_info(path)  # an unusable file raises the AudioError that names it, before hashing
    content = sha256_file(path)
    keys = [hashlib.sha256((content + settings_digest(config, c, condition)).encode()).hexdigest()
            for c in range(copies + 1)]
    out = [cache.get(k) for k in keys]
    if all(x is not None for x in out):
        return out  # type: ignore[return-value]
    y = load_clip(path, config)
    sr = config.audio.sample_rate
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
                     condition: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Features of many files, from the cache where possible.

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
        Worker processes (default: all cores; 1 = in this process).
    progress : bool
        Show a progress bar.
    condition : str, optional
        A recording condition of :data:`ser.augment.CONDITIONS` applied to every
        file before its features (for robustness tests).

    Returns
    -------
    clean : numpy.ndarray
        float32, shape ``(n_files, n_features, n_frames)``.
    augmented : numpy.ndarray or None
        float32, shape ``(n_files, copies, n_features, n_frames)``, or ``None``.

    Raises
    ------
    ser.errors.AudioError
        The first unusable file, by name.
    """
    from tqdm.auto import tqdm

    if not paths:
        raise ValueError("paths: expected at least one audio file")
    root = str(cache.root) if cache is not None and cache.root is not None else None
    tasks = [(str(p), config.to_dict(), copies, root, condition) for p in paths]
    jobs = jobs or os.cpu_count() or 1
    bar = dict(total=len(tasks), disable=not progress, desc="features", unit="clip")
    if jobs == 1 or len(tasks) < 16:
        results = [_clip_task(t) for t in tqdm(tasks, **bar)]
    else:
        from threadpoolctl import threadpool_limits

        # Worker threads, as for prediction (ser.inference): decoding, the STFT and the encoder's
        # matrix products release the GIL, so threads fill the cores. Unlike a process pool they
        # die with the process (a killed `ser train` leaves no workers writing the cache), need
        # no `if __name__ == "__main__":` guard in a user's script, and share one encoder.
        # One BLAS thread each: the workers already fill the cores.
        with threadpool_limits(1), ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="ser-features") as pool:
            results = list(tqdm(pool.map(_clip_task, tasks), **bar))
    clean = np.stack([r[0] for r in results]).astype(np.float32)
    augmented = np.stack([np.stack(r[1:]) for r in results]).astype(np.float32) if copies else None
    return clean, augmented
