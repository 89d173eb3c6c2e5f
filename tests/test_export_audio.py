"""``ser export --format onnx-audio``: one ONNX graph from the 16 kHz waveform to the scores.

The graph runs on ONNX Runtime alone (no ser import in the measured path) and must give the scores of
``Recognizer.predict`` on real RAVDESS clips, for both bundled models, including clips the
conditioning changes (leading/trailing silence for the trimming default model, clips longer and
shorter than the analysis window).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ser.audio import decode
from ser.cli import main
from ser.errors import ModelError
from ser.export_audio import export_onnx_audio
from ser.inference import Recognizer

from conftest import RAVDESS

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
#: Largest score difference allowed. default: float32 after a float64 spectrogram on both sides (measured
#: worst 6e-7). fast: numpy computes its STFT in float32 (complex64), the graph in float64 (worst 1.2e-5).
TOL = {"default": 1e-5, "fast": 5e-5}


@pytest.fixture(scope="module", params=["default", "fast"])
def exported(request, tmp_path_factory):
    """(Recognizer, ONNX Runtime session) of a bundled model exported through the CLI."""
    import onnxruntime as ort

    out = tmp_path_factory.mktemp("export") / f"{request.param}-audio.onnx"
    assert main(["export", request.param, "--format", "onnx-audio", "--out", str(out)]) == 0
    return Recognizer.load(request.param), ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])


def clips(n: int) -> list[np.ndarray]:
    if not RAVDESS.is_dir():
        pytest.skip("shared RAVDESS copy not found at ../shared/data/ravdess")
    return [decode(p, sr=SR)[0] for p in sorted(RAVDESS.rglob("*.flac"))[::1440 // n][:n]]


def test_graph_gives_predict_scores_on_real_clips(exported):
    """12 RAVDESS clips, one padded with 1.5 s of silence each side, one of 2 s and one of 34 s."""
    rec, session = exported
    tol = TOL["default" if rec.config.features.kind == "whisper" else "fast"]
    ys = clips(12)
    quiet = np.zeros(int(1.5 * SR), np.float32)
    ys += [np.concatenate([quiet, ys[0], quiet]), ys[1][: 2 * SR], np.concatenate(ys[:10])[: 34 * SR]]
    for y in ys:
        expected = np.array(list(rec.predict(y, SR).scores.values()))
        (scores,) = session.run(["scores"], {"waveform": y})
        assert scores.shape == (len(rec.classes),) and scores.dtype == np.float32
        np.testing.assert_allclose(scores, expected, rtol=0, atol=tol)
        assert scores.sum() == pytest.approx(1.0, abs=1e-5)


def test_graph_metadata_names_the_labels(exported):
    rec, session = exported
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == list(rec.classes)
    assert meta["sample_rate"] == "16000" and meta["model"] == rec.config.name
    assert [i.name for i in session.get_inputs()] == ["waveform"]


def test_trimming_is_in_the_graph():
    """The default model trims silence: without that step in the graph, the padded clip would score otherwise."""
    rec = Recognizer.load("default")
    assert rec.config.audio.trim_db > 0
    y = clips(1)[0]
    padded = np.concatenate([np.zeros(3 * SR, np.float32), y, np.zeros(3 * SR, np.float32)])
    untrimmed = rec.replace(config=rec.config.override({"audio.trim_db": 0.0}))
    a = np.array(list(rec.predict(padded, SR).scores.values()))
    b = np.array(list(untrimmed.predict(padded, SR).scores.values()))
    assert np.abs(a - b).max() > 100 * TOL["default"]


def test_readme_example_runs_on_onnxruntime_alone(tmp_path):
    """The README's example, run as written (after the export it names), prints predict_file's answer."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"### One ONNX file.*?```python\n(.*?)```", readme, re.S).group(1)
    assert "import ser" not in block and "from ser" not in block
    model = tmp_path / "default-audio.onnx"
    assert main(["export", "default", "--format", "onnx-audio", "--out", str(model)]) == 0
    code = block.replace('"default-audio.onnx"', repr(str(model)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    label, scores = proc.stdout.strip().split(" ", 1)
    expected = Recognizer.load("default").predict_file(ROOT / "examples" / "03-01-05-02-01-01-01.flac")
    assert label == expected.label
    got = json.loads(scores.replace("'", '"'))
    assert got.keys() == expected.scores.keys()
    np.testing.assert_allclose(list(got.values()), list(expected.scores.values()), atol=1e-3)  # printed to 3 places


def test_model_without_onnx_network_is_refused(tmp_path):
    rec = Recognizer.load("fast")
    keras_only = Recognizer(object(), rec.config)
    with pytest.raises(ModelError, match="no model.onnx"):
        export_onnx_audio(keras_only, tmp_path / "x.onnx")
