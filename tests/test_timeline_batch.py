"""Batched timeline recognition on real audio: the same segments and scores as one segment at a time.

The input holds the three kinds of the timeline benchmark (benchmarks/timeline.py): RAVDESS clips
with their own pauses, continuous speech (clips with their silences cut, back to back, so the VAD
cuts it at the maximum segment length) and noise bursts.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ser.audio import decode, trim_silence
from ser.errors import AudioError, ConfigError
from ser.inference import Recognizer
from ser.timeline import timeline

from conftest import RAVDESS

SR = 16000


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """About 50 s at 16 kHz: 4 clips with pauses, 25 s of continuous speech, then 12 s of noise bursts."""
    if not RAVDESS.is_dir():
        pytest.skip("shared RAVDESS copy not found at ../shared/data/ravdess")
    clips = sorted(RAVDESS.rglob("*.flac"))[::97]
    pieces = [decode(c, sr=SR)[0] for c in clips[:4]]
    continuous, n = [], 0
    for c in clips[4:]:
        y = trim_silence(decode(c, sr=SR)[0], top_db=30)
        continuous.append(y)
        n += y.size
        if n > 25 * SR:
            break
    rng = np.random.default_rng(0)
    noise = [np.zeros(SR // 2, np.float32)]
    for _ in range(4):
        noise += [(0.1 * rng.standard_normal(2 * SR)).astype(np.float32), np.zeros(SR, np.float32)]
    path = tmp_path_factory.mktemp("timeline") / "mixed.wav"
    sf.write(path, np.concatenate(pieces + continuous + noise), SR, subtype="PCM_16")
    return path


def assert_same(batched, single):
    assert len(batched) == len(single) > 5
    for b, s in zip(batched, single):
        assert (b.start, b.end, b.label) == (s.start, s.end, s.label)
        assert list(b.scores) == list(s.scores)
        np.testing.assert_allclose(list(b.scores.values()), list(s.scores.values()), rtol=0, atol=1e-5)


@pytest.mark.parametrize("model", ["default", "fast"])
def test_batched_timeline_equals_one_segment_at_a_time(recording, model):
    """Batches of 4 (features on two threads, one network call) give the unbatched segments and scores."""
    rec = Recognizer.load(model)
    single = timeline(recording, rec, batch_size=1)
    batched = timeline(recording, rec, batch_size=4, jobs=2)
    assert_same(batched, single)
    # The continuous speech is cut into near-equal pieces of at most the maximum length: the
    # benchmark's hard case is in here.
    limit = min(10.0, rec.config.audio.duration)
    assert 0.9 * limit <= max(s.duration for s in single) <= limit + 0.01


def test_batched_adaptation_equals_one_segment_at_a_time(recording):
    """With --adapt the statistics stay causal: segment k is read with segments 0..k, batched or not."""
    rec = Recognizer.load("default")
    single = timeline(recording, rec, batch_size=1, adapt=True, adapt_after=2)
    batched = timeline(recording, rec, batch_size=3, jobs=2, adapt=True, adapt_after=2)
    assert_same(batched, single)
    plain = timeline(recording, rec, batch_size=3, jobs=2)
    # Adaptation did change the scores (else this test could not tell causal from not).
    assert any(abs(a.confidence - b.confidence) > 1e-3 for a, b in zip(batched[2:], plain[2:]))


def test_predict_many_equals_predict_and_names_refused_clips(ravdess):
    """Recognizer.predict_many: the scores of predict per clip; a clip predict refuses gets its error in place."""
    rec = Recognizer.load("fast")
    ys = [decode(c, sr=SR)[0] for c in sorted(ravdess.rglob("*.flac"))[:5]]
    ys.insert(2, np.zeros(SR // 50, np.float32))  # 20 ms: too short
    out = rec.predict_many(ys, SR)
    assert isinstance(out[2], AudioError) and "audio" in str(out[2])
    for y, p in zip(ys[:2] + ys[3:], out[:2] + out[3:]):
        one = rec.predict(y, SR)
        assert p.label == one.label and p.duration == pytest.approx(one.duration)
        np.testing.assert_allclose(list(p.scores.values()), list(one.scores.values()), atol=1e-6)


def test_batch_size_must_be_positive(recording):
    with pytest.raises(ConfigError, match="batch_size=0"):
        timeline(recording, Recognizer.load("fast"), batch_size=0)
