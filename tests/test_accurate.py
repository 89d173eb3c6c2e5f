"""The encoder-based `accurate` recipe end to end: features, MLP head, save/load, prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.cache import FeatureCache, settings_digest
from ser.frontend import featurize, load_clip
from ser.config import preset
from ser.dataset import load_dataset
from ser.errors import ConfigError
from ser.evaluation import evaluate
from ser.inference import Recognizer
from ser.training import fit_final

WHISPER = Path(__file__).resolve().parents[2] / "shared" / "models" / "whisper-base"
pytestmark = pytest.mark.skipif(not (WHISPER / "model.bin").exists(), reason="whisper-base not in ../shared/models")


def small(**changes):
    return preset("accurate").override({"train.epochs": 4, "augment.copies": 1, "train.validation_speakers": 1,
                                        **changes})


def test_whisper_features_of_a_real_clip(ravdess):
    """Every one of the 7 layers, mean + std over the clip's own length, finite."""
    config = preset("accurate")
    y = load_clip(ravdess / "Actor_01" / "03-01-05-02-01-01-01.flac", config)
    x = featurize(y, config)
    assert x.shape == (7, 1024) and x.dtype == np.float32 and np.all(np.isfinite(x))
    assert np.all(x[:, 512:] >= 0)  # standard deviations
    # Own length, not padded: a clip with 1 s of trailing silence gives other statistics.
    padded = featurize(np.concatenate([y, np.zeros(16000, np.float32)]), config)
    assert not np.allclose(padded, x, atol=1e-3)


def test_whisper_config_checks():
    """Whisper features need 16 kHz and the MLP head; spectral features the CNN."""
    with pytest.raises(ConfigError, match="audio.sample_rate=22050"):
        preset("accurate").override({"audio.sample_rate": 22050})
    with pytest.raises(ConfigError, match="model.architecture='cnn2d'"):
        preset("accurate").override({"model.architecture": "cnn2d"})
    with pytest.raises(ConfigError, match="model.architecture='mlp'"):
        preset("tiny").override({"model.architecture": "mlp"})
    # The cache key of encoder features depends on the encoder's weights.
    assert settings_digest(preset("accurate"), 0) != settings_digest(preset("accurate").override(
        {"features.kind": "whisper", "audio.duration": 10.0}), 0)


def test_accurate_recipe_trains_saves_and_predicts(corpus, cache_dir, tmp_path):
    """Augmented copies before the encoder, weighted layers, early stopping; reload predicts identically."""
    clips = load_dataset(corpus)
    config = small()
    model, history = fit_final(clips, config, cache=FeatureCache(cache_dir), jobs=1)
    assert len(history["validation_speakers"]) == 1 and history["best_epoch"] >= 1
    weights = model.get_layer("layer_weights").get_weights()[0]
    assert weights.shape == (7, 1)
    folder = Recognizer(model, config).save(tmp_path / "acc")
    rec = Recognizer.load(folder)
    wav = sorted(corpus.rglob("*.wav"))[0]
    first, second = rec.predict_file(wav), Recognizer.load(folder).predict_file(wav)
    assert first.scores == second.scores and first.label in config.classes
    y, sr = sf.read(wav, dtype="float32")
    np.testing.assert_allclose(list(rec.predict(y, sr).scores.values()), list(first.scores.values()), atol=1e-5)


def test_last_layer_probe_variant(corpus, cache_dir):
    """model.layers='last' feeds only the encoder's final layer to the MLP (the ablation's baseline)."""
    clips = load_dataset(corpus)
    model, _ = fit_final(clips, small(**{"model.layers": "last", "augment.copies": 0, "train.epochs": 1}),
                         cache=FeatureCache(cache_dir), jobs=1)
    assert model.get_layer("last_layer").output.shape[1:] == (1, 1024)
    assert "layer_weights" not in [layer.name for layer in model.layers]


def test_accurate_si6_runs(corpus, cache_dir, tmp_path):
    """The speaker-independent protocol runs with encoder features."""
    report = evaluate(load_dataset(corpus), small(**{"augment.copies": 0}), protocol="si6", out_dir=tmp_path,
                      cache=FeatureCache(cache_dir), jobs=1, partial_folds=True)
    assert report["summary"]["pooled"]["n"] == 96


def test_int8_export_is_bit_exact_and_close_to_float32(tmp_path):
    """The exported int8 encoder equals the in-memory int8 one exactly, and stays close to float32."""
    from conftest import tone
    from ser.encoders import WhisperEncoder, encode_waveform, save_encoder

    path = save_encoder(tmp_path / "encoder.npz", precision="int8")
    assert path.stat().st_size < 20e6
    y = tone("angry", seconds=2.0)
    exported = encode_waveform(y, WhisperEncoder.from_npz(path))
    in_memory = encode_waveform(y, WhisperEncoder.from_dir(precision="int8"))
    full = encode_waveform(y, WhisperEncoder.from_dir())
    np.testing.assert_array_equal(exported, in_memory)
    relative = np.abs(exported - full).mean() / np.abs(full).mean()
    assert 0 < relative < 0.05


def test_int8_model_folder_carries_its_encoder(corpus, cache_dir, tmp_path, monkeypatch, tampered):
    """A folder trained with the int8 encoder predicts without the shared weights; tampering is refused."""
    from ser import frontend as frontend_mod
    from ser.errors import ModelError

    clips = load_dataset(corpus)
    config = small(**{"features.encoder_precision": "int8", "augment.copies": 0, "train.epochs": 2})
    model, _ = fit_final(clips, config, cache=FeatureCache(cache_dir), jobs=1)
    folder = Recognizer(model, config).save(tmp_path / "int8")
    assert (folder / "encoder.npz").exists()
    wav = sorted(corpus.rglob("*.wav"))[5]
    expected = Recognizer.load(folder).predict_file(wav).scores
    # No shared weights at all now: the folder must be self-sufficient.
    monkeypatch.setenv("SER_WHISPER_DIR", str(tmp_path / "nowhere"))
    frontend_mod._load_whisper_encoder.cache_clear()
    try:
        assert Recognizer.load(folder).predict_file(wav).scores == expected
        with pytest.raises(ModelError, match="encoder.npz: checksum mismatch"):
            Recognizer.load(tampered(folder, "encoder.npz", offset=1000))
    finally:
        frontend_mod._load_whisper_encoder.cache_clear()


def test_float_export_is_lossless(tmp_path):
    """The float16 export reproduces the CTranslate2 weights exactly: identical hidden states, < 40 MB."""
    from conftest import tone
    from ser.encoders import WhisperEncoder, encode_waveform, save_encoder

    path = save_encoder(tmp_path / "encoder.npz")
    assert path.stat().st_size < 40e6
    y = tone("sad", seconds=1.5)
    np.testing.assert_array_equal(encode_waveform(y, WhisperEncoder.from_npz(path)),
                                  encode_waveform(y, WhisperEncoder.from_dir()))
