"""The `fast` preset and bundled model: numpy log-mel, loading by name, runtimes, parallel prediction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from ser.cli import main
from ser.config import preset
from ser.errors import AudioError, ModelError
from ser.features import feature_shape, logmel, mfcc
from ser.frontend import POOL_MIN_ITEMS as POOL_MIN_FILES
from ser.inference import Recognizer
from ser.modelfolder import PRETRAINED_DIR, bundled_models, resolve_model
from ser.labels import EMOTIONS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.flac"))


def test_fast_preset_is_small_and_trained_like_cnn():
    """3 s at 16 kHz → 32 x 151 MFCC; small conv stack; augmentation, standardisation, early stopping."""
    c = preset("fast")
    assert c.name == "fast" and c.features.kind == "mfcc" and c.model.architecture == "cnn2d"
    assert feature_shape(c.audio, c.features) == (32, 151)
    assert max(c.model.filters) <= 64 and c.model.input_normalization
    assert c.augment.copies >= 1 and c.train.validation_speakers >= 1 and c.train.early_stopping_patience > 0


@pytest.mark.parametrize("n_fft,hop,n_mels,sr", [(512, 320, 32, 16000), (2048, 512, 128, 22050), (400, 160, 80, 8000)])
def test_logmel_matches_librosa(n_fft, hop, n_mels, sr):
    """The numpy log-mel equals librosa's melspectrogram + power_to_db(ref=np.max); a batch equals its clips."""
    import librosa

    y = np.stack([tone("angry", sr=sr, seconds=1.0), tone("sad", sr=sr, seconds=1.0, seed=3)])
    for clip in y:
        ref = librosa.power_to_db(librosa.feature.melspectrogram(y=clip, sr=sr, n_mels=n_mels, n_fft=n_fft,
                                                                 hop_length=hop), ref=np.max)
        got = logmel(clip, sr=sr, n_mels=n_mels, n_fft=n_fft, hop_length=hop)
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-3)
    batch = logmel(y, sr=sr, n_mels=n_mels, n_fft=n_fft, hop_length=hop)
    assert batch.shape == (2, *ref.shape)
    np.testing.assert_allclose(batch[1], got, atol=1e-5)
    with pytest.raises(ValueError, match="expected shape"):
        logmel(np.zeros((2, 2, 100), dtype=np.float32), sr=sr)


@pytest.mark.parametrize("n_fft,hop,n_mels,n_mfcc,sr", [(512, 320, 32, 32, 16000), (2048, 512, 128, 40, 22050)])
def test_mfcc_matches_librosa(n_fft, hop, n_mels, n_mfcc, sr):
    """The numpy MFCC equals librosa.feature.mfcc to float32 rounding; a batch equals its clips."""
    import librosa

    y = np.stack([tone("happy", sr=sr, seconds=1.0), tone("fearful", sr=sr, seconds=1.0, seed=5)])
    for clip in y:
        ref = librosa.feature.mfcc(y=clip, sr=sr, n_mfcc=n_mfcc, n_mels=n_mels, n_fft=n_fft, hop_length=hop)
        got = mfcc(clip, sr=sr, n_mfcc=n_mfcc, n_mels=n_mels, n_fft=n_fft, hop_length=hop)
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-3)
    batch = mfcc(y, sr=sr, n_mfcc=n_mfcc, n_mels=n_mels, n_fft=n_fft, hop_length=hop)
    np.testing.assert_allclose(batch[1], got, atol=1e-4)
    with pytest.raises(ValueError, match="n_mfcc=50: expected at most n_mels=40"):
        mfcc(y[0], sr=sr, n_mfcc=50, n_mels=40)


def test_bundled_models_load_by_name():
    """A bare bundled name resolves to ser/pretrained/<name>; the fast folder is small and checksummed."""
    assert {"default", "fast"} <= set(bundled_models())
    rec = Recognizer.load("fast")
    assert rec.path == PRETRAINED_DIR / "fast" and rec.config.name == "fast" and rec.classes == EMOTIONS
    assert rec.runner is not None and rec.encoder is None  # ONNX Runtime, no speech encoder
    assert Recognizer.load("default").path == PRETRAINED_DIR / "default"
    folder = PRETRAINED_DIR / "fast"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2_000_000
    assert (folder / "SHA256SUMS").is_file() and "CC BY-NC-SA 4.0" in (folder / "README.md").read_text()
    assert "accuracy_fast_si6.json" in (folder / "README.md").read_text()


