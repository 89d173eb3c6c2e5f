"""Shared fixtures: tiny synthetic corpora named like RAVDESS, and paths to the shared data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, settings

from ser.labels import EMOTIONS

SHARED = Path(__file__).resolve().parents[2] / "shared"
RAVDESS = SHARED / "data" / "ravdess"

# Property-based tests: 2000 examples per boundary (SER_HYPOTHESIS_EXAMPLES to change it), derandomised
# so CI is reproducible, no example database written into the checkout, no per-example deadline
# (a busy 2-core machine makes single examples slow; each test bounds its own work instead).
settings.register_profile("ser", max_examples=int(os.environ.get("SER_HYPOTHESIS_EXAMPLES", "2000")),
                          derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("ser")

# Keep TensorFlow quiet and on one thread pool per test process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tone(emotion: str, *, sr: int = 16000, seconds: float = 1.2, seed: int = 0) -> np.ndarray:
    """A clip whose pitch and rhythm depend on the emotion, so a tiny model can learn it."""
    rng = np.random.default_rng(seed)
    k = EMOTIONS.index(emotion)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 150.0 * 2 ** (k / 4) * (1 + 0.02 * rng.standard_normal())
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (1 + k) * t)
    y = 0.3 * envelope * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def write_corpus(root: Path, *, actors=(1, 2, 3, 4), emotions=EMOTIONS, per_class: int = 2, sr: int = 16000,
                 ext: str = "wav") -> list[Path]:
    """Write a RAVDESS-named synthetic corpus under ``root/Actor_XX``; returns the files."""
    files = []
    for actor in actors:
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for emotion in emotions:
            code = EMOTIONS.index(emotion) + 1
            for rep in range(per_class):
                intensity = 1 if code == 1 else 1 + rep % 2
                name = f"03-01-{code:02d}-{intensity:02d}-{1 + rep // 2 % 2:02d}-{1 + rep % 2:02d}-{actor:02d}.{ext}"
                path = folder / name
                sf.write(path, tone(emotion, sr=sr, seed=actor * 100 + code * 10 + rep), sr)
                files.append(path)
    return files


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """8 emotions x 2 clips x 6 actors (1, 4, 10, 11, 12, 20: test actors of si6 folds 1 and 2 only)."""
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, actors=(1, 4, 10, 11, 12, 20))
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture()
def ravdess() -> Path:
    if not RAVDESS.is_dir():
        pytest.skip("shared RAVDESS copy not found at ../shared/data/ravdess")
    return RAVDESS


@pytest.fixture()
def tampered(tmp_path):
    """``tampered(folder, name)``: a copy of a model folder with a few bytes of file ``name`` flipped."""

    def make(folder: Path, name: str, *, offset: int = 100) -> Path:
        copy = tmp_path / f"tampered-{name}"
        shutil.copytree(folder, copy)
        with open(copy / name, "r+b") as fh:
            fh.seek(offset)
            original = fh.read(4)
            fh.seek(offset)
            fh.write(bytes(b ^ 0xFF for b in original))  # always a change
        return copy

    return make


@pytest.fixture(scope="session")
def trained(corpus, cache_dir, tmp_path_factory) -> Path:
    """A model folder as `ser train` writes it (Keras and ONNX networks): the tiny preset, 8 epochs."""
    from ser.cache import FeatureCache
    from ser.config import preset
    from ser.dataset import load_dataset
    from ser.training import train_recognizer

    clips = load_dataset(corpus)
    config = preset("tiny").override({"train.epochs": 8})
    rec, history = train_recognizer(clips, config, cache=FeatureCache(cache_dir), jobs=1,
                                    metadata={"training": {"clips": len(clips)}})
    return rec.save(tmp_path_factory.mktemp("models") / "tiny", history=history)
