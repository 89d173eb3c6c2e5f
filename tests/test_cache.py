"""Tests for ser.cache: cached feature extraction, corruption recovery, keys, augmentation, workers."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import ser.frontend
from ser.cache import FeatureCache, default_cache_dir, settings_digest
from ser.frontend import compute_features
from ser.config import preset
from ser.errors import AudioError
from ser.features import feature_shape

CFG = preset("tiny")  # 16 kHz, 1 s, 32 log-mel bands, hop 256
# Every waveform transform on, so no augmented copy can come out (nearly) equal to the clean clip.
AUG = CFG.override({f"augment.{k}_p": 1.0 for k in ("noise", "pitch", "stretch", "gain", "shift")})
SHAPE = feature_shape(CFG.audio, CFG.features)


def files(corpus: Path, n: int) -> list[Path]:
    return sorted(corpus.rglob("*.wav"))[:n]


def entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npy"))


def test_second_call_hits_the_cache(corpus, tmp_path, monkeypatch):
    """The second call returns identical arrays from the cache without extracting anything."""
    paths = files(corpus, 4)
    cache = FeatureCache(tmp_path / "cache")
    first, aug = compute_features(paths, CFG, cache=cache, jobs=1)
    assert aug is None
    assert first.shape == (4, *SHAPE) and first.dtype == np.float32 and np.all(np.isfinite(first))
    assert len(entries(cache.root)) == 4

    def boom(*args, **kwargs):
        raise AssertionError("extract() called on a cache hit")

    monkeypatch.setattr(ser.frontend, "extract", boom)
    second, _ = compute_features(paths, CFG, cache=cache, jobs=1)
    np.testing.assert_array_equal(first, second)
    assert len(entries(cache.root)) == 4


def test_cache_is_keyed_by_content(corpus, tmp_path, monkeypatch):
    """A renamed copy of a cached file is a hit (the key is the content, not the path)."""
    src = files(corpus, 1)[0]
    cache = FeatureCache(tmp_path / "cache")
    first, _ = compute_features([src], CFG, cache=cache, jobs=1)
    copy = shutil.copy(src, tmp_path / "renamed.wav")
    monkeypatch.setattr(ser.frontend, "extract", lambda *a, **k: pytest.fail("recomputed"))
    again, _ = compute_features([copy], CFG, cache=cache, jobs=1)
    np.testing.assert_array_equal(first, again)


def test_no_cache_matches_cache(corpus, tmp_path):
    """cache=None computes the same features and writes nothing."""
    paths = files(corpus, 3)
    cached, _ = compute_features(paths, CFG, cache=FeatureCache(tmp_path / "c"), jobs=1)
    plain, _ = compute_features(paths, CFG, cache=None, jobs=1)
    disabled, _ = compute_features(paths, CFG, cache=FeatureCache(None), jobs=1)
    np.testing.assert_array_equal(cached, plain)
    np.testing.assert_array_equal(cached, disabled)
    assert FeatureCache(None).get("ab" * 32) is None


@pytest.mark.parametrize("garbage", [b"garbage", "nan-array"])
def test_corrupt_entry_is_recomputed_with_a_warning(corpus, tmp_path, caplog, garbage):
    """A damaged entry (bytes or non-finite content) is logged, recomputed and rewritten; not fatal."""
    paths = files(corpus, 2)
    cache = FeatureCache(tmp_path / "cache")
    first, _ = compute_features(paths, CFG, cache=cache, jobs=1)
    victim = entries(cache.root)[0]
    if garbage == "nan-array":  # stored with a valid digest: caught by the content check
        cache.put(victim.stem, np.full(SHAPE, np.nan, np.float32))
    else:
        victim.write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="ser.cache"):
        second, _ = compute_features(paths, CFG, cache=cache, jobs=1)
    np.testing.assert_array_equal(first, second)
    assert "corrupt cache entry" in caplog.text and victim.name in caplog.text
    np.testing.assert_array_equal(np.load(victim), first[_keys(paths).index(victim.stem)])  # rewritten


def test_flipped_byte_is_detected_once_and_recomputed(corpus, tmp_path, caplog):
    """One flipped bit inside the stored numbers (still a finite float) is caught by the digest, not used."""
    paths = files(corpus, 2)
    cache = FeatureCache(tmp_path / "cache")
    first, _ = compute_features(paths, CFG, cache=cache, jobs=1)
    victim = entries(cache.root)[0]
    data = bytearray(victim.read_bytes())
    data[200] ^= 0x01  # inside the array data (the .npy header is 128 bytes): a low mantissa bit
    victim.write_bytes(bytes(data))
    damaged = np.load(victim)
    assert np.all(np.isfinite(damaged)) and not np.array_equal(damaged, first[_keys(paths).index(victim.stem)])
    with caplog.at_level(logging.WARNING, logger="ser.cache"):
        assert cache.get(victim.stem) is None
        assert not victim.exists()
        assert cache.get(victim.stem) is None  # gone: a miss, no second warning
        second, _ = compute_features(paths, CFG, cache=cache, jobs=1)
    assert caplog.text.count("corrupt cache entry (digest mismatch)") == 1 and victim.name in caplog.text
    np.testing.assert_array_equal(first, second)
    assert cache.get(victim.stem) is not None


def test_entry_without_digest_is_a_quiet_miss(corpus, tmp_path, caplog):
    """An entry of an older version (a plain .npy) is recomputed and rewritten with its digest, without a warning."""
    paths = files(corpus, 1)
    cache = FeatureCache(tmp_path / "cache")
    first, _ = compute_features(paths, CFG, cache=cache, jobs=1)
    victim = entries(cache.root)[0]
    np.save(victim, first[0])
    with caplog.at_level(logging.WARNING, logger="ser.cache"):
        assert cache.get(victim.stem) is None
        again, _ = compute_features(paths, CFG, cache=cache, jobs=1)
    assert caplog.text == ""
    np.testing.assert_array_equal(first, again)
    assert victim.read_bytes()[-32 - len(FeatureCache.TRAILER):-32] == FeatureCache.TRAILER  # rewritten
    np.testing.assert_array_equal(cache.get(victim.stem), first[0])


def _keys(paths: list[Path]) -> list[str]:
    """Clean-feature cache keys of ``paths`` under CFG (as computed by the cache)."""
    import hashlib

    from ser.utils import sha256_file

    return [hashlib.sha256((sha256_file(p) + settings_digest(CFG, 0)).encode()).hexdigest() for p in paths]


def test_feature_settings_change_the_key(corpus, tmp_path):
    """Audio/feature settings change the key; augmentation settings and seed change only copies' keys."""
    other = CFG.override({"features.n_mels": 40})
    assert settings_digest(CFG, 0) != settings_digest(other, 0)
    assert settings_digest(CFG, 0) != settings_digest(CFG.override({"audio.duration": 2.0}), 0)
    assert settings_digest(CFG, 0) == settings_digest(CFG.override({"augment.copies": 3, "train.seed": 1}), 0)
    assert settings_digest(CFG, 1) != settings_digest(CFG.override({"train.seed": 1}), 1)
    assert settings_digest(CFG, 1) != settings_digest(CFG.override({"augment.gain_db": 3.0}), 1)
    assert settings_digest(CFG, 1) != settings_digest(CFG, 2)

    paths = files(corpus, 2)
    cache = FeatureCache(tmp_path / "cache")
    a, _ = compute_features(paths, CFG, cache=cache, jobs=1)
    b, _ = compute_features(paths, other, cache=cache, jobs=1)
    assert a.shape == (2, 32, SHAPE[1]) and b.shape == (2, 40, SHAPE[1])
    assert len(entries(cache.root)) == 4


