"""Audio loading and validation: any readable file → float32 mono at the model rate, whole or block by block."""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ser.errors import AudioError, ConfigError

log = logging.getLogger(__name__)

#: Peak amplitude below which a clip is treated as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4

#: Peak amplitude above which an array is not taken for audio. Float audio is nominally within
#: [-1, 1] and integer PCM within 2**31; anything louder (a float WAV scaled by 1e20, say) only
#: overflows the features into NaN or, peak-normalised, yields a confident but meaningless emotion.
MAX_PEAK = 1e12

#: Input sample rates accepted (Hz). Below 1 kHz nothing of speech is left; the bounds also keep
#: resampling's output within 16 times the input's size (1 Hz to 16 kHz would be 16000 times).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768_000

#: Peak-to-peak amplitude below which :func:`check_speech` calls a clip near-silent (about -66 dBFS);
#: the quietest of the 1440 RAVDESS clips spans 8e-3 in its first 3 s.
NEAR_SILENT = 1e-3

#: Frames read at a time when a whole file must be scanned (64 Ki frames: 256 KiB per channel).
BLOCK_FRAMES = 1 << 16

_TRUNCATED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Fields of a WAV fmt chunk as libsndfile's header log prints them.
_WAV_FIELD = re.compile(r"^\s*(Format|Channels|Block Align|Bit Width)\s*:\s*(0x[0-9A-Fa-f]+|\d+)", re.MULTILINE)
# WAVE_FORMAT_PCM, _IEEE_FLOAT and _EXTENSIBLE: samples stored whole, one after another.
_PLAIN_WAV_FORMATS = {0x1, 0x3, 0xFFFE}


def read_info(path: str | os.PathLike):
    """Read and check an audio file's header without decoding it.

    Returns
    -------
    soundfile._SoundFileInfo
        ``frames``, ``samplerate``, ``channels``...

    Raises
    ------
    AudioError
        One line naming the file: missing, a folder, empty, not audio, a
        truncated WAV, or no frames.
    """
    import soundfile as sf

    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path), verbose=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
        raise AudioError(f"{path}: not a readable audio file ({error_reason(exc)})") from None
    _check_header(path, info.extra_info, info.frames, info.samplerate)
    return info


def _check_path(path: Path) -> None:
    # One stat call: missing, a folder, or empty.
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError(f"{path}: file not found") from None
    except PermissionError:
        raise AudioError(f"{path}: permission denied") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(f"{path}: is a folder, not an audio file")
    if st.st_size == 0:
        raise AudioError(f"{path}: empty file")
    # stat() needs no read permission, and libsndfile reports a file it may not open as
    # "System error.": open it here so the reason is named. O_NONBLOCK: a named pipe would
    # otherwise wait here for a writer.
    try:
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except PermissionError:
        raise AudioError(f"{path}: permission denied") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_header(path: Path, extra_info: str | None, frames: int, samplerate: int) -> None:
    # libsndfile quietly shortens a WAV whose data chunk runs past the end of the
    # file (an interrupted copy); its header log is the only place that says so.
    cut = _TRUNCATED.search(extra_info or "")
    if cut and int(cut.group(2)) < int(cut.group(1)):
        raise AudioError(f"{path}: truncated file ({cut.group(2)} of {cut.group(1)} data bytes present)")
    _check_sample_size(path, extra_info or "")
    if frames <= 0 or samplerate <= 0:
        raise AudioError(f"{path}: no audio frames")


