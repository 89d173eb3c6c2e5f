"""Spectral features: pure functions of arrays (no I/O, no globals)."""

from __future__ import annotations

import numpy as np

from ser.config import AudioConfig, FeatureConfig


def mfcc(y: np.ndarray, *, sr: int, n_mfcc: int = 40, n_mels: int = 128, n_fft: int = 2048,
         hop_length: int = 512) -> np.ndarray:
    """MFCC of a mono signal, librosa defaults otherwise.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_mfcc, n_frames)`` with ``n_frames = 1 + len(y) // hop_length``.
    """
    import librosa

    return librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc, n_mels=n_mels, n_fft=n_fft,
                                hop_length=hop_length).astype(np.float32)


def logmel(y: np.ndarray, *, sr: int, n_mels: int = 128, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
    """Log-power mel spectrogram (dB relative to the clip's peak, floor -80 dB).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_mels, n_frames)``.
    """
    import librosa

    power = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length)
    return librosa.power_to_db(power, ref=np.max).astype(np.float32)


def normalize_clip(x: np.ndarray, *, eps: float = 1e-8) -> np.ndarray:
    """Z-normalise a whole feature matrix by its own mean and standard deviation."""
    return ((x - x.mean()) / (x.std() + eps)).astype(np.float32)


def stats_pool(hidden: np.ndarray) -> np.ndarray:
    """Mean and standard deviation over time of each layer's hidden states.

    Parameters
    ----------
    hidden : numpy.ndarray
        Shape ``(n_layers, n_frames, dim)``.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_layers, 2 * dim)``: means then standard deviations.
    """
    return np.concatenate([hidden.mean(axis=1), hidden.std(axis=1)], axis=-1).astype(np.float32)


#: Output of the whisper feature kind: 7 hidden states of Whisper-base, mean + std of 512 dims.
WHISPER_SHAPE = (7, 1024)


def n_frames(audio: AudioConfig, features: FeatureConfig) -> int:
    """Number of frames of a fixed-length clip (librosa centres frames)."""
    return 1 + int(round(audio.duration * audio.sample_rate)) // features.hop_length


def feature_shape(audio: AudioConfig, features: FeatureConfig) -> tuple[int, int]:
    """``(n_features, n_frames)`` of one clip's features for these settings."""
    if features.kind == "whisper":
        return WHISPER_SHAPE
    rows = features.n_mfcc if features.kind == "mfcc" else features.n_mels
    return rows, n_frames(audio, features)


def extract(y: np.ndarray, *, sr: int, config: FeatureConfig) -> np.ndarray:
    """Features of one fixed-length clip as configured.

    Parameters
    ----------
    y : numpy.ndarray
        float32 mono signal, shape ``(n_samples,)``, already cut/padded.
    sr : int
        Its sample rate.
    config : FeatureConfig
        Which spectral features (``mfcc`` or ``logmel``) and how to normalise them;
        encoder features are computed by :func:`ser.cache.featurize`.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_features, n_frames)``.
    """
    if config.kind == "mfcc":
        x = mfcc(y, sr=sr, n_mfcc=config.n_mfcc, n_mels=config.n_mels, n_fft=config.n_fft,
                 hop_length=config.hop_length)
    else:
        x = logmel(y, sr=sr, n_mels=config.n_mels, n_fft=config.n_fft, hop_length=config.hop_length)
    return normalize_clip(x) if config.normalize == "clip" else x