def test_augmented_copies(corpus, tmp_path):
    """copies=2 gives (n, 2, F, T) arrays that differ from the clean ones and from each other, reproducibly."""
    paths = files(corpus, 3)
    cache = FeatureCache(tmp_path / "cache")
    clean, aug = compute_features(paths, AUG, copies=2, cache=cache, jobs=1)
    assert clean.shape == (3, *SHAPE)
    assert aug.shape == (3, 2, *SHAPE) and aug.dtype == np.float32 and np.all(np.isfinite(aug))
    for i in range(3):
        assert not np.allclose(aug[i, 0], clean[i], atol=1e-3)
        assert not np.allclose(aug[i, 0], aug[i, 1], atol=1e-3)
    assert len(entries(cache.root)) == 9
    clean2, aug2 = compute_features(paths, AUG, copies=2, cache=None, jobs=1)
    np.testing.assert_array_equal(clean, clean2)
    np.testing.assert_array_equal(aug, aug2)
    _, aug3 = compute_features(paths, AUG.override({"train.seed": 7}), copies=2, cache=None, jobs=1)
    assert not np.allclose(aug, aug3, atol=1e-3)


def test_bad_file_raises_audio_error_naming_it(corpus, tmp_path):
    """An unreadable file among good ones raises AudioError naming that file."""
    bad = tmp_path / "broken.wav"
    bad.write_text("not audio at all\n" * 10)
    with pytest.raises(AudioError, match=re.escape(str(bad))):
        compute_features([*files(corpus, 2), bad], CFG, cache=FeatureCache(tmp_path / "cache"), jobs=1)


def test_missing_file_raises_audio_error(corpus, tmp_path):
    """compute_features documents AudioError for the first unusable file, a missing one included."""
    gone = tmp_path / "gone.wav"
    with pytest.raises(AudioError, match=re.escape(str(gone))):
        compute_features([*files(corpus, 1), gone], CFG, cache=None, jobs=1)


def test_parallel_equals_serial(corpus, cache_dir):
    """jobs=2 over >= 16 files (worker threads) gives exactly the jobs=1 result, in order."""
    paths = files(corpus, 16)
    serial, _ = compute_features(paths, CFG, cache=None, jobs=1)
    parallel, _ = compute_features(paths, CFG, cache=FeatureCache(cache_dir), jobs=2)
    np.testing.assert_array_equal(serial, parallel)
    assert len(entries(cache_dir)) >= 16


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("SER_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "ser" / "features"


@pytest.mark.parametrize("name", ["fast", "tiny", "seed_cnn"])
def test_featurize_many_equals_one_by_one(name):
    """Spectral features of a batch (prediction's fast path) equal those of each clip alone."""
    from ser.frontend import featurize, featurize_many

    config = preset(name)
    rng = np.random.default_rng(0)
    sr = config.audio.sample_rate
    # Different lengths (cut or padded to the model's duration) and levels.
    ys = [(rng.standard_normal(int(sr * s)) * g).astype(np.float32)
          for s, g in ((0.5, 0.1), (2.0, 1.0), (4.0, 0.01))]
    batch = featurize_many(ys, config)
    assert featurize_many([], config) == []
    for y, x in zip(ys, batch):
        np.testing.assert_allclose(x, featurize(y, config), rtol=1e-5, atol=1e-5)