def _check_sample_size(path: Path, extra_info: str) -> None:
    # libsndfile accepts any bit width of a WAV's fmt chunk and reads ceil(bits / 8) bytes per
    # sample, whatever the chunk's block align says: a 16-bit file whose header claims 7 bits
    # decodes as twice as many 8-bit samples of noise. Refuse what cannot be a plain WAV.
    fields = {}
    for name, value in _WAV_FIELD.findall(extra_info):
        fields.setdefault(name, int(value, 16) if value.startswith("0x") else int(value))
    if fields.get("Format") not in _PLAIN_WAV_FORMATS or not {"Channels", "Block Align", "Bit Width"} <= set(fields):
        return  # not a WAV fmt chunk, or a compressed one (ADPCM, GSM...) whose blocks hold many samples
    bits, align, channels = fields["Bit Width"], fields["Block Align"], fields["Channels"]
    if not 8 <= bits <= 64:
        raise AudioError(f"{path}: {bits} bits per sample in the header: not a valid WAV sample size")
    if align != channels * -(-bits // 8):
        raise AudioError(f"{path}: inconsistent WAV header ({bits} bits per sample x {channels} channels "
                         f"in blocks of {align} bytes)")


def load(path: str | os.PathLike, *, sr: int, duration: float | None = None,
         min_duration: float = 0.1, max_duration: float | None = None) -> np.ndarray:
    """Decode an audio file to float32 mono at ``sr``.

    Parameters
    ----------
    path : str or path-like
        Any format libsndfile reads (WAV, FLAC, OGG, MP3, ...), any rate and channel count.
    sr : int
        Target sample rate; the signal is resampled with soxr (high quality).
    duration : float, optional
        Read at most this many seconds from the start (like ``librosa.load(duration=...)``).
    min_duration : float
        Files shorter than this are rejected.
    max_duration : float, optional
        Files longer than this are rejected before decoding.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(n_samples,)``.

    Raises
    ------
    AudioError
        One line naming the file and the problem: missing, empty, not audio,
        truncated, too short, too long or silent.
    """
    return decode(path, sr=sr, duration=duration, min_duration=min_duration, max_duration=max_duration)[0]


def decode(path: str | os.PathLike, *, sr: int, duration: float | None = None, min_duration: float = 0.1,
           max_duration: float | None = None) -> tuple[np.ndarray, float]:
    """Decode an audio file as :func:`load` does, opening it once; also return its length.

    Parameters
    ----------
    path, sr, duration, min_duration, max_duration
        As for :func:`load`.

    Returns
    -------
    y : numpy.ndarray
        float32 array of shape ``(n_samples,)`` at ``sr``.
    file_duration : float
        Seconds of audio in the whole file (not only the decoded part).

    Raises
    ------
    AudioError
        As :func:`load`.
    """
    import soundfile as sf

    path = Path(path)
    _check_path(path)
    try:
        f = sf.SoundFile(str(path))
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
        raise AudioError(f"{path}: not a readable audio file ({error_reason(exc)})") from None
    with f:
        n_frames, file_sr = f.frames, f.samplerate
        _check_header(path, f.extra_info, n_frames, file_sr)
        file_duration = n_frames / file_sr
        # From the header, before a sample is decoded: an hour-long file costs nothing to refuse.
        if max_duration is not None and file_duration > max_duration:
            raise AudioError(f"{path}: {file_duration:.1f} s is longer than the {max_duration:g} s limit for one "
                             "clip")
        frames = -1 if duration is None else int(round(duration * file_sr))
        try:
            y = f.read(frames, dtype="float32", always_2d=True)
            expected = n_frames if frames < 0 else min(frames, n_frames)
            # A file cut short (e.g. an interrupted copy) decodes fewer frames than its header promises.
            if y.shape[0] < expected * 0.99 - 1:
                raise AudioError(f"{path}: truncated file ({y.shape[0]} of {expected} frames decoded)")
            # The analysed start is silent; only a file that is silent throughout is an error.
            silent_start = frames > 0 and n_frames > frames and _peak(y) < SILENCE_PEAK and _sounds_later(f)
        except AudioError:
            raise
        except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
            raise AudioError(f"{path}: cannot decode audio ({error_reason(exc)})") from None
    if silent_start:
        log.warning("%s: the first %.1f s are silent", path, duration)
    return prepare(y, file_sr, sr=sr, min_duration=min_duration, name=str(path),
                   allow_silent=silent_start), file_duration


def _sounds_later(f) -> bool:
    """Whether the rest of open file ``f`` has a sample at or above :data:`SILENCE_PEAK`."""
    # Block by block, stopping at the first sound: memory stays bounded however long the file.
    return any(_peak(block) >= SILENCE_PEAK
               for block in f.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True))


def _peak(y: np.ndarray) -> float:
    return float(np.max(np.abs(y))) if y.size else 0.0


