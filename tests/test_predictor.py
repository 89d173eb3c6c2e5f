"""The predictor: the same numbers as its reference (fast: before the redesign of issue 14), immutable, thread-safe."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.inference import Recognizer
from ser.speakers import SpeakerStats

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"
#: Scores of the bundled models on 200 RAVDESS clips and the examples: the fast model's computed by the
#: code before the redesign (commit 50888cc), the default model's when its int8 encoder graph came in
#: (issue 16); "provenance" in the file says how.
REFERENCE = json.loads((ROOT / "tests" / "data" / "reference_predictions.json").read_text())
needs_ravdess = pytest.mark.skipif(not RAVDESS.is_dir(), reason="RAVDESS not in ../shared/data")


@pytest.fixture(scope="module", params=["fast", "default"])
def model(request):
    return request.param, Recognizer.load(request.param)


def test_examples_bit_for_bit(model):
    name, rec = model
    paths = [ROOT / "examples" / n for n in REFERENCE["examples"]]
    got = [list(r.scores.values()) for r in rec.predict_files(paths, jobs=1)]
    assert got == REFERENCE[name]["examples"]


@needs_ravdess
def test_200_ravdess_clips_bit_for_bit(model):
    name, rec = model
    paths = [RAVDESS / p for p in REFERENCE["clips"]]
    got = [list(r.scores.values()) for r in rec.predict_files(paths, jobs=2)]
    assert got == REFERENCE[name]["clips"]


def test_eight_threads_get_the_single_thread_results(model):
    """One Recognizer shared by 8 threads at once: files, in-memory audio and the adapted head."""
    name, rec = model
    paths = [ROOT / "examples" / n for n in REFERENCE["examples"]]
    audio = [sf.read(p, dtype="float32") for p in paths]
    stats = SpeakerStats.of(np.stack([rec.features(y, sr) for y, sr in audio])) if rec.speaker_norm else None

    def work():
        out = [rec.predict_file(p).scores for p in paths]
        out += [rec.predict(y, sr).scores for y, sr in audio]
        out += [r.scores for r in rec.predict_files(paths * 5, jobs=2)]
        if stats is not None:
            out += [rec.predict(y, sr, speaker=stats).scores for y, sr in audio]
        return out

    expected = work()
    results: list = [None] * 8
    barrier = threading.Barrier(8)

    def run(i):
        barrier.wait()  # all start together
        results[i] = work()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(r == expected for r in results)


def test_recognizer_is_immutable():
    rec = Recognizer.load("fast")
    for name, value in [("config", rec.config), ("metadata", {}), ("path", None), ("runner", None)]:
        with pytest.raises(AttributeError):
            setattr(rec, name, value)
    rec.metadata["x"] = 1  # a copy: the model's own record is unchanged
    assert "x" not in rec.metadata
    other = rec.replace(metadata={"note": "copy"})
    assert other.metadata == {"note": "copy"} and rec.metadata != other.metadata
    assert other.predict_file(ROOT / "examples" / REFERENCE["examples"][0]) == \
        rec.predict_file(ROOT / "examples" / REFERENCE["examples"][0])
    with pytest.raises(TypeError, match="unknown"):
        rec.replace(colour="red")


def test_bundled_models_are_onnx_only():
    """The bundled folders ship the networks once, as ONNX; asking for Keras says so in one line."""
    from ser.errors import ModelError
    from ser.modelfolder import PRETRAINED_DIR

    for name in ("default", "fast"):
        assert not list((PRETRAINED_DIR / name).glob("*.keras"))
        with pytest.raises(ModelError, match="ONNX only"):
            Recognizer.load(name, runtime="keras")
        with pytest.raises(ModelError, match="ONNX only"):
            Recognizer.load(name).model
