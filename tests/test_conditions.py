"""Recording conditions of the robustness benchmark: what each one does, measurably."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tone
from ser.augment import CONDITIONS, add_noise, apply_condition, codec, gain, pad_silence, reverberate, telephone
from ser.frontend import compute_features
from ser.config import preset

SR = 16000


@pytest.fixture()
def y():
    return tone("happy", sr=SR, seconds=2.0)


def test_noise_hits_the_requested_snr(y):
    """The added noise has the power the SNR asks for (within 0.3 dB)."""
    for snr in (20, 10, 5):
        noisy = add_noise(y, snr_db=snr, rng=np.random.default_rng(0))
        measured = 10 * np.log10(np.mean(y**2) / np.mean((noisy - y) ** 2))
        assert abs(measured - snr) < 0.3


def test_telephone_removes_low_and_high_frequencies(y):
    """Energy below 300 Hz and above 3.4 kHz is cut by the telephone band."""
    rng = np.random.default_rng(1)
    wide = rng.standard_normal(SR).astype(np.float32) * 0.1
    narrow = telephone(wide, sr=SR)
    spectrum_in, spectrum_out = np.abs(np.fft.rfft(wide)), np.abs(np.fft.rfft(narrow))
    freqs = np.fft.rfftfreq(wide.size, 1 / SR)
    for band in ((freqs < 150), (freqs > 4500)):
        assert spectrum_out[band].mean() < 0.05 * spectrum_in[band].mean()
    inside = (freqs > 600) & (freqs < 3000)
    assert spectrum_out[inside].mean() > 0.7 * spectrum_in[inside].mean()


def test_codecs_reverb_gain_and_silence(y):
    """Lossy round trips keep length and stay close; reverb smears; gain scales; silence pads."""
    for fmt in ("ogg", "mp3"):
        out = codec(y, sr=SR, fmt=fmt)
        assert out.shape == y.shape and 0 < np.mean(np.abs(out - y)) < 0.05
    wet = reverberate(y, sr=SR, rng=np.random.default_rng(0))
    assert wet.shape == y.shape and np.max(np.abs(wet)) == pytest.approx(np.max(np.abs(y)), rel=1e-4)
    assert np.corrcoef(wet, y)[0, 1] < 0.99
    np.testing.assert_allclose(gain(y, db=20), y * 10, rtol=1e-5)
    padded = pad_silence(y, sr=SR, seconds=1.0)
    assert padded.size == y.size + 2 * SR and not padded[:SR].any() and not padded[-SR:].any()


def test_every_condition_is_applied_and_reproducible(y):
    """Each named condition changes the clip; the same generator seed gives the same result."""
    for name in CONDITIONS:
        a = apply_condition(y, name, sr=SR, rng=np.random.default_rng(3))
        b = apply_condition(y, name, sr=SR, rng=np.random.default_rng(3))
        np.testing.assert_array_equal(a, b)
        assert a.shape != y.shape or not np.allclose(a, y)
    with pytest.raises(ValueError, match="condition='wind'"):
        apply_condition(y, "wind", sr=SR, rng=np.random.default_rng(0))


def test_features_under_a_condition_are_cached_separately(corpus, tmp_path):
    """compute_features(condition=...) degrades before featurising, with its own cache entries."""
    from ser.cache import FeatureCache

    paths = sorted(corpus.rglob("*.wav"))[:3]
    config = preset("tiny")
    cache = FeatureCache(tmp_path)
    clean, _ = compute_features(paths, config, cache=cache, jobs=1)
    noisy, _ = compute_features(paths, config, cache=cache, jobs=1, condition="snr5")
    again, _ = compute_features(paths, config, cache=cache, jobs=1, condition="snr5")
    assert not np.allclose(clean, noisy) and np.array_equal(noisy, again)
    assert len(list(tmp_path.rglob("*.npy"))) == 6


def test_channel_simulation_is_off_by_default_and_applied_when_asked(y):
    """Default augment settings leave the channel alone; p=1 for each condition changes the clip."""
    from ser.augment import simulate_channel
    from ser.config import AugmentConfig

    same = simulate_channel(y, sr=SR, config=AugmentConfig(), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(same, y)
    for name in ("snr_p", "reverb_p", "telephone_p", "codec_p"):
        changed = simulate_channel(y, sr=SR, config=AugmentConfig(**{name: 1.0}), rng=np.random.default_rng(0))
        assert changed.shape == y.shape and not np.allclose(changed, y), name


def test_trimming_and_level_normalisation(y):
    """trim_db removes added silence; peak_normalize makes +-20 dB copies identical."""
    from ser.frontend import condition_audio
    from ser.config import AudioConfig

    audio = AudioConfig(trim_db=40.0, peak_normalize=True)
    padded = pad_silence(y, sr=SR, seconds=1.0)
    assert condition_audio(padded, audio).size <= y.size + 2 * 2048  # trim works in 2048-sample frames
    loud, quiet = condition_audio(gain(y, db=20), audio), condition_audio(gain(y, db=-20), audio)
    np.testing.assert_allclose(loud, quiet, atol=1e-5)
    np.testing.assert_array_equal(condition_audio(y, AudioConfig()), y)
    assert preset("robust").audio.trim_db == 40.0
