"""Timelines of long recordings: streamed decoding, energy VAD, per-segment recognition, writers.

Everything runs on synthetic files and a fake recognizer (no TensorFlow), so the module is fast.
"""

from __future__ import annotations

import csv
import json
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.errors import AudioError, ConfigError
from ser.inference import Prediction
from ser.timeline import (EnergyVAD, Segment, file_duration, plot_timeline, save_timeline, stream_audio, timeline,
                          write_csv, write_json)

CLASSES = ("neutral", "happy", "sad", "angry")
TOL = 0.1  # seconds


def burst(seconds: float, *, sr: int, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """Speech-like sound: harmonics of a 150-200 Hz voice (up to 400 Hz), syllable-rate wobble, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    f0 = 150.0 + 50.0 * rng.random()
    voice = np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(2 * np.pi * 2 * f0 * t + 1.0)
    # The wobble never reaches zero: a steady sound is the hard case for an adaptive floor.
    envelope = 0.7 + 0.3 * np.sin(2 * np.pi * 4.0 * t + rng.random() * 6)
    return (level * envelope * voice / 1.5 + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def scene(spans, *, seconds: float, sr: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """``seconds`` of background (digital silence, or white noise of RMS ``noise``) with bursts at ``spans``."""
    rng = np.random.default_rng(seed)
    y = (noise * rng.standard_normal(int(round(seconds * sr)))).astype(np.float32)
    for k, (a, b) in enumerate(spans):
        i = int(round(a * sr))
        piece = burst(b - a, sr=sr, seed=seed + k + 1)
        y[i:i + piece.size] += piece
    return y


def write(path, y, sr, *, channels: int = 1):
    data = np.stack([y, 0.8 * y], axis=1) if channels == 2 else y
    sf.write(path, data, sr, subtype="PCM_16")
    return path


def detect(path, *, block_seconds: float = 30.0, **vad) -> list[tuple[float, float]]:
    """Stream a file through the VAD alone."""
    v = EnergyVAD(sr=16000, **vad)
    out = []
    for block in stream_audio(path, sr=16000, block_seconds=block_seconds):
        out += v.feed(block)
    return out + v.flush()


def assert_spans(found, truth, tol=TOL):
    assert len(found) == len(truth), f"found {found}, expected {truth}"
    for (a, b), (ta, tb) in zip(found, truth):
        assert abs(a - ta) <= tol and abs(b - tb) <= tol, f"found {found}, expected {truth}"


class FakeRecognizer:
    """Records what it is given; the label cycles through the classes."""

    classes = CLASSES

    def __init__(self, refuse_shorter_than: float = 0.0):
        self.calls: list[tuple[int, int, np.dtype]] = []
        self.refuse = refuse_shorter_than

    def predict(self, y, sr):
        if y.shape[0] / sr < self.refuse:
            raise AudioError("audio: too short for this fake")
        self.calls.append((y.shape[0], sr, y.dtype))
        k = len(self.calls) % len(self.classes)
        probs = np.full(len(self.classes), 0.1)
        probs[k] = 1 - 0.1 * (len(self.classes) - 1)
        return Prediction(label=self.classes[k], confidence=float(probs[k]),
                          scores={c: float(p) for c, p in zip(self.classes, probs)}, duration=y.shape[0] / sr)


TRUTH = [(1.0, 2.5), (4.0, 5.2), (6.5, 8.0)]


@pytest.mark.parametrize("sr,channels", [(44100, 2), (16000, 1)])
@pytest.mark.parametrize("noise", [0.0, 0.003])
def test_segments_match_truth(tmp_path, sr, channels, noise):
    """Bursts between silence or low noise are found within ±0.1 s, whatever the rate and channels."""
    path = write(tmp_path / "scene.wav", scene(TRUTH, seconds=9.0, sr=sr, noise=noise), sr, channels=channels)
    assert_spans(detect(path), TRUTH)


def test_stream_is_mono_float32_at_target_rate_and_seamless(tmp_path):
    """A 44.1 kHz stereo file streams as 16 kHz mono; small blocks give the same signal as one block."""
    y = scene([(0.5, 2.0)], seconds=3.0, sr=44100)
    path = write(tmp_path / "s.wav", y, 44100, channels=2)
    small = list(stream_audio(path, sr=16000, block_seconds=0.25))
    big = np.concatenate(list(stream_audio(path, sr=16000, block_seconds=30)))
    joined = np.concatenate(small)
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in small) and len(small) > 10
    assert abs(joined.size - 48000) <= 2 and joined.size == big.size
    np.testing.assert_allclose(joined, big, atol=1e-5)
    assert file_duration(path) == pytest.approx(3.0)


def test_block_size_does_not_change_segments(tmp_path):
    """Streaming in 1 s blocks finds exactly the segments of one 30 s block."""
    path = write(tmp_path / "scene.wav", scene(TRUTH + [(9.5, 21.0)], seconds=23.0, sr=44100, noise=0.002), 44100,
                 channels=2)
    one = detect(path, block_seconds=30.0)
    many = detect(path, block_seconds=1.0)
    odd = detect(path, block_seconds=0.37)
    assert one == many == odd and len(one) == 5


def test_long_speech_is_cut_into_near_equal_pieces(tmp_path):
    """A 25 s continuous burst becomes contiguous pieces of at most 10 s, none tiny."""
    path = write(tmp_path / "long.wav", scene([(1.0, 26.0)], seconds=27.0, sr=16000, noise=0.002), 16000)
    found = detect(path)
    assert len(found) == 3
    assert abs(found[0][0] - 1.0) <= TOL and abs(found[-1][1] - 26.0) <= TOL
    for (a, b), (c, _) in zip(found, found[1:]):
        assert b == c  # contiguous
    lengths = [b - a for a, b in found]
    assert max(lengths) <= 10.0 + 1e-9 and min(lengths) >= 5.0


def test_silence_only_gives_no_segments(tmp_path):
    """Digital silence (and a constant DC-free zero file) is never speech, whatever the adaptive floor does."""
    path = write(tmp_path / "silence.wav", np.zeros(16000 * 12, dtype=np.float32), 16000)
    assert detect(path) == []
    rec = FakeRecognizer()
    assert timeline(path, rec) == [] and rec.calls == []


def test_short_blips_dropped_and_short_gaps_merged(tmp_path):
    """A 0.3 s blip is dropped (< min_speech); bursts 0.15 s apart are one segment (< min_gap)."""
    spans = [(1.0, 1.3), (3.0, 4.0), (4.15, 5.0), (7.0, 8.0)]
    path = write(tmp_path / "blips.wav", scene(spans, seconds=9.0, sr=16000, noise=0.002), 16000)
    assert_spans(detect(path), [(3.0, 5.0), (7.0, 8.0)])
    # The same file with a tiny min_speech keeps the blip; a tiny min_gap splits the pair.
    assert_spans(detect(path, min_speech=0.1, min_gap=0.05), [(1.0, 1.3), (3.0, 4.0), (4.15, 5.0), (7.0, 8.0)])


def test_timeline_feeds_recognizer_exact_segments(tmp_path):
    """The recognizer gets 16 kHz float32 arrays as long as each segment; results keep its scores."""
    path = write(tmp_path / "scene.wav", scene(TRUTH, seconds=9.0, sr=44100, noise=0.003), 44100, channels=2)
    rec = FakeRecognizer()
    segments = timeline(path, rec, block_seconds=2.0)
    assert_spans([(s.start, s.end) for s in segments], TRUTH)
    assert len(rec.calls) == 3
    for s, (n, sr, dtype) in zip(segments, rec.calls):
        assert sr == 16000 and dtype == np.float32 and n == round(s.end * 16000) - round(s.start * 16000)
        assert isinstance(s, Segment) and s.label in CLASSES and list(s.scores) == list(CLASSES)
        assert s.confidence == pytest.approx(max(s.scores.values()))
    d = segments[0].to_dict()
    assert set(d) == {"start", "end", "label", "confidence", "scores"} and json.dumps(d)


def test_defaults_follow_the_recognizer_config(tmp_path):
    """A model with its own rate and a 3 s analysis window gets audio at its rate, in pieces of at most 3 s."""
    from types import SimpleNamespace

    from ser.config import AudioConfig

    path = write(tmp_path / "scene.wav", scene([(1.0, 8.0)], seconds=9.0, sr=16000, noise=0.002), 16000)
    rec = FakeRecognizer()
    rec.config = SimpleNamespace(audio=AudioConfig(sample_rate=22050, duration=3.0, max_duration=5.0))
    segments = timeline(path, rec)
    assert len(segments) == 3 and all(s.end - s.start <= 3.0 + 1e-9 for s in segments)
    assert {sr for _, sr, _ in rec.calls} == {22050}
    assert_spans([(segments[0].start, segments[-1].end)], [(1.0, 8.0)])
    with pytest.raises(ConfigError, match="max_duration 5"):
        timeline(path, rec, max_segment=8.0)


def test_refused_segments_are_skipped(tmp_path, caplog):
    """A segment the recognizer refuses with AudioError is logged and left out; the rest go on."""
    path = write(tmp_path / "scene.wav", scene(TRUTH, seconds=9.0, sr=16000), 16000)
    with caplog.at_level("INFO", logger="ser.timeline"):
        segments = timeline(path, FakeRecognizer(refuse_shorter_than=1.3))
    assert_spans([(s.start, s.end) for s in segments], [TRUTH[0], TRUTH[2]])
    assert "skipped" in caplog.text


def test_writers_round_trip(tmp_path):
    """JSON, CSV and PNG are written (atomically: no temp files left) and read back."""
    segments = [Segment(0.5, 2.0, "happy", 0.7, {c: (0.7 if c == "happy" else 0.1) for c in CLASSES}),
                Segment(3.0, 9.5, "sad", 0.55, {c: (0.55 if c == "sad" else 0.15) for c in CLASSES})]
    doc = json.loads(write_json(segments, tmp_path / "t.json", source="a.wav", duration=10.0).read_text())
    assert doc["source"] == "a.wav" and doc["duration"] == 10.0
    assert [s["label"] for s in doc["segments"]] == ["happy", "sad"] and doc["segments"][1]["end"] == 9.5
    with open(write_csv(segments, tmp_path / "t.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["start", "end", "label", "confidence", *CLASSES]
    assert float(rows[1]["start"]) == 3.0 and rows[1]["label"] == "sad" and float(rows[1]["sad"]) == 0.55
    png = plot_timeline(segments, tmp_path / "t.png", classes=CLASSES, duration=10.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A long recording wraps onto rows; an empty timeline still plots and has a full CSV header.
    long = [Segment(60.0 * k, 60.0 * k + 8, CLASSES[k % 4], 0.6, {}) for k in range(60)]
    assert plot_timeline(long, tmp_path / "long.png", classes=CLASSES, duration=3600.0).stat().st_size > 1000
    paths = save_timeline([], tmp_path / "empty", source=None, duration=5.0, classes=CLASSES)
    assert paths["csv"].read_text().strip() == "start,end,label,confidence," + ",".join(CLASSES)
    assert json.loads(paths["json"].read_text())["segments"] == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_files_raise_audio_error(tmp_path):
    """Missing, empty and non-audio files fail at once, in one line naming the file."""
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio at all\n" * 20)
    for name, reason in (("missing.wav", "not found"), ("empty.wav", "empty"), ("text.wav", "not a readable")):
        with pytest.raises(AudioError, match=reason) as info:
            stream_audio(tmp_path / name, sr=16000)
        assert name in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(AudioError, match=name):
            timeline(tmp_path / name, FakeRecognizer())


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="max_segment=0.8"):
        EnergyVAD(max_segment=0.8)
    with pytest.raises(ConfigError, match="min_gap=-1"):
        EnergyVAD(min_gap=-1)
    with pytest.raises(ConfigError, match="sr=0"):
        EnergyVAD(sr=0)
    v = EnergyVAD()
    v.flush()
    with pytest.raises(RuntimeError, match="reset"):
        v.feed(np.zeros(10, dtype=np.float32))


def test_twenty_minutes_in_bounded_memory(tmp_path):
    """20 min of 16 kHz audio (77 MB as float32) streams through VAD + recognizer in a few MB."""
    sr, minutes = 16000, 20
    # One 10 s pattern (two utterances over low noise) repeated: cheap to write, easy to count.
    pattern = scene([(1.0, 3.5), (5.0, 8.2)], seconds=10.0, sr=sr, noise=0.003)
    path = tmp_path / "hour.wav"
    with sf.SoundFile(path, mode="w", samplerate=sr, channels=1, subtype="PCM_16") as fh:
        for _ in range(minutes * 6):
            fh.write(pattern)
    rec = FakeRecognizer()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        segments = timeline(path, rec)
        wall = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(segments) == minutes * 6 * 2
    assert_spans([(s.start, s.end) for s in segments[-2:]], [(1191.0, 1193.5), (1195.0, 1198.2)])
    # Loading the file whole would take 77 MB as float32 (154 MB as float64).
    assert peak < 50e6, f"peak traced memory {peak / 1e6:.1f} MB"
    assert wall < 20, f"{wall:.1f} s for {minutes} min of audio"


def test_readme_timeline_example_with_the_bundled_model():
    """The README's timeline example, for real: four clips in a row give four segments, right emotions."""
    from ser.inference import Recognizer

    recording = Path(__file__).resolve().parents[1] / "docs" / "timeline" / "conversation.flac"
    segments = timeline(recording, Recognizer.load())
    assert [s.label for s in segments] == ["angry", "sad", "happy", "fearful"]
    assert [round(s.start, 2) for s in segments] == [2.04, 8.11, 13.3, 18.07]
