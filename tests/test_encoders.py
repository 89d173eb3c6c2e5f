"""The numpy Whisper encoder: model.bin reader, log-mel features, all-layer encoder, CTranslate2 parity."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.encoders import (
    WhisperEncoder,
    default_whisper_dir,
    encode_waveform,
    read_ctranslate2_variables,
    whisper_log_mel,
)
from ser.errors import ModelError

WHISPER_DIR = Path(__file__).resolve().parents[2] / "shared" / "models" / "whisper-base"
RAVDESS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess"
# Three mono Actor_01 clips of different emotions (two Actor_01 files are stereo; these are not).
CLIPS = ["03-01-01-01-01-01-01.flac", "03-01-05-02-01-01-01.flac", "03-01-08-02-02-01-01.flac"]

needs_model = pytest.mark.skipif(not (WHISPER_DIR / "model.bin").is_file(),
                                 reason=f"Whisper-base CTranslate2 model not found at {WHISPER_DIR}")


def _clip(name: str) -> np.ndarray:
    path = RAVDESS / "Actor_01" / name
    if not path.is_file():
        pytest.skip(f"RAVDESS clip {path} not found")
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == 16000
    return y.mean(axis=1)


def _speechlike(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    y = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (y + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> WhisperEncoder:
    if not (WHISPER_DIR / "model.bin").is_file():
        pytest.skip(f"Whisper-base CTranslate2 model not found at {WHISPER_DIR}")
    return WhisperEncoder.from_dir(WHISPER_DIR)


# --------------------------------------------------------------------------- log-mel


def test_log_mel_shape_even_frames_and_range():
    y = _speechlike(1.0)[:16000 - 170]  # 98.9 frames -> 98
    mel = whisper_log_mel(y)
    assert mel.dtype == np.float32 and mel.shape == (80, 98)
    assert np.isfinite(mel).all()
    assert -1.5 <= mel.min() and mel.max() <= 2.0
    # The clamp to max - 8 (in log10 units) is exactly 2 after the / 4 scaling.
    assert mel.max() - mel.min() <= 2.0 + 1e-6
    assert whisper_log_mel(y[:16000 - 170 - 160]).shape == (80, 96)  # 97.9 -> 96


def test_log_mel_pads_or_cuts_to_n_frames():
    y = _speechlike(1.0)
    assert whisper_log_mel(y, n_frames=300).shape == (80, 300)
    assert whisper_log_mel(y, n_frames=3000).shape == (80, 3000)
    short = whisper_log_mel(y, n_frames=50)
    assert short.shape == (80, 50)
    # Cutting to n_frames is cutting the waveform to n_frames * 160 samples (Whisper's pad_or_trim).
    np.testing.assert_array_equal(short, whisper_log_mel(y[:50 * 160]))


def test_log_mel_matches_librosa_stft():
    """Independent check of framing, window and centring against librosa's periodic-Hann STFT."""
    import librosa

    y = _speechlike(0.5, seed=3)
    power = np.abs(librosa.stft(y.astype(np.float64), n_fft=400, hop_length=160, window="hann",
                                center=True, pad_mode="reflect"))[:, :-1] ** 2
    log_spec = np.log10(np.maximum(librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ power, 1e-10))
    expected = (np.maximum(log_spec, log_spec.max() - 8) + 4) / 4
    np.testing.assert_allclose(whisper_log_mel(y), expected, atol=1e-5)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 1600), np.float32), "1-D"),
    (np.zeros(0, np.float32), "empty"),
    (np.array([0.0, np.nan] * 400, np.float32), "NaN"),
    (np.zeros(300, np.float32), "samples"),
    (np.array(["a"] * 400), "real-valued"),
])
def test_log_mel_rejects_bad_waveforms(bad, match):
    with pytest.raises(ValueError, match=match):
        whisper_log_mel(bad)


@pytest.mark.parametrize("n_frames", [0, 1, 2.5, True, "100"])
def test_log_mel_rejects_bad_n_frames(n_frames):
    with pytest.raises(ValueError, match="n_frames"):
        whisper_log_mel(_speechlike(0.2), n_frames=n_frames)


# --------------------------------------------------------------------------- model.bin reader


@needs_model
def test_reader_keeps_only_the_encoder_as_float32():
    variables = read_ctranslate2_variables(WHISPER_DIR / "model.bin")
    assert all(name.startswith("encoder/") for name in variables)
    assert variables["encoder/conv1/weight"].shape == (512, 80, 3)
    assert variables["encoder/conv1/weight"].dtype == np.float32
    assert variables["encoder/position_encodings/encodings"].shape == (1500, 512)
    assert int(variables["encoder/num_heads"]) == 8
    qkv_bias = variables["encoder/layer_0/self_attention/linear_0/bias"]
    assert qkv_bias.shape == (1536,)
    assert not qkv_bias[512:1024].any()  # Whisper's key projection has no bias: stored as zeros


def _tiny_model_bin(path: Path, *, version: int = 6) -> Path:
    """A hand-written model.bin (the documented layout) with one alias into another scope."""

    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    def variable(name: str, array: np.ndarray, dtype_id: int) -> bytes:
        out = string(name) + struct.pack("<B", array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape)
        return out + struct.pack("<BI", dtype_id, array.nbytes) + array.tobytes()

    half = np.arange(6, dtype=np.float16).reshape(2, 3)
    data = struct.pack("<I", version) + string("WhisperSpec") + struct.pack("<II", 3, 3)
    data += variable("decoder/shared", np.full(4, 7, np.float32), 0)
    data += variable("encoder/a", half, 4)
    data += variable("encoder/n", np.array(8, np.int16), 2)
    data += struct.pack("<I", 1) + string("encoder/alias") + string("decoder/shared")
    path.write_bytes(data)
    return path


