"""Spectral features: pure functions of arrays (no I/O, no globals)."""

from __future__ import annotations

import functools

import numpy as np

from ser.config import AudioConfig, FeatureConfig
from ser.encoders import WHISPER_BASE_WIDTH, WHISPER_HIDDEN_STATES


def mfcc(y: np.ndarray, *, sr: int, n_mfcc: int = 40, n_mels: int = 128, n_fft: int = 2048,
         hop_length: int = 512) -> np.ndarray:
    """MFCC of a mono signal, librosa defaults otherwise.

    The same computation as ``librosa.feature.mfcc`` (log-power mel spectrogram in
    dB re 1 with an 80 dB floor, then an orthonormal DCT-II over the mel axis), in
    plain numpy, so prediction needs no librosa import.

    Parameters
    ----------
    y : numpy.ndarray
        Mono signal, shape ``(n_samples,)``, or equally long signals, ``(n_clips, n_samples)``.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_mfcc, n_frames)`` (or ``(n_clips, n_mfcc, n_frames)``) with
        ``n_frames = 1 + n_samples // hop_length``.
    """
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc={n_mfcc}: expected at most n_mels={n_mels}")
    db = _power_db(_mel_power(y, sr=sr, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length), peak_ref=False)
    return np.matmul(db, _dct_matrix(n_mels, n_mfcc)).swapaxes(-1, -2).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _dct_matrix(n: int, n_out: int) -> np.ndarray:
    # Orthonormal DCT-II as a (n, n_out) matrix: x @ D == scipy.fft.dct(x, type=2, norm="ortho")[..., :n_out].
    k = np.arange(n_out)[None, :]
    m = np.arange(n)[:, None]
    d = np.cos(np.pi * k * (2 * m + 1) / (2 * n)) * np.sqrt(2.0 / n)
    d[:, 0] /= np.sqrt(2.0)
    d = d.astype(np.float32)
    d.flags.writeable = False
    return d


def logmel(y: np.ndarray, *, sr: int, n_mels: int = 128, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
    """Log-power mel spectrogram (dB relative to the clip's peak, floor -80 dB).

    The same computation as ``librosa.power_to_db(librosa.feature.melspectrogram(...),
    ref=np.max)`` (centred Hann frames, zero padding, Slaney mel filters), in plain
    numpy, so prediction needs no librosa import (about 1 s of start-up).

    Parameters
    ----------
    y : numpy.ndarray
        Mono signal, shape ``(n_samples,)``, or a batch of equally long signals,
        shape ``(n_clips, n_samples)``.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_mels, n_frames)`` (or ``(n_clips, n_mels, n_frames)``),
        ``n_frames = 1 + n_samples // hop_length``.
    """
    db = _power_db(_mel_power(y, sr=sr, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length), peak_ref=True)
    return np.swapaxes(db, -1, -2).astype(np.float32)


def _mel_power(y: np.ndarray, *, sr: int, n_mels: int, n_fft: int, hop_length: int) -> np.ndarray:
    # Mel power spectrogram, frames first: (..., n_frames, n_mels), float32.
    y = np.asarray(y, dtype=np.float32)
    if y.ndim not in (1, 2):
        raise ValueError(f"y: expected shape (n_samples,) or (n_clips, n_samples), got {y.shape}")
    pad = n_fft // 2
    padded = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(pad, pad)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop_length, :]
    spectrum = np.fft.rfft(frames * _hann(n_fft), axis=-1)  # (..., n_frames, 1 + n_fft // 2)
    power = np.square(spectrum.real) + np.square(spectrum.imag)
    return np.matmul(power.astype(np.float32, copy=False), _mel_filters_t(sr, n_fft, n_mels))


def _power_db(mel: np.ndarray, *, peak_ref: bool) -> np.ndarray:
    # librosa.power_to_db: dB re 1 (or re each clip's peak), amin 1e-10, floor 80 dB below the top.
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    if peak_ref:
        db = db - 10.0 * np.log10(np.maximum(mel.max(axis=(-2, -1), keepdims=True), 1e-10))
    return np.maximum(db, db.max(axis=(-2, -1), keepdims=True) - 80.0)


@functools.lru_cache(maxsize=8)
def _mel_filters_t(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    return np.ascontiguousarray(mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels).T)


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    # Periodic Hann window, as scipy.signal.get_window("hann", n_fft, fftbins=True).
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default).
    f = np.asarray(f, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep, f * 3.0 / 200.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    logstep = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), m * 200.0 / 3.0)


@functools.lru_cache(maxsize=8)
def mel_filters(*, sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-normalised mel filterbank from 0 Hz to ``sr / 2``, as ``librosa.filters.mel``.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_mels, 1 + n_fft // 2)`` (read-only: cached).
    """
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    # Area normalisation in float64 before rounding, as librosa does: the filters equal its own exactly.
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    weights.flags.writeable = False
    return weights


def normalize_clip(x: np.ndarray, *, eps: float = 1e-8) -> np.ndarray:
    """Z-normalise a whole feature matrix by its own mean and standard deviation.

    ``x`` is one matrix ``(n_features, n_frames)`` or a batch ``(n_clips, n_features, n_frames)``;
    each clip is normalised by its own statistics.
    """
    axes = (-2, -1)
    return ((x - x.mean(axis=axes, keepdims=True)) / (x.std(axis=axes, keepdims=True) + eps)).astype(np.float32)


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


#: Output of the whisper feature kind: every hidden state of Whisper-base, mean + std of its width.
WHISPER_SHAPE = (WHISPER_HIDDEN_STATES, 2 * WHISPER_BASE_WIDTH)


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
    """Features of one fixed-length clip (or a batch of them) as configured.

    Parameters
    ----------
    y : numpy.ndarray
        float32 mono signal, shape ``(n_samples,)``, already cut/padded; or a batch
        ``(n_clips, n_samples)`` (features ``(n_clips, n_features, n_frames)``).
    sr : int
        Its sample rate.
    config : FeatureConfig
        Which spectral features (``mfcc`` or ``logmel``) and how to normalise them;
        encoder features are computed by :func:`ser.frontend.featurize`.

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
