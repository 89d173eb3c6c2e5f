"""The causal emotion timeline of a live stream: audio blocks in, each segment out as soon as it ends.

:func:`ser.timeline.timeline` reads a file; a microphone has no file. :class:`LiveTimeline` does the
same work on audio that arrives piece by piece: it resamples to the model's rate (one
:class:`soxr.ResampleStream`, so block edges are seamless), feeds the samples to
:class:`ser.timeline.EnergyVAD` with the settings :func:`~ser.timeline.timeline` uses, and keeps only
the samples a future segment can still include (the detector's ``keep_from``). Fed the samples of a
file at the model's rate, it finds the same segments as ``timeline()`` on that file, and recognises
them the same way (``adapt`` included), so a live stream and ``ser predict --timeline`` agree.

Finding segments is cheap and happens in :meth:`LiveTimeline.feed`; recognising one is not, so it is a
separate call (:meth:`LiveTimeline.recognise`) that the service runs on a worker thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ser.errors import AudioError, ConfigError
from ser.timeline import ADAPT_AFTER, MAX_SEGMENT, EnergyVAD, Segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Span:
    """A finished stretch of speech: seconds from the start of the stream and its samples at the model rate."""

    start: float
    end: float
    y: np.ndarray


class LiveTimeline:
    """Speech segments of a live stream and their emotions, causally.

    Parameters
    ----------
    recognizer : ser.inference.Recognizer
        The model; its ``config.audio`` sets the rate and the longest segment, as in ``timeline()``.
    sample_rate : int
        Rate of the audio that will be fed (resampled to the model's rate here).
    speaker : str or SpeakerProfile, optional
        An enrolled speaker: every segment is read by the adapted head relative to that profile.
    adapt : bool
        Unlabelled adaptation to the stream's speaker, as ``timeline(adapt=True)``: from the
        ``adapt_after``-th segment on, statistics of every segment so far.
    margin_db, threshold_db, min_speech, min_gap : float
        Voice-activity settings (see :class:`ser.timeline.EnergyVAD`); the defaults are ``timeline()``'s.
    """

    def __init__(self, recognizer, *, sample_rate: int, speaker=None, adapt: bool = False,
                 adapt_after: int = ADAPT_AFTER, margin_db: float = 10.0, threshold_db: float = -60.0,
                 min_speech: float = 0.5, min_gap: float = 0.3) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
                or not 8000 <= sample_rate <= 192000:
            raise ConfigError(f"sample_rate={sample_rate!r}: expected an integer from 8000 to 192000")
        if speaker is not None and adapt:
            raise ConfigError("give speaker or adapt, not both")
        audio = recognizer.config.audio
        self.recognizer = recognizer
        self.sr = int(audio.sample_rate)
        self.sample_rate = int(sample_rate)
        # The longest segment as timeline() chooses it: 10 s, or the model's analysis window if shorter.
        window = float(getattr(audio, "duration", MAX_SEGMENT) or MAX_SEGMENT)
        max_segment = max(min(MAX_SEGMENT, window), 2 * min_speech)
        self._vad = EnergyVAD(sr=self.sr, margin_db=margin_db, threshold_db=threshold_db, min_speech=min_speech,
                              min_gap=min_gap, max_segment=max_segment)
        self._resampler = None
        if self.sample_rate != self.sr:
            import soxr

            self._resampler = soxr.ResampleStream(self.sample_rate, self.sr, 1, dtype="float32", quality="HQ")
        self._speaker = speaker
        if speaker is not None:
            self._speaker = recognizer.profile(speaker)  # checked now: a bad profile fails before any audio
        self._running = _RunningStats() if adapt else None
        if adapt:
            recognizer.require_adapted_head()
        self._adapt_after = adapt_after
        self._buffer = np.zeros(0, dtype=np.float32)  # samples from index _base on, at the model rate
        self._base = 0
        self._received = 0  # input samples
        self._odd = b""  # a PCM16 byte left over from the previous frame
        self._closed = False
        self.skipped = 0

    @property
    def seconds(self) -> float:
        """Seconds of audio received so far."""
        return self._received / self.sample_rate

    def feed_pcm16(self, data: bytes) -> list[Span]:
        """Add little-endian 16-bit mono PCM bytes (a frame may end mid-sample); see :meth:`feed`."""
        data = self._odd + bytes(data)
        cut = len(data) - len(data) % 2
        self._odd = data[cut:]
        y = np.frombuffer(data[:cut], dtype="<i2").astype(np.float32) / 32768.0
        return self.feed(y)

    def feed(self, y: np.ndarray) -> list[Span]:
        """Add float samples in [-1, 1] at :attr:`sample_rate`; returns the speech spans finished by them.

        Non-finite samples are replaced by 0 (as ``timeline()`` does for a damaged file).
        """
        if self._closed:
            raise RuntimeError("LiveTimeline.feed after flush()")
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(y)):
            y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
        self._received += y.size
        if self._resampler is not None:
            y = self._resampler.resample_chunk(y)
        return self._spans(y, self._vad.feed(y))

    def flush(self) -> list[Span]:
        """End of the stream: the spans still open."""
        if self._closed:
            return []
        tail = np.zeros(0, dtype=np.float32)
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        spans = self._spans(tail, self._vad.feed(tail))
        spans += self._spans(np.zeros(0, dtype=np.float32), self._vad.flush())
        self._closed = True
        return spans

    def _spans(self, y: np.ndarray, found: list[tuple[float, float]]) -> list[Span]:
        self._buffer = np.concatenate([self._buffer, y]) if y.size else self._buffer
        out = []
        for start, end in found:
            # EnergyVAD reports sample / sr; rounding gives the sample index back exactly.
            a, b = round(start * self.sr), round(end * self.sr)
            if a < self._base:  # cannot happen while EnergyVAD.keep_from holds
                raise RuntimeError(f"segment at sample {a} was already discarded (buffer starts at {self._base})")
            out.append(Span(a / self.sr, b / self.sr, self._buffer[a - self._base:b - self._base].copy()))
        keep = self._vad.keep_from
        if keep > self._base:
            self._buffer = self._buffer[keep - self._base:]
            self._base = keep
        return out

    def recognise(self, span: Span) -> Segment | None:
        """The emotion of one span, or None when the model refuses its audio (e.g. silent; counted in ``skipped``).

        Spans must be recognised in order when adapting (the statistics are causal).
        """
        rec = self.recognizer
        try:
            if self._running is None:
                p = rec.predict(span.y, self.sr, speaker=self._speaker)
            else:
                x = rec.features(span.y, self.sr)
                self._running.add(x)
                stats = self._running.stats() if self._running.n >= self._adapt_after else None
                p = rec.predict_features(x, speaker=stats)
        except AudioError as exc:
            self.skipped += 1
            log.info("live segment %.2f-%.2f s skipped (%s)", span.start, span.end, exc)
            return None
        return Segment(span.start, span.end, p.label, float(p.confidence), dict(p.scores))


class _RunningStats:
    """Mean and variance of the features seen so far in constant memory (as ``timeline(adapt=True)`` keeps them)."""

    def __init__(self) -> None:
        self.n, self.ref, self.total, self.squares = 0, None, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if self.ref is None:
            self.ref = x
        d = x - self.ref
        self.n += 1
        self.total = self.total + d
        self.squares = self.squares + d * d

    def stats(self):
        from ser.speakers import SpeakerStats

        shift = self.total / self.n
        return SpeakerStats(self.ref + shift, np.maximum(self.squares / self.n - shift * shift, 0.0), self.n)
