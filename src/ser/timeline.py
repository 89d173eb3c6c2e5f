"""Emotion timelines for long recordings: stream → detect speech → recognise each segment.

An hour of audio never sits in memory at once. The file is decoded block by block
(:func:`stream_audio`), an incremental energy voice-activity detector (:class:`EnergyVAD`)
turns the stream into speech segments, and each segment is handed to the recognizer as soon
as it is complete (:func:`timeline`). Only the samples that a future segment can still need
are kept: the open segment (at most ``2 * max_segment`` seconds), plus up to one second of
audio whose speech/non-speech decision is still pending, plus one decoded block.

The results are written as JSON, CSV and a PNG timeline (:func:`write_json`,
:func:`write_csv`, :func:`plot_timeline`, or all three with :func:`save_timeline`).

Example
-------
>>> from ser.inference import Recognizer
>>> from ser import timeline as tl
>>> rec = Recognizer.load()
>>> segments = tl.timeline("meeting.flac", rec, progress=True)        # doctest: +SKIP
>>> tl.save_timeline(segments, "meeting", source="meeting.flac",      # doctest: +SKIP
...                  duration=tl.file_duration("meeting.flac"), classes=rec.classes)
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ser.audio import file_duration, stream_audio  # noqa: F401 - file_duration: part of this module's API
from ser.config import AudioConfig
from ser.errors import AudioError, ConfigError, OutputError, SERError
from ser.speakers import RunningStats
from ser.utils import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from ser.inference import Prediction

log = logging.getLogger(__name__)

#: Seconds of frames between two noise-floor updates; also the longest a frame waits for its decision.
#: A fixed grid of frame indices (not of input blocks) makes the result independent of block size.
CHUNK_SECONDS = 1.0
#: Mean-square energy added before taking the log, so digital silence is -100 dB, not -inf.
_ENERGY_EPS = 1e-10


#: Segments recognised together by :func:`timeline` (features on worker threads, one network call).
BATCH_SEGMENTS = 16

#: Segments a timeline sees before it adapts to the recording (see :func:`timeline`).
ADAPT_AFTER = 5


class SupportsPredict(Protocol):
    """Anything that recognises one in-memory clip, like :class:`ser.inference.Recognizer`."""

    classes: Sequence[str]

    def predict(self, y: np.ndarray, sr: int) -> Prediction: ...


# --- voice activity -----------------------------------------------------------------------
class EnergyVAD:
    """Incremental energy-based voice-activity detector.

    Feed it consecutive blocks of one mono signal; it returns each speech segment once the
    segment is over. Frames of ``frame_length`` seconds every ``hop_length`` seconds get a
    log-energy (dB of the mean square, full-scale sine ≈ -3 dB). A frame is speech when its
    energy exceeds ``max(noise_floor + margin_db, threshold_db)``.

    The noise floor is the ``floor_percentile``-th percentile of the frame energies of the last
    ``floor_window`` seconds, updated once per second. It may drop at once (the room got
    quieter) but rises by at most ``floor_rise`` dB per second, so a long utterance is not
    absorbed into the floor, while a lasting louder background is learnt within tens of seconds.
    The absolute ``threshold_db`` keeps digital silence and near-silence from ever being speech.

    Speech frames separated by less than ``min_gap`` seconds of non-speech are merged
    (hangover); segments shorter than ``min_speech`` are dropped; segments longer than
    ``max_segment`` are cut into near-equal pieces of at most ``max_segment`` seconds.

    Parameters
    ----------
    sr : int
        Sample rate of the blocks.
    frame_length, hop_length : float
        Analysis frame and hop, in seconds.
    margin_db : float
        How far above the noise floor speech must be.
    threshold_db : float
        Absolute minimum frame energy of speech, in dBFS.
    floor_window : float
        Seconds of history for the noise floor.
    floor_percentile : float
        Percentile of the history's frame energies taken as the noise floor.
    floor_rise : float
        Fastest rise of the noise floor, dB per second.
    min_speech, min_gap, max_segment : float
        Seconds; see above. ``max_segment`` must be at least ``2 * min_speech`` so that no
        piece of a cut segment is too short.

    Notes
    -----
    Memory does not grow with the length of the stream: the detector keeps fewer than one
    frame of samples, ``floor_window`` seconds of frame energies (one float per hop) and at
    most one second of undecided frames. :attr:`keep_from` tells a caller which samples a
    future segment can still include.

    Times are of the frame centres' hop-wide regions, so boundaries are accurate to about
    one hop plus the frame's reach into the silence (≈ 20 ms for the defaults). A recording
    that *starts* with over ten seconds of uninterrupted loud sound has no quiet reference yet
    and may be detected late; real speech pauses often enough for this not to matter.
    """

    def __init__(self, *, sr: int = 16000, frame_length: float = 0.030, hop_length: float = 0.010,
                 margin_db: float = 10.0, threshold_db: float = -60.0, floor_window: float = 10.0,
                 floor_percentile: float = 10.0, floor_rise: float = 1.0, min_speech: float = 0.5,
                 min_gap: float = 0.3, max_segment: float = 10.0) -> None:
        if not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise ConfigError(f"sr={sr!r}: expected a positive integer")
        hop = int(round(hop_length * sr))
        flen = int(round(frame_length * sr))
        if hop < 1:
            raise ConfigError(f"hop_length={hop_length!r}: expected at least one sample at sr={sr}")
        if flen < hop:
            raise ConfigError(f"frame_length={frame_length!r}: expected at least hop_length={hop_length!r}")
        for name, value in (("margin_db", margin_db), ("floor_rise", floor_rise), ("min_speech", min_speech),
                            ("min_gap", min_gap)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name}={value!r}: expected a number >= 0")
        if not (isinstance(threshold_db, (int, float)) and math.isfinite(threshold_db)):
            raise ConfigError(f"threshold_db={threshold_db!r}: expected a finite number")
        if not 0 <= floor_percentile <= 100:
            raise ConfigError(f"floor_percentile={floor_percentile!r}: expected a number in [0, 100]")
        if not floor_window >= CHUNK_SECONDS:
            raise ConfigError(f"floor_window={floor_window!r}: expected at least {CHUNK_SECONDS:g} s")
        if not (isinstance(max_segment, (int, float)) and max_segment >= max(2 * min_speech, 2 * hop_length)):
            raise ConfigError(f"max_segment={max_segment!r}: expected at least 2 * min_speech = {2 * min_speech:g} s")
        self.sr = int(sr)
        self.frame_length, self.hop_length = frame_length, hop_length
        self.margin_db, self.threshold_db = float(margin_db), float(threshold_db)
        self.floor_window, self.floor_percentile, self.floor_rise = floor_window, floor_percentile, floor_rise
        self.min_speech, self.min_gap, self.max_segment = min_speech, min_gap, max_segment
        self._hop, self._flen = hop, flen
        # A speech frame stands for the hop-wide region at its centre, so consecutive
        # speech frames tile the segment without overlap.
        self._off = (flen - hop) // 2
        self._chunk = max(1, int(round(CHUNK_SECONDS * sr / hop)))
        self._window = max(self._chunk, int(round(floor_window * sr / hop)))
        self._gap_frames = max(1, int(round(min_gap * sr / hop)))
        self._min_samples = int(round(min_speech * sr))
        self._max_frames = max(1, int(round(max_segment * sr)) // hop)
        self._rise_per_frame = floor_rise * hop / sr
        self.reset()

    def reset(self) -> None:
        """Forget everything; the next block starts a new stream at time 0."""
        self._tail = np.zeros(0, dtype=np.float32)  # samples from frame `_next_frame` on
        self._n_fed = 0
        self._next_frame = 0  # first frame whose energy is not computed yet
        self._decided = 0  # first frame without a speech/non-speech decision
        self._pending: list[np.ndarray] = []  # energies of frames _decided .. _next_frame - 1
        self._history = np.zeros(0)  # energies of the last `_window` decided frames
        self._floor: float | None = None
        self._seg_start: int | None = None  # first frame of the open segment
        self._last_speech = -1
        self._flushed = False

    # ---- public interface ----
    @property
    def noise_floor(self) -> float | None:
        """Current noise-floor estimate in dB (``None`` before the first second)."""
        return self._floor

    @property
    def keep_from(self) -> int:
        """Index of the first sample that a segment not yet returned can include."""
        frame = self._seg_start if self._seg_start is not None else self._decided
        return frame * self._hop + self._off

    def feed(self, block: np.ndarray) -> list[tuple[float, float]]:
        """Add the next samples of the stream.

        Parameters
        ----------
        block : numpy.ndarray
            Shape ``(n_samples,)`` at :attr:`sr`; any length, including 0.

        Returns
        -------
        list of (float, float)
            Segments finished by this block, ``(start, end)`` in seconds from the start of the
            stream, in order.
        """
        return [(s / self.sr, e / self.sr) for s, e in self._feed(block)]

    def flush(self) -> list[tuple[float, float]]:
        """End the stream: decide the last frames and close any open segment.

        Returns
        -------
        list of (float, float)
            The remaining segments, like :meth:`feed`. Call :meth:`reset` to reuse the detector.
        """
        return [(s / self.sr, e / self.sr) for s, e in self._flush()]

    # ---- sample-index versions, used by timeline() to cut exact sample ranges ----
    def _feed(self, block: np.ndarray) -> list[tuple[int, int]]:
        if self._flushed:
            raise RuntimeError("EnergyVAD.feed after flush(); call reset() first")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise AudioError(f"EnergyVAD.feed: expected shape (n_samples,), got {block.shape}")
        self._n_fed += block.size
        x = np.concatenate([self._tail, block]) if self._tail.size else block
        n = (x.size - self._flen) // self._hop + 1 if x.size >= self._flen else 0
        if n > 0:
            x64 = x[: (n - 1) * self._hop + self._flen].astype(np.float64)
            frames = np.lib.stride_tricks.sliding_window_view(x64, self._flen)[:: self._hop]
            # einsum sums each frame in place: no (n_frames, frame_length) temporary.
            energy = np.einsum("ij,ij->i", frames, frames) / self._flen
            self._pending.append(10.0 * np.log10(energy + _ENERGY_EPS))
            self._next_frame += n
        # Copy, so the (possibly large) concatenated block can be freed.
        self._tail = x[n * self._hop:].copy()
        out: list[tuple[int, int]] = []
        while self._next_frame - self._decided >= self._chunk:
            out += self._decide(self._take(self._chunk))
        return out

    def _flush(self) -> list[tuple[int, int]]:
        if self._flushed:
            return []
        out: list[tuple[int, int]] = []
        if self._next_frame > self._decided:
            out += self._decide(self._take(self._next_frame - self._decided))
        if self._seg_start is not None:
            out += self._close()
        self._flushed = True
        return out

    # ---- internals ----
    def _take(self, count: int) -> np.ndarray:
        pending = np.concatenate(self._pending)
        self._pending = [pending[count:]] if pending.size > count else []
        return pending[:count]

    def _decide(self, energy: np.ndarray) -> list[tuple[int, int]]:
        """Decide ``energy``'s frames (the next undecided ones) and run the segment logic."""
        self._history = np.concatenate([self._history, energy])[-self._window:]
        candidate = float(np.percentile(self._history, self.floor_percentile))
        if self._floor is None or candidate <= self._floor:
            self._floor = candidate
        else:
            self._floor = min(candidate, self._floor + self._rise_per_frame * energy.size)
        threshold = max(self._floor + self.margin_db, self.threshold_db)
        out: list[tuple[int, int]] = []
        first = self._decided
        self._decided += energy.size
        # A plain loop over frames: a few hundred thousand per hour, well under a second.
        for i, speech in enumerate((energy > threshold).tolist(), start=first):
            if self._seg_start is None:
                if speech:
                    self._seg_start = self._last_speech = i
            elif speech:
                self._last_speech = i
                # Emit early pieces of a long segment, so memory stays bounded; keeping up to
                # 2 * max_segment lets the last two pieces be balanced at the close.
                if i + 1 - self._seg_start >= 2 * self._max_frames:
                    cut = self._seg_start + self._max_frames
                    out.append((self._sample(self._seg_start), self._sample(cut)))
                    self._seg_start = cut
            elif i - self._last_speech >= self._gap_frames:
                out += self._close()
        return out

    def _close(self) -> list[tuple[int, int]]:
        start, stop = self._seg_start, self._last_speech + 1
        self._seg_start = None
        if (stop - start) * self._hop < self._min_samples:
            return []
        pieces = math.ceil((stop - start) / self._max_frames)
        edges = [start + round(k * (stop - start) / pieces) for k in range(pieces + 1)]
        return [(self._sample(a), self._sample(b)) for a, b in zip(edges[:-1], edges[1:])]

    def _sample(self, frame: int) -> int:
        return frame * self._hop + self._off