def prepare(y: np.ndarray, sr_in: int, *, sr: int, min_duration: float = 0.1, name: str = "audio",
            allow_silent: bool = False) -> np.ndarray:
    """Validate an in-memory signal and bring it to float32 mono at ``sr``.

    Parameters
    ----------
    y : array_like
        Real numbers (integer or float), shape ``(n_samples,)`` or ``(n_samples, n_channels)``.
    sr_in : int
        Sample rate of ``y``, :data:`MIN_SAMPLE_RATE` to :data:`MAX_SAMPLE_RATE` Hz.
    sr : int
        Target sample rate.
    min_duration : float
        Shorter signals are rejected.
    name : str
        Used in error messages.
    allow_silent : bool
        Accept an all-silent signal (a silent stretch of a file that has sound elsewhere).

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(n_samples,)``, every sample finite.

    Raises
    ------
    AudioError
        One line naming ``name``: a bad rate, not an array of real numbers, a wrong shape, no
        samples, NaN or infinite samples, a peak above :data:`MAX_PEAK`, too short, or silent.
    """
    _check_rate(sr_in, name)
    y = _as_mono(y, name)
    seconds = y.size / sr_in
    if seconds < min_duration:
        raise AudioError(f"{name}: {seconds:.3f} s is shorter than the {min_duration:g} s minimum")
    if not allow_silent and _peak(y) < SILENCE_PEAK:
        raise AudioError(f"{name}: silent (peak amplitude below {SILENCE_PEAK:g})")
    if sr_in != sr:
        import soxr

        y = soxr.resample(y, sr_in, sr, quality="HQ").astype(np.float32, copy=False)
        if y.size == 0:  # only with min_duration=0: a few samples resample to none
            raise AudioError(f"{name}: {seconds:.3g} s is too short to resample")
    return y


def _check_rate(sr_in, name: str) -> None:
    # bool is an int subclass: True would be read as 1 Hz.
    if isinstance(sr_in, (bool, np.bool_)) or not isinstance(sr_in, (int, np.integer)) or sr_in <= 0:
        raise AudioError(f"{name}: sample_rate={sr_in!r}: expected a positive integer")
    if not MIN_SAMPLE_RATE <= sr_in <= MAX_SAMPLE_RATE:
        raise AudioError(f"{name}: sample_rate={sr_in!r}: expected {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")


