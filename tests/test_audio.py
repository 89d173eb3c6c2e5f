"""Tests for ser.audio: decoding any file to float32 mono at the model rate, and every refusal."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import soundfile as sf

from ser.audio import SILENCE_PEAK, fix_length, load, prepare
from ser.errors import AudioError


def sine(sr: int, seconds: float, *, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path, y, sr, **kw):
    try:
        sf.write(path, y, sr, **kw)
    except Exception as exc:  # noqa: BLE001 - e.g. libsndfile built without MP3 support
        pytest.skip(f"soundfile cannot write {path.suffix}: {exc}")
    return path


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
@pytest.mark.parametrize("sr_in", [8000, 44100, 48000])
def test_load_formats_and_rates(tmp_path, ext, sr_in):
    """Every format and rate decodes to float32 mono at the target rate with the resampled length."""
    path = write(tmp_path / f"clip.{ext}", sine(sr_in, 1.0), sr_in)
    y = load(path, sr=16000)
    assert y.dtype == np.float32 and y.ndim == 1
    tolerance = 0 if ext in ("wav", "flac") else 0.01 * 16000  # lossy codecs may pad a frame
    assert abs(y.size - 16000) <= tolerance
    assert np.all(np.isfinite(y)) and 0.2 < np.max(np.abs(y)) < 0.45


def test_stereo_becomes_mono_by_averaging(tmp_path):
    """A stereo file is averaged to mono (no resampling when the rates match)."""
    left = sine(16000, 0.5)
    right = np.zeros_like(left)
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    y = load(path, sr=16000)
    assert y.shape == (8000,)
    np.testing.assert_allclose(y, left / 2, atol=1e-7)


def test_duration_reads_only_the_start(tmp_path):
    """duration= keeps only the first seconds, at the file rate or after resampling."""
    y_in = np.concatenate([sine(48000, 1.0, amp=0.2), sine(48000, 2.0, amp=0.6)])
    path = write(tmp_path / "long.wav", y_in, 48000, subtype="FLOAT")
    assert load(path, sr=48000, duration=1.0).shape == (48000,)
    y = load(path, sr=16000, duration=1.0)
    assert y.shape == (16000,)
    assert np.max(np.abs(y)) < 0.25  # only the quiet first second was read
    assert load(path, sr=16000, duration=10.0).shape == (48000,)  # longer than the file: whole file


def test_load_missing_file(tmp_path):
    with pytest.raises(AudioError, match=re.escape(f"{tmp_path / 'nope.wav'}: file not found")):
        load(tmp_path / "nope.wav", sr=16000)


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(AudioError, match=r"empty\.wav: empty file"):
        load(path, sr=16000)


def test_load_folder(tmp_path):
    with pytest.raises(AudioError, match=r"is a folder, not an audio file"):
        load(tmp_path, sr=16000)


def test_load_text_file(tmp_path):
    """A text file (even named .wav) is 'not a readable audio file', as an AudioError (and ValueError)."""
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples\n" * 20)
    with pytest.raises(AudioError, match=r"notes\.wav: not a readable audio file \("):
        load(path, sr=16000)
    with pytest.raises(ValueError):
        load(path, sr=16000)


def test_load_truncated_wav(tmp_path):
    """A WAV cut in half (interrupted copy) is refused instead of silently shortened."""
    path = write(tmp_path / "cut.wav", sine(16000, 2.0), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"cut\.wav: truncated file"):
        load(path, sr=16000)


def test_load_silent_clip(tmp_path):
    path = write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioError, match=r"silence\.wav: silent"):
        load(path, sr=16000)


def test_load_too_short(tmp_path):
    path = write(tmp_path / "blip.wav", sine(16000, 0.05), 16000)
    with pytest.raises(AudioError, match=r"blip\.wav: 0\.050 s is shorter than the 0\.1 s minimum"):
        load(path, sr=16000)
    assert load(path, sr=16000, min_duration=0.01).shape == (800,)


def test_load_max_duration(tmp_path):
    """max_duration refuses longer files; without it they load."""
    path = write(tmp_path / "five.wav", sine(8000, 5.0), 8000)
    with pytest.raises(AudioError, match=r"five\.wav: 5\.0 s is longer than the 2 s limit"):
        load(path, sr=8000, max_duration=2)
    assert load(path, sr=8000, max_duration=10).shape == (40000,)


def test_hour_long_file_is_refused_before_decoding(tmp_path, monkeypatch):
    """A genuine 1-hour file is refused from its header: quickly, and without reading samples."""
    path = tmp_path / "hour.wav"
    sf.write(path, np.zeros(3600 * 1000, np.int16), 1000, subtype="PCM_16")

    def no_decoding(*args, **kwargs):
        raise AssertionError("the samples were decoded")

    monkeypatch.setattr(sf, "read", no_decoding)
    start = time.perf_counter()
    with pytest.raises(AudioError, match=r"hour\.wav: 3600\.0 s is longer than the 60 s limit"):
        load(path, sr=16000, max_duration=60)
    assert time.perf_counter() - start < 1.0


# --- prepare() on arrays -----------------------------------------------------

def test_prepare_mono_and_stereo():
    """(n,) and (n, channels) arrays become float32 mono; resampling gives the right length."""
    y = sine(8000, 1.0).astype(np.float64)
    out = prepare(y, 8000, sr=8000)
    assert out.dtype == np.float32 and out.shape == (8000,)
    stereo = np.stack([y, 0.5 * y], axis=1)
    np.testing.assert_allclose(prepare(stereo, 8000, sr=8000), 0.75 * y, atol=1e-6)
    assert prepare(y, 8000, sr=22050).shape == (22050,)
    assert prepare(y, np.int64(8000), sr=16000).shape == (16000,)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_prepare_non_finite(bad):
    y = sine(16000, 0.5)
    y[100] = bad
    with pytest.raises(AudioError, match=r"clip: contains NaN or infinite samples"):
        prepare(y, 16000, sr=16000, name="clip")


@pytest.mark.parametrize("sr_in", [0, -16000, 16000.0, "16000", None])
def test_prepare_bad_sample_rate(sr_in):
    with pytest.raises(AudioError, match=rf"sample_rate={re.escape(repr(sr_in))}: expected a positive integer"):
        prepare(sine(16000, 0.5), sr_in, sr=16000)


@pytest.mark.parametrize("shape", [(2, 3, 4000), ()])
def test_prepare_bad_shape(shape):
    with pytest.raises(AudioError, match=r"expected shape \(n_samples,\) or \(n_samples, n_channels\)"):
        prepare(np.ones(shape, np.float32), 16000, sr=16000)


def test_prepare_empty_short_and_silent():
    with pytest.raises(AudioError, match=r"no audio samples"):
        prepare(np.zeros(0, np.float32), 16000, sr=16000)
    with pytest.raises(AudioError, match=r"shorter than the 0\.5 s minimum"):
        prepare(sine(16000, 0.4), 16000, sr=16000, min_duration=0.5)
    with pytest.raises(AudioError, match=r"silent"):
        prepare(np.full(16000, SILENCE_PEAK / 2, np.float32), 16000, sr=16000)


# --- fix_length --------------------------------------------------------------

def test_fix_length_pads_with_zeros_at_the_end():
    y = np.arange(1, 11, dtype=np.float32)
    out = fix_length(y, size=15)
    assert out.shape == (15,) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:10], y)
    np.testing.assert_array_equal(out[10:], 0)


def test_fix_length_cuts_the_end():
    y = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(fix_length(y, size=4), [1, 2, 3, 4])
    np.testing.assert_array_equal(fix_length(y, size=10), y)


def test_silent_start_of_a_sounding_file_is_accepted(tmp_path):
    """Only a file silent throughout is refused; a silent analysed window of a real clip is not."""
    from conftest import tone

    y = np.concatenate([np.zeros(16000 * 2, np.float32), tone("happy", seconds=1.0)])
    sf.write(tmp_path / "late.wav", y, 16000)
    out = load(tmp_path / "late.wav", sr=16000, duration=1.0)
    assert out.shape == (16000,) and not out.any()
    sf.write(tmp_path / "silent.wav", np.zeros(16000 * 3, np.float32), 16000)
    with pytest.raises(AudioError, match="silent"):
        load(tmp_path / "silent.wav", sr=16000, duration=1.0)


def test_trim_silence_matches_librosa(ravdess):
    """Our trim is librosa.effects.trim's computation exactly (on real clips, loud and quiet)."""
    import librosa

    from ser.audio import trim_silence

    for path in sorted((ravdess / "Actor_05").glob("*.flac"))[:6]:
        y = load(path, sr=16000)
        for signal in (y, 0.01 * y):
            expected, _ = librosa.effects.trim(signal, top_db=40.0)
            np.testing.assert_array_equal(trim_silence(signal, top_db=40.0), expected)
    assert trim_silence(np.zeros(4000, np.float32), top_db=40.0).size == 4000  # flat: nothing quieter than peak