def test_reader_parses_the_documented_layout(tmp_path):
    variables = read_ctranslate2_variables(_tiny_model_bin(tmp_path / "model.bin"))
    assert list(variables) == ["encoder/a", "encoder/n", "encoder/alias"]
    np.testing.assert_array_equal(variables["encoder/a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert variables["encoder/a"].dtype == np.float32
    assert variables["encoder/n"].dtype == np.int16 and variables["encoder/n"] == 8
    np.testing.assert_array_equal(variables["encoder/alias"], np.full(4, 7, np.float32))
    assert len(read_ctranslate2_variables(tmp_path / "model.bin", prefix="")) == 4


def test_reader_rejects_truncated_garbage_and_old_versions(tmp_path):
    good = _tiny_model_bin(tmp_path / "good.bin").read_bytes()
    cases = {
        "truncated.bin": good[:-20],
        "garbage.bin": np.random.default_rng(0).bytes(4096),
        "empty.bin": b"",
        "v5.bin": _tiny_model_bin(tmp_path / "v5src.bin", version=5).read_bytes(),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelError, match=name) as info:
            read_ctranslate2_variables(tmp_path / name)
        assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="missing.bin"):
        read_ctranslate2_variables(tmp_path / "missing.bin")


@needs_model
def test_from_dir_rejects_truncated_model_and_sha_mismatch(tmp_path):
    # A truncated copy of the real file (its first 105 MB: decoder complete, encoder cut short).
    with open(WHISPER_DIR / "model.bin", "rb") as src:
        (tmp_path / "model.bin").write_bytes(src.read(105_000_000))
    with pytest.raises(ModelError, match="truncated"):
        WhisperEncoder.from_dir(tmp_path)
    # Same bytes, now with a SHA256SUMS that lists the real file's digest.
    shutil.copy(WHISPER_DIR / "SHA256SUMS", tmp_path / "SHA256SUMS")
    with pytest.raises(ModelError, match="SHA-256"):
        WhisperEncoder.from_dir(tmp_path)
    with pytest.raises(ModelError, match="no CTranslate2 Whisper model"):
        WhisperEncoder.from_dir(tmp_path / "nowhere")


def test_default_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("SER_WHISPER_DIR", str(tmp_path))
    assert default_whisper_dir() == tmp_path
    monkeypatch.delenv("SER_WHISPER_DIR")
    assert default_whisper_dir() == WHISPER_DIR


# --------------------------------------------------------------------------- encoder


def test_encoder_states_shapes_dtypes_finite(encoder):
    assert encoder.n_layers == 7 and encoder.dim == 512
    states = encoder(whisper_log_mel(_speechlike(0.8)))
    assert states.shape == (7, 1, 40, 512) and states.dtype == np.float32
    assert np.isfinite(states).all()
    # Each block changes the representation; the final LayerNorm leaves ~zero mean, unit variance.
    assert all(not np.allclose(states[i], states[i + 1]) for i in range(6))
    np.testing.assert_allclose(states[-1, 0].mean(axis=-1), encoder._final_norm[1].mean(), atol=0.05)


def test_batch_equals_single_calls(encoder):
    mels = np.stack([whisper_log_mel(_speechlike(0.6, seed=s), n_frames=60) for s in (1, 2)])
    both = encoder(mels)
    assert both.shape == (7, 2, 30, 512)
    for b in range(2):
        np.testing.assert_allclose(both[:, b], encoder(mels[b])[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(80,), (2, 40, 100), (80, 101), (80, 3002), (0, 80, 10)])
def test_encoder_rejects_bad_mel(encoder, shape):
    with pytest.raises(ValueError, match="mel"):
        encoder(np.zeros(shape, np.float32))


def test_encode_waveform(encoder):
    states = encode_waveform(_speechlike(0.5), encoder)
    assert states.shape == (7, 25, 512) and states.dtype == np.float32


def test_last_state_matches_ctranslate2_encode(encoder):
    ctranslate2 = pytest.importorskip("ctranslate2")
    model = ctranslate2.models.Whisper(str(WHISPER_DIR), device="cpu", compute_type="float32", intra_threads=1)
    for name in CLIPS:
        mel = whisper_log_mel(_clip(name))
        expected = np.array(model.encode(ctranslate2.StorageView.from_array(mel[None])))
        ours = encoder(mel)[-1]
        assert ours.shape == expected.shape == (1, mel.shape[1] // 2, 512)
        diff = np.abs(ours - expected)
        assert diff.mean() <= 1e-4, f"{name}: mean |diff| {diff.mean():.2e}"
        assert diff.max() <= 1e-2, f"{name}: max |diff| {diff.max():.2e}"


def test_mel_filters_equal_librosa():
    """The numpy mel filter bank is bit-identical to librosa.filters.mel (what Whisper used)."""
    import librosa

    from ser.encoders import _mel_filters

    expected = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80).astype(np.float32)
    np.testing.assert_array_equal(_mel_filters(), expected)
    # The one implementation also serves the spectral features (here the `fast` preset's bank).
    from ser.features import mel_filters

    np.testing.assert_array_equal(mel_filters(sr=16000, n_fft=512, n_mels=32),
                                  librosa.filters.mel(sr=16000, n_fft=512, n_mels=32))