def _as_mono(y, name: str) -> np.ndarray:
    """``y`` checked (real numbers, 1 or 2 dimensions, finite, at most MAX_PEAK) as float32 mono."""
    try:
        y = np.asarray(y)
    except Exception as exc:  # noqa: BLE001 - ragged lists, objects numpy cannot hold
        raise AudioError(f"{name}: not an array of samples ({_first_line(exc)})") from None
    if y.dtype.kind not in "iuf":
        # complex: the imaginary part would be dropped silently; bool, str, object: not samples.
        raise AudioError(f"{name}: samples of type {y.dtype}: expected real numbers (integer or float)")
    if y.ndim not in (1, 2):
        raise AudioError(f"{name}: expected shape (n_samples,) or (n_samples, n_channels), got {y.shape}")
    if y.size == 0:
        raise AudioError(f"{name}: no audio samples")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    # Checked before the cast: float64 above float32's range would become inf, int64 extremes overflow abs().
    peak = max(abs(float(np.max(y))), abs(float(np.min(y))))
    if peak > MAX_PEAK:
        raise AudioError(f"{name}: peak amplitude {peak:.3g} is not an audio signal (expected at most {MAX_PEAK:g})")
    y = y.astype(np.float32, copy=False)
    return y.mean(axis=1) if y.ndim == 2 else y


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_speech(y: np.ndarray, sr: int, *, name: str = "audio") -> None:
    """Refuse a signal that is clearly not speech: constant, near-silent, a square wave or a pure tone.

    A conservative check for prediction (a test tone, a DC offset or a dead microphone gets an
    error instead of a confident emotion), not a voice activity detector: noise, music and
    speech-like synthetic signals pass. It looks at the whole signal's extremes and at up to
    32 frames of 512 samples spread over it, so it costs well under a millisecond per clip.

    Parameters
    ----------
    y : numpy.ndarray
        float32, shape ``(n_samples,)``, finite (as :func:`prepare` returns it).
    sr : int
        Sample rate of ``y`` (used to name a tone's frequency).
    name : str
        Used in the error message.

    Raises
    ------
    AudioError
        ``"<name>: no speech found (<reason>)"``.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0:
        raise AudioError(f"{name}: no audio samples")
    reason = _not_speech(y, sr)
    if reason:
        raise AudioError(f"{name}: no speech found ({reason})")


def _not_speech(y: np.ndarray, sr: int) -> str | None:
    """Why ``y`` is clearly not speech, or ``None``."""
    high, low = float(y.max()), float(y.min())
    if high - low < NEAR_SILENT:
        if max(abs(high), abs(low)) >= NEAR_SILENT:
            return f"only a constant offset of {(high + low) / 2:.3g}"
        return f"near-silent, peak-to-peak amplitude {high - low:.2g}"
    frames = _spread_frames(y)
    if frames.shape[1] < 64:
        return None  # too short to judge: let it through
    if _is_square_wave(frames - np.float32(y.mean())):
        return "a square wave"
    freq = _pure_tone(frames, sr)
    return None if freq is None else f"a pure tone of about {freq:.0f} Hz"


def _spread_frames(y: np.ndarray, length: int = 512, count: int = 32) -> np.ndarray:
    """Up to ``count`` frames of ``length`` samples spread evenly over ``y``, shape ``(n, length)``."""
    length = min(length, y.size)
    starts = np.linspace(0, y.size - length, max(1, min(count, y.size // length))).astype(np.intp)
    return y[starts[:, None] + np.arange(length)]


def _is_square_wave(x: np.ndarray) -> bool:
    """Whether frames ``x`` (offset removed) hold two levels ±A, changing at regular intervals."""
    a = np.abs(x)
    level = float(a.mean())
    # Speech is peaky: its mean magnitude stays below 0.13 of the peak in every RAVDESS clip
    # (square wave: about 1; sine: 0.64). This cheap test sends speech out straight away.
    if level < 0.5 * float(a.max()):
        return False
    # Two levels: most samples within 20% of ±A (a sine has a quarter there; resampling's
    # ringing moves a square wave's samples by up to 9%).
    if np.mean(np.abs(a - level) <= 0.2 * level) < 0.5:
        return False
    # Periodic: sign changes at regular intervals (hard-clipped speech changes sign irregularly).
    row, col = np.nonzero(np.diff(np.signbit(x), axis=1))
    gaps = np.diff(col)[np.diff(row) == 0]
    if gaps.size < 4:
        return False
    low, mid, high = np.percentile(gaps, [5, 50, 95])
    return bool(high - low <= 2 + 0.2 * mid)


def _pure_tone(frames: np.ndarray, sr: int) -> float | None:
    """The frequency (Hz) if every sounding frame is one sinusoid, else ``None``."""
    x = frames - frames.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(x * np.hanning(x.shape[1]).astype(np.float32), axis=1)) ** 2
    energy = power.sum(axis=1)
    # Frames within 50 dB of the loudest count; quieter ones are pauses between tones.
    sounding = energy > 1e-5 * energy.max()
    if not sounding.any():
        return None
    power, energy = power[sounding], energy[sounding]
    peak = power.argmax(axis=1)
    bins = np.arange(power.shape[1])
    # The Hann window's main lobe: a sinusoid's power lies within +-2 bins of its peak; +-3 for margin.
    lobe = np.abs(bins[None, :] - peak[:, None]) <= 3
    share = (power * lobe).sum(axis=1) / energy
    # Every sounding frame must be one line. Speech never comes close (each RAVDESS clip has a
    # frame with at most 0.43 of its power there), and 1% of the power outside the line is
    # already more than a generator's noise or distortion leaves.
    if share.min() <= 0.99:
        return None
    # A sinusoid changes sign twice per period (counted over the sounding frames).
    changes = np.count_nonzero(np.diff(np.signbit(x[sounding]), axis=1))
    return changes / 2 * sr / (int(sounding.sum()) * (x.shape[1] - 1))


def trim_silence(y: np.ndarray, *, top_db: float, frame_length: int = 2048, hop_length: int = 512) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``top_db`` below the loudest frame.

    The same computation as ``librosa.effects.trim`` (centred frames, RMS in dB
    relative to the maximum), reimplemented because importing ``librosa.effects``
    costs seconds of start-up (it pulls in ``scipy.signal``). Returns an empty
    array if nothing is above the threshold.
    """
    pad = frame_length // 2
    padded = np.pad(y, (pad, pad))
    # Frames laid out as librosa.util.frame does, (frame_length, n_frames), so the
    # float32 means (and hence the decisions at the threshold) are identical.
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length].swapaxes(-1, -2)
    power = np.mean(np.square(frames, dtype=np.float32), axis=-2)
    db = 10 * np.log10(np.maximum(1e-10, power)) - 10 * np.log10(max(1e-10, float(power.max())))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return y[:0]
    return y[loud[0] * hop_length: min(y.shape[-1], (loud[-1] + 1) * hop_length)]


