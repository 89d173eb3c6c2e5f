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
    if copy:
        parts.update(augment=_changed(config.augment), seed=config.train.seed, copy=copy)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class FeatureCache:
    """A folder of ``.npy`` feature arrays; ``root=None`` disables caching."""

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = Path(root) if root is not None else None

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached array, or ``None`` if absent or unreadable (then it is removed)."""
        if self.root is None:
            return None
        path = self._path(key)
        if not path.exists():
            return None
        try:
            x = np.load(path, allow_pickle=False)
            if x.dtype != np.float32 or x.ndim != 2 or not np.all(np.isfinite(x)):
                raise ValueError(f"unexpected content {x.dtype} {x.shape}")
            return x
        except Exception as exc:  # noqa: BLE001 - any damage means: recompute
            log.warning("%s: corrupt cache entry (%s); recomputing", path, exc)
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, x: np.ndarray) -> None:
        """Store ``x`` atomically (a crash never leaves a partial entry)."""
        if self.root is None:
            return
        import io

        buf = io.BytesIO()
        np.save(buf, np.asarray(x, dtype=np.float32), allow_pickle=False)
        atomic_write_bytes(self._path(key), buf.getvalue())
