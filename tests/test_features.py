"""Tests for ser.features: shapes match feature_shape(), values are finite, MFCC is librosa's."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
from conftest import tone

from ser.audio import fix_length
from ser.config import AudioConfig, FeatureConfig, preset
from ser.features import extract, feature_shape, logmel, mfcc, n_frames, normalize_clip

CONFIGS = [
    (AudioConfig(sample_rate=16000, duration=1.0), FeatureConfig(kind="mfcc", n_mfcc=13, n_fft=512, hop_length=160)),
    (AudioConfig(sample_rate=22050, duration=1.5), FeatureConfig(kind="mfcc", n_mfcc=40)),
    (AudioConfig(sample_rate=16000, duration=1.0), FeatureConfig(kind="logmel", n_mels=32, n_fft=512, hop_length=256)),
    (AudioConfig(sample_rate=8000, duration=0.5), FeatureConfig(kind="logmel", n_mels=64, n_fft=256, hop_length=128,
                                                                normalize="none")),
]


def clip_for(audio: AudioConfig, emotion: str = "happy") -> np.ndarray:
    y = tone(emotion, sr=audio.sample_rate, seconds=min(audio.duration, 1.0))
    return fix_length(y, size=int(round(audio.duration * audio.sample_rate)))


@pytest.mark.parametrize(("audio", "features"), CONFIGS,
                         ids=["mfcc13-16k", "mfcc40-22k", "logmel32-16k", "logmel64-8k-raw"])
def test_extract_shape_matches_feature_shape(audio, features):
    """extract() returns float32, finite, of exactly feature_shape() for each config (padded clips too)."""
    x = extract(clip_for(audio), sr=audio.sample_rate, config=features)
    assert x.shape == feature_shape(audio, features)
    assert x.dtype == np.float32 and np.all(np.isfinite(x))


def test_seed_cnn_shape():
    """The seed_cnn recipe (22050 Hz, 3 s, 40 MFCC, hop 512) gives (40, 130)."""
    cfg = preset("seed_cnn")
    assert feature_shape(cfg.audio, cfg.features) == (40, 130)
    assert n_frames(cfg.audio, cfg.features) == 130
    y = fix_length(tone("sad", sr=22050, seconds=3.0), size=3 * 22050)
    x = extract(y, sr=22050, config=cfg.features)
    assert x.shape == (40, 130) and x.dtype == np.float32 and np.all(np.isfinite(x))


@pytest.mark.parametrize("kind", ["mfcc", "logmel"])
def test_clip_normalisation(kind):
    """normalize='clip' gives each clip's matrix mean 0 and std 1; 'none' does not."""
    y = tone("angry", sr=16000, seconds=1.0)
    x = extract(y, sr=16000, config=FeatureConfig(kind=kind, n_mels=40, n_fft=512, hop_length=256))
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    raw = extract(y, sr=16000, config=FeatureConfig(kind=kind, n_mels=40, n_fft=512, hop_length=256,
                                                    normalize="none"))
    assert abs(float(raw.mean())) > 1 or abs(float(raw.std()) - 1) > 0.1
    np.testing.assert_allclose(x, (raw - raw.mean()) / raw.std(), rtol=1e-4, atol=1e-4)


def test_normalize_constant_matrix_is_finite():
    """A constant matrix (e.g. features of a padded silence) normalises to zeros, not NaN."""
    out = normalize_clip(np.full((4, 5), -80.0, np.float32))
    assert out.dtype == np.float32 and np.all(out == 0)


def test_mfcc_equals_librosa():
    """mfcc() is librosa.feature.mfcc with the same settings."""
    y = tone("calm", sr=22050, seconds=1.0)
    ours = mfcc(y, sr=22050, n_mfcc=20, n_mels=64, n_fft=1024, hop_length=256)
    ref = librosa.feature.mfcc(y=y, sr=22050, n_mfcc=20, n_mels=64, n_fft=1024, hop_length=256)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)
    # extract without normalisation is the same matrix
    cfg = FeatureConfig(kind="mfcc", n_mfcc=20, n_mels=64, n_fft=1024, hop_length=256, normalize="none")
    np.testing.assert_array_equal(extract(y, sr=22050, config=cfg), ours)


def test_mfcc_defaults_are_librosa_defaults():
    """With default arguments mfcc() matches librosa.feature.mfcc(n_mfcc=40)."""
    y = tone("sad", sr=22050, seconds=1.0)
    np.testing.assert_allclose(mfcc(y, sr=22050), librosa.feature.mfcc(y=y, sr=22050, n_mfcc=40),
                               rtol=1e-5, atol=1e-4)


def test_logmel_is_db_relative_to_peak():
    """logmel() peaks at 0 dB with an 80 dB floor, and is librosa's mel power in dB."""
    y = tone("fearful", sr=16000, seconds=1.0)
    x = logmel(y, sr=16000, n_mels=32, n_fft=512, hop_length=256)
    assert x.shape == (32, 1 + 16000 // 256)
    assert x.max() == pytest.approx(0.0, abs=1e-5) and x.min() >= -80.0 - 1e-4
    power = librosa.feature.melspectrogram(y=y, sr=16000, n_mels=32, n_fft=512, hop_length=256)
    np.testing.assert_allclose(x, librosa.power_to_db(power, ref=np.max), atol=1e-4)


def test_extract_is_pure():
    """extract() does not modify its input and gives the same output twice."""
    y = tone("disgust", sr=16000, seconds=1.0)
    before = y.copy()
    cfg = FeatureConfig(kind="mfcc", n_mels=40, n_fft=512, hop_length=256)
    a = extract(y, sr=16000, config=cfg)
    b = extract(y, sr=16000, config=cfg)
    np.testing.assert_array_equal(y, before)
    np.testing.assert_array_equal(a, b)


def test_different_emotions_give_different_features():
    """Features carry the signal: two different clips do not give the same matrix."""
    cfg = FeatureConfig(kind="logmel", n_mels=32, n_fft=512, hop_length=256)
    a = extract(tone("neutral", seconds=1.0), sr=16000, config=cfg)
    b = extract(tone("surprised", seconds=1.0), sr=16000, config=cfg)
    assert a.shape == b.shape and not np.allclose(a, b, atol=0.1)
