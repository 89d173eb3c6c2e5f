"""The on-disk feature cache: where entries live and how they are keyed.

Each entry is keyed by the audio file's content (SHA-256), the audio and feature
settings, and — for augmented copies — the augmentation settings, seed and copy
index. A corrupt entry is recomputed, never fatal. What is computed, and how,
is :mod:`ser.frontend`'s job.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from ser.config import Config
from ser.utils import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

#: Bump when the way features are computed changes, so old entries are ignored.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$SER_CACHE_DIR``, else ``~/.cache/ser/features``."""
    env = os.environ.get("SER_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ser" / "features"


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
        if config.features.encoder_graph not in ("none", "float32"):
            from ser.encoder_onnx import run_precision

            if run_precision()[0] == "float32":  # an int8 graph dequantized computes other features
                parts["encoder_run"] = "float32"
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