def fix_length(y: np.ndarray, *, size: int) -> np.ndarray:
    """Cut or zero-pad (at the end) ``y`` to exactly ``size`` samples."""
    if y.shape[0] >= size:
        return y[:size]
    return np.pad(y, (0, size - y.shape[0]))


def error_reason(exc: Exception) -> str:
    """The reason part of a libsndfile error message (without the repeated path)."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    # libsndfile messages repeat the path; keep only the reason.
    return text.split(": ", 1)[-1] if text.startswith(("Error opening", "<")) else text


# --- long files, block by block (the timeline, live streams) ---------------------------
def file_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, from its header (nothing is decoded).

    Raises
    ------
    AudioError
        One line naming the file: missing, a folder, empty, not audio or without frames.
    """
    info = read_info(Path(path))
    return info.frames / info.samplerate


def stream_audio(path: str | os.PathLike, *, sr: int, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Decode an audio file block by block as float32 mono at ``sr``.

    The file is checked when this function is called (not at the first ``next``), so a bad
    file fails before any work starts.

    Parameters
    ----------
    path : str or path-like
        Any format libsndfile reads (WAV, FLAC, OGG, MP3, ...), any rate and channel count.
    sr : int
        Output sample rate. Resampling uses one :class:`soxr.ResampleStream` for the whole
        file, so block edges are seamless: the concatenated blocks equal (to float rounding)
        the file resampled in one go.
    block_seconds : float
        Seconds of the *file* decoded per block; memory use is proportional to it.

    Yields
    ------
    numpy.ndarray
        float32 arrays of shape ``(n_samples,)``; lengths vary slightly (resampler delay),
        the last may be short, and an empty one may appear.

    Raises
    ------
    AudioError
        Missing, empty or unreadable file, or a decoding failure part-way through.
    ConfigError
        ``sr`` or ``block_seconds`` out of range.
    """
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ConfigError(f"sr={sr!r}: expected a positive integer")
    if not block_seconds > 0:
        raise ConfigError(f"block_seconds={block_seconds!r}: expected a positive number")
    path = Path(path)
    info = read_info(path)
    return _blocks(path, info, int(sr), max(1, int(round(block_seconds * info.samplerate))))


def _blocks(path: Path, info, sr: int, blocksize: int) -> Iterator[np.ndarray]:
    import soundfile as sf

    resampler = None
    if info.samplerate != sr:
        import soxr

        resampler = soxr.ResampleStream(info.samplerate, sr, 1, dtype="float32", quality="HQ")
    decoded = 0
    warned = False
    try:
        with sf.SoundFile(str(path)) as fh:
            for block in fh.blocks(blocksize=blocksize, dtype="float32", always_2d=True):
                decoded += block.shape[0]
                # Mixing before resampling halves the resampler's work for stereo.
                y = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
                if not np.all(np.isfinite(y)):
                    # One bad sample would smear through the resampler; treat it as silence.
                    if not warned:
                        log.warning("%s: NaN or infinite samples replaced by 0", path)
                        warned = True
                    y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
                y = np.ascontiguousarray(y, dtype=np.float32)
                yield y if resampler is None else resampler.resample_chunk(y)
    except RuntimeError as exc:  # soundfile's LibsndfileError is a RuntimeError
        raise AudioError(f"{path}: cannot decode audio ({error_reason(exc)})") from None
    if resampler is not None:
        # Flush the resampler's delay line: the last few milliseconds of the file.
        yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    if decoded < info.frames:
        # libsndfile stops early on a damaged file; what was decoded is still usable.
        log.warning("%s: decoded %d of %d frames; the file may be truncated", path, decoded, info.frames)
