"""Model folders round-trip exactly, are integrity-checked, and predict from files and arrays."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from ser.errors import AudioError, ModelError
from ser.inference import DEFAULT_MODEL, Prediction, Recognizer
from ser.labels import EMOTIONS


def test_save_load_gives_identical_probabilities(trained, corpus):
    """A reloaded folder predicts exactly what the saved model predicted."""
    a = Recognizer.load(trained)
    path = sorted(corpus.rglob("*.wav"))[0]
    first = a.predict_file(path)
    b = Recognizer.load(trained)
    second = b.predict_file(path)
    assert first.scores == second.scores
    assert list(first.scores) == list(EMOTIONS)
    assert sum(first.scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert first.label == max(first.scores, key=first.scores.get) and first.source == str(path)
    files = sorted(p.name for p in trained.iterdir())
    assert {"model.keras", "config.json", "labels.json", "metrics.json", "history.json", "README.md",
            "SHA256SUMS"} <= set(files)


def test_predict_array_matches_file(trained, corpus):
    """predict(y, sr) on the decoded file gives the same scores as predict_file, even at another rate."""
    rec = Recognizer.load(trained)
    path = sorted(corpus.rglob("*.wav"))[3]
    y, sr = sf.read(path, dtype="float32")
    from_file = rec.predict_file(path)
    from_array = rec.predict(y, sr)
    np.testing.assert_allclose(list(from_array.scores.values()), list(from_file.scores.values()), atol=1e-5)
    stereo = rec.predict(np.stack([y, y], axis=1), sr)
    np.testing.assert_allclose(list(stereo.scores.values()), list(from_file.scores.values()), atol=1e-5)
    assert isinstance(rec.predict(tone("sad", sr=44100), 44100), Prediction)


def test_predict_files_batches_and_reports_bad_files(trained, corpus, tmp_path):
    """Batched prediction equals one-by-one; bad files come back as errors in place."""
    rec = Recognizer.load(trained)
    good = sorted(corpus.rglob("*.wav"))[:5]
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    results = rec.predict_files([good[0], bad, *good[1:]], batch_size=2, errors="return")
    assert isinstance(results[1], AudioError) and "bad.wav" in str(results[1])
    singles = [rec.predict_file(p) for p in good]
    for batched, single in zip([results[0], *results[2:]], singles):
        np.testing.assert_allclose(list(batched.scores.values()), list(single.scores.values()), atol=1e-5)
    with pytest.raises(AudioError, match="not a readable audio file"):
        rec.predict_files([bad])


def test_bad_arrays_are_refused(trained):
    """Silent, too short, too long and NaN inputs give clear errors."""
    rec = Recognizer.load(trained)
    with pytest.raises(AudioError, match="silent"):
        rec.predict(np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="shorter than"):
        rec.predict(tone("happy")[:800], 16000)
    with pytest.raises(AudioError, match="longer than"):
        rec.predict(np.zeros(16000 * 61, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="NaN"):
        rec.predict(np.full(16000, np.nan, dtype=np.float32), 16000)


def test_tampered_or_incomplete_folders_are_refused(trained, tmp_path):
    """A changed, missing or unlisted file makes the load fail with the file named."""
    copy = tmp_path / "m"
    shutil.copytree(trained, copy)
    config = json.loads((copy / "config.json").read_text())
    config["audio"]["duration"] = 2.0
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="config.json: checksum mismatch"):
        Recognizer.load(copy)
    shutil.rmtree(copy)
    shutil.copytree(trained, copy)
    (copy / "model.keras").unlink()
    with pytest.raises(ModelError, match="model.keras: missing"):
        Recognizer.load(copy)
    (copy / "SHA256SUMS").unlink()
    with pytest.raises(ModelError, match="no SHA256SUMS"):
        Recognizer.load(copy)
    with pytest.raises(ModelError, match="model folder not found"):
        Recognizer.load(tmp_path / "nowhere")


def test_save_replaces_atomically(trained, tmp_path):
    """Saving over an existing model folder (with force) leaves a complete folder and no temporary leftovers."""
    rec = Recognizer.load(trained)
    target = tmp_path / "model"
    rec.save(target)
    with pytest.raises(ModelError, match="a model folder is already there; use --force"):
        rec.save(target)
    rec.save(target, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert Recognizer.load(target).classes == EMOTIONS


def test_bundled_model_is_complete():
    """The model shipped in the package loads (checksums verified) and carries its card."""
    rec = Recognizer.load()
    assert rec.path == DEFAULT_MODEL and rec.classes == EMOTIONS
    card = (DEFAULT_MODEL / "README.md").read_text()
    assert "CC BY-NC-SA 4.0" in card
    result = rec.predict(tone("angry", sr=22050, seconds=3.0), 22050)
    assert result.label in EMOTIONS and 0 < result.confidence <= 1
