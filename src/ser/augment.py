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
    out = np.asarray(out, dtype=np.float32)
    return simulate_channel(out, sr=sr, config=config, rng=rng)


def simulate_channel(y: np.ndarray, *, sr: int, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Random recording conditions for training: room, telephone line, codec, then noise.

    Each is applied with its probability in ``config`` (all 0 by default: a no-op).
    """
    if rng.random() < config.reverb_p:
        y = reverberate(y, sr=sr, rng=rng, rt60=float(rng.uniform(0.3, 0.9)))
    if rng.random() < config.telephone_p:
        y = telephone(y, sr=sr)
    if rng.random() < config.codec_p:
        y = codec(y, sr=sr, fmt="ogg" if rng.random() < 0.5 else "mp3")
    if rng.random() < config.snr_p:
        y = add_noise(y, snr_db=float(rng.uniform(config.snr_min_db, config.snr_max_db)), rng=rng)
    return y


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


# --- recording conditions -------------------------------------------------------
# Deterministic degradations of a clip, used by the robustness benchmark (and as
# training-time channel simulation). Each takes a float32 mono signal and returns one.

def add_noise(y: np.ndarray, *, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise at ``snr_db`` relative to the clip's mean power."""
    power = float(np.mean(y.astype(np.float64) ** 2)) or 1e-12
    noise = rng.standard_normal(y.shape) * np.sqrt(power / 10 ** (snr_db / 10))
    return (y + noise).astype(np.float32)


def reverberate(y: np.ndarray, *, sr: int, rng: np.random.Generator, rt60: float = 0.6,
                wet: float = 0.5) -> np.ndarray:
    """Convolve with a synthetic room impulse response (exponentially decaying noise, ``rt60`` s)."""
    from scipy.signal import fftconvolve

    n = int(rt60 * sr)
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    ir[0] = 0.0
    ir /= np.sqrt(np.sum(ir**2)) or 1.0
    wet_signal = fftconvolve(y, ir)[: y.size]
    out = (1 - wet) * y + wet * wet_signal
    peak = np.max(np.abs(out)) or 1.0
    return (out * (np.max(np.abs(y)) / peak)).astype(np.float32)


def telephone(y: np.ndarray, *, sr: int) -> np.ndarray:
    """Narrow-band telephone channel: 300-3400 Hz band-pass and a trip through 8 kHz."""
    import soxr
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [300, 3400], btype="bandpass", fs=sr, output="sos")
    narrow = sosfiltfilt(sos, y).astype(np.float32)
    return soxr.resample(soxr.resample(narrow, sr, 8000), 8000, sr)[: y.size].astype(np.float32)


def codec(y: np.ndarray, *, sr: int, fmt: str) -> np.ndarray:
    """Encode to a lossy format (``"ogg"`` Vorbis or ``"mp3"``) and decode again."""
    import io

    import soundfile as sf

    subtype = {"ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}[fmt]
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1, 1), sr, format=fmt.upper() if fmt == "ogg" else "MP3", subtype=subtype)
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32")
    out = out if out.ndim == 1 else out.mean(axis=1)
    # Encoders may add a few samples of delay/padding; keep the original length.
    return np.pad(out, (0, max(0, y.size - out.size)))[: y.size].astype(np.float32)


def gain(y: np.ndarray, *, db: float) -> np.ndarray:
    """Change the level by ``db`` decibels (in floating point: no clipping)."""
    return (y * 10 ** (db / 20)).astype(np.float32)


def pad_silence(y: np.ndarray, *, sr: int, seconds: float = 1.0) -> np.ndarray:
    """Add ``seconds`` of digital silence before and after the clip."""
    pad = np.zeros(int(seconds * sr), dtype=np.float32)
    return np.concatenate([pad, y.astype(np.float32), pad])


def random_channel(seed: int) -> dict:
    """Parameters of one random recording channel: EQ, band limit, codec and noise.

    The same ``seed`` always gives the same channel, so every clip of a speaker can
    pass through one microphone-and-line (the channel-shift benchmark).
    """
    rng = np.random.default_rng(seed)
    eq = [(float(f), float(g), float(q)) for f, g, q in zip(
        np.exp(rng.uniform(np.log(150), np.log(6000), 3)), rng.uniform(-9, 9, 3), rng.uniform(0.7, 2.0, 3))]
    return {"eq": eq, "high_pass_hz": float(rng.uniform(80, 400)), "low_pass_hz": float(rng.uniform(3400, 7500)),
            "codec": [None, "mp3", "ogg"][int(rng.integers(3))], "snr_db": float(rng.uniform(12, 30))}


def apply_channel(y: np.ndarray, channel: dict, *, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Pass a clip through a channel of :func:`random_channel` (``rng`` draws only the noise)."""
    from scipy.signal import butter, lfilter, sosfilt

    out = y.astype(np.float64)
    for freq, gain_db, q in channel["eq"]:
        # Peaking biquad (RBJ audio EQ cookbook).
        a_gain, w0 = 10 ** (gain_db / 40), 2 * np.pi * min(freq, 0.45 * sr) / sr
        alpha = np.sin(w0) / (2 * q)
        b = [1 + alpha * a_gain, -2 * np.cos(w0), 1 - alpha * a_gain]
        a = [1 + alpha / a_gain, -2 * np.cos(w0), 1 - alpha / a_gain]
        out = lfilter(b, a, out)
    band = [channel["high_pass_hz"], min(channel["low_pass_hz"], 0.45 * sr)]
    out = sosfilt(butter(4, band, btype="bandpass", fs=sr, output="sos"), out).astype(np.float32)
    if channel["codec"]:
        out = codec(out, sr=sr, fmt=channel["codec"])
    return add_noise(out, snr_db=channel["snr_db"], rng=rng)


#: The robustness benchmark's conditions, by name ("channelN": channel N of :func:`random_channel`).
CONDITIONS = ("snr20", "snr10", "snr5", "reverb", "telephone", "ogg", "mp3", "gain+20", "gain-20", "silence")


def apply_condition(y: np.ndarray, name: str, *, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Apply one named condition of :data:`CONDITIONS` to a clip."""
    if name.startswith("snr"):
        return add_noise(y, snr_db=float(name[3:]), rng=rng)
    if name == "reverb":
        return reverberate(y, sr=sr, rng=rng)
    if name == "telephone":
        return telephone(y, sr=sr)
    if name in ("ogg", "mp3"):
        return codec(y, sr=sr, fmt=name)
    if name.startswith("gain"):
        return gain(y, db=float(name[4:]))
    if name == "silence":
        return pad_silence(y, sr=sr)
    if name.startswith("channel") and name[7:].isdigit():
        return apply_channel(y, random_channel(int(name[7:])), sr=sr, rng=rng)
    raise ValueError(f"condition={name!r}: expected one of {', '.join(CONDITIONS)}")