def test_an_existing_folder_wins_over_a_bundled_name(tmp_path, monkeypatch):
    """A folder called like a bundled model, in the working directory, is the one loaded."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").mkdir()
    assert resolve_model("fast") == Path("fast")
    with pytest.raises(ModelError, match="no SHA256SUMS"):
        Recognizer.load("fast")


def test_unknown_model_name_lists_the_bundled_ones():
    """An unknown bare name is one clear error naming the bundled models."""
    with pytest.raises(ModelError, match=r"^nonesuch: no such model folder, nor a bundled model "
                                         r"\(bundled: default, fast\)$"):
        Recognizer.load("nonesuch")
    with pytest.raises(ModelError, match="model folder not found"):
        Recognizer.load(os.path.join("no", "such", "folder"))


def test_onnx_and_keras_agree_on_a_real_clip(trained):
    """A trained folder gives the same probabilities on ONNX Runtime and Keras (1e-4)."""
    clip = EXAMPLES[2]
    onnx = Recognizer.load(trained, runtime="onnx").predict_file(clip)
    keras = Recognizer.load(trained, runtime="keras").predict_file(clip)
    np.testing.assert_allclose(list(onnx.scores.values()), list(keras.scores.values()), atol=1e-4)
    assert onnx.label == keras.label and sum(onnx.scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert onnx.duration == pytest.approx(sf.info(clip).duration)


def test_parallel_prediction_keeps_order_and_reports_bad_files(tmp_path):
    """Worker threads give what one thread gives, in input order, errors in their places."""
    rec = Recognizer.load("fast")
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    short = tmp_path / "short.wav"
    sf.write(short, tone("happy")[:800], 16000)
    paths = [*EXAMPLES * 5, bad, *EXAMPLES, short]
    assert len(paths) >= POOL_MIN_FILES
    parallel = rec.predict_files(paths, jobs=2, batch_size=7, errors="return")
    serial = rec.predict_files(paths, jobs=1, errors="return")
    assert len(parallel) == len(paths)
    for path, a, b in zip(paths, parallel, serial):
        if path in (bad, short):
            assert isinstance(a, AudioError) and type(a) is type(b) and str(a) == str(b) and path.name in str(a)
        else:
            assert a.source == str(path) and a.label == b.label and a.duration == b.duration
            np.testing.assert_allclose(list(a.scores.values()), list(b.scores.values()), atol=1e-6)
    with pytest.raises(AudioError, match="bad.wav: not a readable audio file"):
        rec.predict_files(paths, jobs=2)
    with pytest.raises(ValueError, match="jobs=0"):
        rec.predict_files(paths, jobs=0)


def test_cli_predict_with_the_fast_model(capsys):
    """`ser predict --model fast` works; --jobs must be positive."""
    code = main(["predict", "-q", "--json", "--model", "fast", "--jobs", "1", *map(str, EXAMPLES)])
    out, _ = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["source"] for r in rows] == [str(p) for p in EXAMPLES]
    assert all(r["label"] in EMOTIONS for r in rows)
    code = main(["predict", "--model", "nonesuch", str(EXAMPLES[0])])
    assert code == 1 and "bundled: default, fast" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--jobs", "0", str(EXAMPLES[0])])
    assert exit_info.value.code == 2


def test_single_clip_prediction_imports_neither_tensorflow_nor_librosa():
    """The cold path of the fast model stays light: ONNX Runtime and numpy only."""
    code = ("import sys; from ser.cli import main; rc = main(['predict', '-q', '--model', 'fast', sys.argv[1]]); "
            "heavy = [m for m in ('tensorflow', 'keras', 'librosa', 'scipy.signal') if m in sys.modules]; "
            "print(heavy); sys.exit(rc or bool(heavy))")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", code, str(EXAMPLES[0])], capture_output=True, text=True, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
