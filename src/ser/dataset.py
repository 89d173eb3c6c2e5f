"""Corpus indexing and manifests.

A *manifest* is a CSV with one clip per row. Two forms are accepted everywhere:

* the RAVDESS form written by :func:`index_ravdess`:
  ``path,emotion,actor,gender,intensity,statement,repetition``;
* a generic form: ``path,label[,speaker]``.

Relative paths are resolved against the manifest's folder. In memory a manifest
is a list of :class:`Clip`, sorted by path.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ser.errors import ManifestError
from ser.labels import RAVDESS_CODES, normalize_label
from ser.utils import atomic_write_text

log = logging.getLogger(__name__)

#: Extensions read as audio when scanning folders (anything libsndfile decodes).
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".opus"})

RAVDESS_COLUMNS = ("path", "emotion", "actor", "gender", "intensity", "statement", "repetition")
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


@dataclass(frozen=True)
class Clip:
    """One labelled clip of a manifest.

    Attributes
    ----------
    path : pathlib.Path
        Absolute path of the audio file.
    label : str
        Emotion name from :data:`ser.labels.EMOTIONS`.
    speaker : str
        Speaker id ("" when unknown); splits are grouped by it.
    meta : dict
        Extra columns (RAVDESS: gender, intensity, statement, repetition).
    """

    path: Path
    label: str
    speaker: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def parse_ravdess_name(path: str | os.PathLike) -> Clip | None:
    """Parse a RAVDESS file name ``MM-VV-EE-II-SS-RR-AA.ext`` into a :class:`Clip`.

    Returns ``None`` for names that do not follow the convention or are not
    audio-only speech (modality 03, vocal channel 01).

    Raises
    ------
    ManifestError
        If the name has the RAVDESS shape but an impossible field value.
    """
    path = Path(path)
    match = _RAVDESS_NAME.match(path.stem)
    if not match:
        return None
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    if modality != "03" or channel != "01":
        return None
    if emotion not in RAVDESS_CODES:
        raise ManifestError(f"{path}: emotion code {emotion} is not 01-08")
    if intensity not in ("01", "02") or statement not in _STATEMENTS or repetition not in ("01", "02"):
        raise ManifestError(f"{path}: malformed RAVDESS name (intensity/statement/repetition)")
    if not 1 <= int(actor) <= 24:
        raise ManifestError(f"{path}: actor {actor} is not 01-24")
    return Clip(
        path=path.resolve(),
        label=RAVDESS_CODES[emotion],
        speaker=str(int(actor)),
        meta={
            "gender": "male" if int(actor) % 2 else "female",
            "intensity": "normal" if intensity == "01" else "strong",
            "statement": int(statement),
            "repetition": int(repetition),
        },
    )


def index_ravdess(root: str | os.PathLike) -> list[Clip]:
    """Scan a RAVDESS folder (``Actor_XX/…``, any audio format) for speech clips.

    Files that are not RAVDESS speech clips are skipped with a logged count.

    Raises
    ------
    ManifestError
        If ``root`` does not exist or holds no RAVDESS speech clip.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    clips, skipped = [], 0
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in AUDIO_EXTENSIONS or not path.is_file():
            continue
        clip = parse_ravdess_name(path)
        if clip is None:
            skipped += 1
        else:
            clips.append(clip)
    if skipped:
        log.warning("%s: skipped %d audio files that are not RAVDESS speech clips", root, skipped)
    if not clips:
        raise ManifestError(f"{root}: no RAVDESS speech clips (expected Actor_XX/03-01-EE-II-SS-RR-AA.wav)")
    return clips


def write_manifest(clips: list[Clip], path: str | os.PathLike) -> Path:
    """Write clips as a manifest CSV (RAVDESS columns), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RAVDESS_COLUMNS)
    for c in clips:
        writer.writerow([c.path, c.label, c.speaker, c.meta.get("gender", ""), c.meta.get("intensity", ""),
                         c.meta.get("statement", ""), c.meta.get("repetition", "")])
    return atomic_write_text(path, buf.getvalue())


def read_manifest(path: str | os.PathLike, *, check_files: bool = True) -> list[Clip]:
    """Read a manifest CSV (RAVDESS or generic form) and validate every row.

    Raises
    ------
    ManifestError
        Missing file, no ``path`` or label column, an unknown emotion (naming the
        line), or audio files that do not exist (naming the first, with a count).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    reader.fieldnames = columns
    label_col = "emotion" if "emotion" in columns else "label" if "label" in columns else None
    if "path" not in columns or label_col is None:
        raise ManifestError(f"{path}: expected columns path and label (or emotion), found {columns}")
    speaker_col = "actor" if "actor" in columns else "speaker" if "speaker" in columns else None
    clips, missing = [], []
    for line, row in enumerate(reader, start=2):
        raw = (row.get("path") or "").strip()
        if not raw:
            raise ManifestError(f"{path}:{line}: empty path")
        try:
            label = normalize_label(row.get(label_col) or "")
        except ManifestError as exc:
            raise ManifestError(f"{path}:{line}: {exc}") from None
        audio = Path(raw) if os.path.isabs(raw) else (path.parent / raw)
        if check_files and not audio.is_file():
            missing.append(audio)
        meta = {k: row[k] for k in ("gender", "intensity", "statement", "repetition") if row.get(k)}
        clips.append(Clip(path=audio.resolve(), label=label,
                          speaker=(row.get(speaker_col) or "").strip() if speaker_col else "", meta=meta))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ManifestError(f"{path}: audio file not found: {missing[0]}{more}")
    if not clips:
        raise ManifestError(f"{path}: manifest has no rows")
    return sorted(clips, key=lambda c: str(c.path))


def load_dataset(spec: str | os.PathLike) -> list[Clip]:
    """A manifest CSV or a RAVDESS folder → clips sorted by path."""
    spec = Path(spec)
    if spec.is_dir():
        return sorted(index_ravdess(spec), key=lambda c: str(c.path))
    return read_manifest(spec)


def summarize(clips: list[Clip], *, with_audio: bool = True) -> dict:
    """Class balance, speakers and (optionally) durations, rates and channels.

    Returns
    -------
    dict
        ``{"clips", "labels": {label: n}, "speakers": {speaker: n}, "duration_s":
        {"min", "mean", "max", "total"}, "sample_rates": {sr: n}, "channels": {n: count}}``
    """
    import soundfile as sf

    out: dict = {
        "clips": len(clips),
        "labels": dict(sorted(Counter(c.label for c in clips).items())),
        "speakers": dict(sorted(Counter(c.speaker or "?" for c in clips).items(),
                                key=lambda kv: (len(kv[0]), kv[0]))),
    }
    if with_audio:
        durations, rates, channels, unreadable = [], Counter(), Counter(), 0
        for c in clips:
            try:
                info = sf.info(str(c.path))
            except Exception:  # noqa: BLE001 - counted and reported, not fatal for a summary
                unreadable += 1
                continue
            durations.append(info.frames / info.samplerate)
            rates[info.samplerate] += 1
            channels[info.channels] += 1
        if durations:
            out["duration_s"] = {"min": round(min(durations), 3), "mean": round(sum(durations) / len(durations), 3),
                                 "max": round(max(durations), 3), "total": round(sum(durations), 1)}
        out["sample_rates"] = dict(sorted(rates.items()))
        out["channels"] = dict(sorted(channels.items()))
        out["unreadable"] = unreadable
    return out