# --- segments and recognition -------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    """One stretch of speech and the emotion recognised in it.

    Attributes
    ----------
    start, end : float
        Seconds from the start of the recording.
    label : str
        The most probable emotion.
    confidence : float
        Its probability.
    scores : dict
        Probability of every class, in the model's class order.
    """

    start: float
    end: float
    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """``end - start`` in seconds."""
        return self.end - self.start

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return {"start": round(self.start, 3), "end": round(self.end, 3), "label": self.label,
                "confidence": round(self.confidence, 6),
                "scores": {k: round(v, 6) for k, v in self.scores.items()}}

    def _repr_html_(self) -> str:
        # Jupyter shows a segment like a prediction, headed by its times (ser.display).
        from ser.display import prediction_html

        return prediction_html(self, heading=f"{self.start:.2f}-{self.end:.2f} s")


class Timeline(list):
    """The segments of one recording, in time order, as :func:`timeline` returns them.

    A plain list of :class:`Segment` that also knows the recording's ``duration`` (seconds),
    ``source`` and the model's ``classes``, so it can draw itself: it shows as its plot in
    Jupyter (see :func:`ser.plot.timeline`).
    """

    def __init__(self, segments=(), *, duration: float | None = None, source: str | None = None,
                 classes: Sequence[str] | None = None) -> None:
        super().__init__(segments)
        self.duration = duration
        self.source = source
        self.classes = tuple(classes) if classes is not None else None

    def _repr_png_(self) -> bytes:
        from ser import plot

        return plot.to_png(plot.timeline(self))


#: Longest segment handed to the recognizer when neither the caller nor the model says otherwise.
MAX_SEGMENT = 10.0


def timeline(path: str | os.PathLike, recognizer: SupportsPredict, *, sr: int | None = None,
             block_seconds: float = 30.0, progress: bool = False, margin_db: float = 10.0,
             threshold_db: float = -60.0, min_speech: float = 0.5, min_gap: float = 0.3,
             max_segment: float | None = None, adapt: bool = False, adapt_after: int = ADAPT_AFTER,
             batch_size: int = BATCH_SEGMENTS, jobs: int | None = None) -> list[Segment]:
    """Find the speech in a recording, of any length, and the emotion of each segment.

    The file is streamed (:func:`stream_audio`), speech is detected incrementally
    (:class:`EnergyVAD`) and each segment is recognised as soon as it is complete, so memory
    stays bounded however long the file is.

    Parameters
    ----------
    path : str or path-like
        Any format libsndfile reads.
    recognizer : Recognizer or similar
        Anything with ``predict(y, sr) -> Prediction``; it receives float32 arrays of shape
        ``(n_samples,)`` at ``sr``. If it has a ``config.audio`` (a :class:`ser.inference.Recognizer`
        does), its ``sample_rate``, ``duration`` and ``max_duration`` set the defaults below.
    sr : int, optional
        Rate the audio is decoded at and handed to the recognizer. Default: the recognizer's
        own rate (so it never resamples twice, and a 22.05 kHz model gets its full band), else 16000.
    block_seconds : float
        Seconds decoded at a time (memory ∝ this).
    progress : bool
        Show a progress bar over seconds of audio.
    margin_db, threshold_db, min_speech, min_gap : float
        Voice-activity settings; see :class:`EnergyVAD`.
    max_segment : float, optional
        Longer speech is cut into near-equal pieces of at most this many seconds. Default:
        10 s, or the recognizer's analysis window ``config.audio.duration`` if shorter (a model
        that looks only at the first 3 s of a clip would otherwise label 10 s from 3 s of it),
        but never below ``2 * min_speech``.
    adapt : bool
        Adapt to the recording's speaker(s) without labels: once ``adapt_after`` segments
        are recognised, each next segment is read by the recognizer's speaker-adapted head,
        standardised by the statistics of every segment so far (causal: a live stream
        could be processed the same way). Needs a :class:`ser.inference.Recognizer` with
        an adapted head.
    adapt_after : int
        Segments seen before adaptation starts (statistics of fewer are too noisy).
    batch_size : int
        Segments recognised together once that many have ended (with a recognizer that has
        ``predict_many``, as :class:`ser.inference.Recognizer` does): their features on ``jobs``
        worker threads, then one network call. Memory grows by at most ``batch_size *
        max_segment`` seconds of samples. 1 recognises each segment as soon as it ends, in this
        thread; the results are the same to float round-off.
    jobs : int, optional
        Worker threads for a batch's features (default: all cores).

    Returns
    -------
    Timeline
        A list of :class:`Segment` in time order, with the recording's duration and source.
        Segments the recognizer refuses with :class:`AudioError` (e.g. silent) are left out
        and logged.

    Raises
    ------
    AudioError
        The file is missing, empty or unreadable.
    ConfigError
        A setting is out of range.
    """
    from tqdm.auto import tqdm

    model_audio = getattr(getattr(recognizer, "config", None), "audio", None)
    if sr is None:
        sr = int(getattr(model_audio, "sample_rate", AudioConfig().sample_rate))
    if max_segment is None:
        window = float(getattr(model_audio, "duration", MAX_SEGMENT) or MAX_SEGMENT)
        max_segment = max(min(MAX_SEGMENT, window), 2 * min_speech)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r}: expected a positive integer")
    limit = getattr(model_audio, "max_duration", None)
    if limit is not None and max_segment > limit:
        raise ConfigError(f"max_segment={max_segment!r}: expected at most the model's max_duration {limit:g} s")
    vad = EnergyVAD(sr=sr, margin_db=margin_db, threshold_db=threshold_db, min_speech=min_speech,
                    min_gap=min_gap, max_segment=max_segment)
    log.debug("timeline: sr=%d, max_segment=%g s", sr, max_segment)
    total = file_duration(path)
    blocks = stream_audio(path, sr=sr, block_seconds=block_seconds)
    # Samples from index `base` on: the open segment and the undecided frames, nothing older.
    buffer = np.zeros(0, dtype=np.float32)
    base = 0
    segments: list[Segment] = []
    skipped = 0
    running = RunningStats() if adapt else None
    if adapt:
        recognizer.require_adapted_head()

    batched = batch_size > 1 and hasattr(recognizer, "predict_many")
    # Segments that have ended but are not recognised yet: (start, end, samples), at most one batch
    # plus the segments of one block.
    pending: list[tuple[int, int, np.ndarray]] = []

    def recognise(spans: list[tuple[int, int]], *, last: bool = False) -> None:
        nonlocal skipped
        for a, b in spans:
            if a < base:  # cannot happen while EnergyVAD.keep_from holds; fail loudly if it does
                raise RuntimeError(f"segment at sample {a} was already discarded (buffer starts at {base})")
            pending.append((a, b, buffer[a - base:b - base].copy()))
        if pending and (last or not batched or len(pending) >= batch_size):
            skipped += _recognise_batch(pending, recognizer, sr, segments, running=running, adapt_after=adapt_after,
                                        batched=batched, jobs=jobs, source=path)
            pending.clear()

    with tqdm(total=round(total, 1), disable=not progress, desc="timeline", unit="s",
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:
        for block in blocks:
            buffer = np.concatenate([buffer, block])
            recognise(vad._feed(block))
            keep = vad.keep_from
            if keep > base:
                buffer = buffer[keep - base:]
                base = keep
            bar.update(min(block.size / sr, bar.total - bar.n))
        recognise(vad._flush(), last=True)
    log.info("%s: %.1f s, %d speech segments recognised, %d skipped", path, total, len(segments), skipped)
    classes = getattr(recognizer, "classes", None)
    return Timeline(segments, duration=total, source=str(path), classes=classes)


def _recognise_batch(batch: list[tuple[int, int, np.ndarray]], recognizer, sr: int, segments: list, *,
                     running: RunningStats | None, adapt_after: int, batched: bool, jobs: int | None,
                     source) -> int:
    """Append a :class:`Segment` per ``(start, end, y)`` of ``batch`` to ``segments``; returns how many were refused."""
    ys = [y for _, _, y in batch]
    if running is None:
        results = recognizer.predict_many(ys, sr, jobs=jobs) if batched else [
            _attempt(recognizer.predict, y, sr) for y in ys]
    else:
        # The speaker statistics are causal: features may be computed together, but each segment is
        # read with the statistics of the segments before it (and itself), in order.
        features = recognizer.frontend.clips(ys, sr, jobs=jobs) if batched else [
            _attempt(recognizer.features, y, sr) for y in ys]
        results = []
        for x in features:
            if not isinstance(x, SERError):
                running.add(x)
                x = recognizer.predict_features(x, speaker=running.stats() if running.n >= adapt_after else None)
            results.append(x)
    skipped = 0
    for (a, b, _), p in zip(batch, results):
        if isinstance(p, AudioError):
            log.info("%s: segment %.2f-%.2f s skipped (%s)", source, a / sr, b / sr, p)
            skipped += 1
        elif isinstance(p, SERError):
            raise p
        else:
            segments.append(Segment(a / sr, b / sr, p.label, float(p.confidence), dict(p.scores)))
    return skipped


def _attempt(fn, y: np.ndarray, sr: int):
    """``fn(y, sr)``, or the :class:`AudioError` it raised (a segment the model refuses is skipped)."""
    try:
        return fn(y, sr)
    except AudioError as exc:
        return exc


# --- writers ------------------------------------------------------------------------------
def write_json(segments: Sequence[Segment], path: str | os.PathLike, *, source: str | os.PathLike | None,
               duration: float) -> Path:
    """Write ``{"source", "duration", "segments": [...]}`` as one JSON document (atomically)."""
    return atomic_write_text(path, _json_text(segments, source=source, duration=duration))


def _json_text(segments: Sequence[Segment], *, source: str | os.PathLike | None, duration: float) -> str:
    doc = {"source": None if source is None else str(source), "duration": round(float(duration), 3),
           "segments": [s.to_dict() for s in segments]}
    return json.dumps(doc, indent=2) + "\n"


def write_csv(segments: Sequence[Segment], path: str | os.PathLike, *,
              classes: Sequence[str] | None = None) -> Path:
    """Write ``start,end,label,confidence,<one column per class>`` rows (atomically).

    ``classes`` fixes the score columns (default: the first segment's classes), so an empty
    timeline still gets the full header.
    """
    return atomic_write_text(path, _csv_text(segments, classes=classes))


def _csv_text(segments: Sequence[Segment], *, classes: Sequence[str] | None) -> str:
    if classes is None:
        classes = list(segments[0].scores) if segments else []
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["start", "end", "label", "confidence", *classes])
    for s in segments:
        writer.writerow([f"{s.start:.3f}", f"{s.end:.3f}", s.label, f"{s.confidence:.6f}",
                         *(f"{s.scores.get(c, float('nan')):.6f}" for c in classes)])
    return buf.getvalue()


def plot_timeline(segments: Sequence[Segment], path: str | os.PathLike, *, classes: Sequence[str],
                  duration: float, title: str = "") -> Path:
    """Save a PNG timeline: one coloured bar per segment, height = confidence.

    Recordings longer than two minutes are wrapped over several rows (at most 12) so that short
    segments stay visible. The figure is :func:`ser.plot.timeline`'s.

    Parameters
    ----------
    segments : sequence of Segment
        As returned by :func:`timeline`.
    path : str or path-like
        The PNG to write (atomically).
    classes : sequence of str
        Emotions in legend order; each keeps its colour whatever the recording.
    duration : float
        Length of the recording in seconds (the x-axis extent).
    title : str
        Figure title, e.g. the file name.
    """
    return atomic_write_bytes(path, _png_bytes(segments, classes=classes, duration=duration, title=title))


def _png_bytes(segments: Sequence[Segment], *, classes: Sequence[str], duration: float, title: str) -> bytes:
    from ser import plot

    fig = plot.timeline(list(segments), duration=duration, classes=classes, title=title or "emotion timeline")
    return plot.to_png(fig, dpi=110)


def save_timeline(segments: Sequence[Segment], stem: str | os.PathLike, *, source: str | os.PathLike | None,
                  duration: float, classes: Sequence[str]) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.csv`` and ``<stem>.png``; returns the paths by kind.

    All or none: each is rendered in memory first, then written atomically; if
    one cannot be written, those already written by this call are removed. The
    PNG needs matplotlib (the ``plot`` extra); without it, JSON and CSV only.

    Raises
    ------
    OutputError
        A file cannot be written (one line naming it).
    """
    stem = Path(stem)
    name = stem.name
    payloads = {
        "json": _json_text(segments, source=source, duration=duration).encode(),
        "csv": _csv_text(segments, classes=classes).encode(),
    }
    try:
        payloads["png"] = _png_bytes(segments, classes=classes, duration=duration,
                                     title=Path(source).name if source is not None else "")
    except ImportError:
        log.warning('no timeline plot: matplotlib is not installed (pip install "speech-emotion-recognition[plot]")')
    written: dict[str, Path] = {}
    for kind, data in payloads.items():
        path = stem.with_name(f"{name}.{kind}")
        try:
            written[kind] = atomic_write_bytes(path, data)
        except OSError as exc:
            for done in written.values():
                done.unlink(missing_ok=True)
            raise OutputError(f"{path}: cannot write the timeline ({exc.strerror or exc})") from None
    return written


def check_writable(stem: str | os.PathLike) -> None:
    """Raise :class:`OutputError` now if files next to ``stem`` cannot be created (before hours of work)."""
    import tempfile

    folder = Path(stem).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write the timeline there ({exc.strerror or exc})") from None
