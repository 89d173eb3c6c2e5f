"""Training-time augmentation. Randomness comes only from an explicit ``np.random.Generator``."""

from __future__ import annotations

import random

import numpy as np

from ser.config import AugmentConfig


def augment_waveform(y: np.ndarray, *, sr: int, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One random augmentation of a waveform (audiomentations).

    Noise, pitch shift, time stretch (length kept), gain and circular shift, each
    applied with its configured probability.

    Parameters
    ----------
    y : numpy.ndarray
        float32 mono signal, shape ``(n_samples,)``.
    sr : int
        Sample rate.
    config : AugmentConfig
        Ranges and probabilities.
    rng : numpy.random.Generator
        Source of all randomness: the same generator state gives the same output.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``y``.
    """
    import audiomentations as am

    chain = am.Compose([
        am.AddGaussianNoise(min_amplitude=config.noise_min_amplitude, max_amplitude=config.noise_max_amplitude,
                            p=config.noise_p),
        am.PitchShift(min_semitones=-config.pitch_semitones, max_semitones=config.pitch_semitones,
                      p=config.pitch_p),
        am.TimeStretch(min_rate=config.stretch_min, max_rate=config.stretch_max, leave_length_unchanged=True,
                       p=config.stretch_p),
        am.Gain(min_gain_db=-config.gain_db, max_gain_db=config.gain_db, p=config.gain_p),
        am.Shift(min_shift=-config.shift_max, max_shift=config.shift_max, rollover=True, p=config.shift_p),
    ])
    # audiomentations draws from the global `random` and `np.random` states; seed
    # them from `rng` for this call only and put them back, so results depend on
    # `rng` alone and callers' global randomness is untouched.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        seed = int(rng.integers(2**32))
        random.seed(seed)
        np.random.seed(seed)
        out = chain(samples=np.ascontiguousarray(y, dtype=np.float32), sample_rate=sr)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return np.asarray(out, dtype=np.float32)


def mask_spectrogram(x: np.ndarray, *, config: AugmentConfig, rng: np.random.Generator,
                     fill: float = 0.0) -> np.ndarray:
    """SpecAugment-style time and frequency masking of a batch of feature images.

    Parameters
    ----------
    x : numpy.ndarray
        Shape ``(batch, n_features, n_frames[, channels])``; not modified.
    config : AugmentConfig
        Number and maximum width of the masks.
    rng : numpy.random.Generator
        Source of all randomness.
    fill : float
        Value written into masked cells (0 = the mean of z-normalised features).

    Returns
    -------
    numpy.ndarray
        A masked copy of ``x``.
    """
    out = np.array(x, copy=True)
    n_feat, n_time = out.shape[1], out.shape[2]
    for i in range(out.shape[0]):
        for _ in range(config.freq_masks):
            w = int(rng.integers(0, min(config.freq_mask_width, n_feat) + 1))
            f0 = int(rng.integers(0, n_feat - w + 1))
            out[i, f0:f0 + w] = fill
        for _ in range(config.time_masks):
            w = int(rng.integers(0, min(config.time_mask_width, n_time) + 1))
            t0 = int(rng.integers(0, n_time - w + 1))
            out[i, :, t0:t0 + w] = fill
    return out
