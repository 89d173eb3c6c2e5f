"""Speaker adaptation: per-speaker standardisation of features, and enrolment profiles.

People express emotion on top of their own baseline (pitch, loudness, timbre,
microphone), and that baseline shifts all of a speaker's encoder features alike.
Standardising each speaker's features by the speaker's own mean and variance
removes the shift; a head trained on features standardised the same way (per
training speaker) then reads emotion relative to the speaker.

Statistics from a few clips are noisy, so they are shrunk toward the training
side's typical speaker (:class:`SpeakerNorm`): ``n`` clips weigh ``n / (n + k0)``
against the prior's ``k0``. With no clip at all the prior is used as is.

Enrolment clips are calm, neutral speech, whose mean is not the mean over all
emotions. The offset (and variance ratio) between a training speaker's neutral +
calm clips and all their clips is learned on the training side and applied to an
enrolment before use, so one adapted head serves enrolment and adaptation alike.

A :class:`SpeakerProfile` is a small ``.npz`` file (arrays and a JSON header only,
read with ``allow_pickle=False``): about 40 KB for Whisper-base features.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ser.errors import ModelError, SERError

#: Format version of profile and norm files.
FORMAT = 1
#: Variance floor: keeps constant feature dimensions from dividing by zero.
EPS = 1e-6
#: Emotions of an enrolment recording (a speaker reading calmly).
ENROL_CLASSES = ("neutral", "calm")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Most clips a profile (or the prior) may count: beyond any real enrolment, and small enough that the
#: shrinkage weights n / (n + k0) stay exact in float64.
MAX_CLIPS = 10 ** 9
#: Largest magnitude of a stored mean, standard deviation, shift or scale. Encoder features are far below it
#: (the bundled model's are below 3000); the bound keeps every sum, product and standardised value made from
#: the statistics finite, so a hand-edited file cannot turn into NaN scores.
MAX_STAT = 1e12
#: Most bytes an npz may hold once decompressed: profiles are about 40 KB, a norm file a few hundred KB.
MAX_NPZ_BYTES = 256 * 1024 * 1024


class ProfileError(SERError, ValueError):
    """A speaker profile is missing, malformed, or made for another model's features."""


@dataclass(frozen=True)
class SpeakerStats:
    """Mean and variance of one speaker's features over ``n`` clips."""

    mean: np.ndarray
    var: np.ndarray
    n: int

    @classmethod
    def of(cls, x: np.ndarray) -> SpeakerStats:
        """Statistics of clips ``x``, shape ``(n, *feature_shape)``, ``n >= 1``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError("speaker statistics need at least one clip")
        return cls(x.mean(axis=0), x.var(axis=0), int(x.shape[0]))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Standardise clips ``x`` with these statistics (float32)."""
        return ((x - self.mean) / np.sqrt(self.var + EPS)).astype(np.float32)


class RunningStats:
    """Mean and variance of features seen so far, in constant memory (a live stream, a long recording).

    Sums are kept relative to the first example (the shifted-data algorithm), so a
    large mean does not swamp a small variance.
    """

    def __init__(self) -> None:
        self.n, self.ref, self.total, self.squares = 0, None, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        """Count one feature array."""
        x = np.asarray(x, dtype=np.float64)
        if self.ref is None:
            self.ref = x
        d = x - self.ref
        self.n += 1
        self.total = self.total + d
        self.squares = self.squares + d * d

    def stats(self) -> SpeakerStats:
        """The :class:`SpeakerStats` of everything added so far (at least one array)."""
        shift = self.total / self.n
        return SpeakerStats(self.ref + shift, np.maximum(self.squares / self.n - shift * shift, 0.0), self.n)


@dataclass(frozen=True)
class SpeakerNorm:
    """What an adapted head learned from its training speakers.

    Parameters
    ----------
    prior : SpeakerStats
        The typical training speaker: mean of the speakers' means and of their
        variances (``n`` = number of training speakers).
    enrol_shift, enrol_scale : numpy.ndarray
        Mean over training speakers of (all-clip mean − neutral/calm mean) and of
        (all-clip variance / neutral/calm variance): turns enrolment statistics into
        estimates of all-emotion statistics.
    prior_weight : float
        ``k0``: the prior counts as this many clips when shrinking.
    class_offset, class_var : numpy.ndarray, optional
        ``(C, *feature_shape)``: for each class, the mean over training speakers of (the class's
        clips' mean − all their clips' mean) and of the class's variance, in the model's class
        order. With them, unlabelled statistics are corrected for the mix of emotions they were
        taken from (:meth:`correct`). ``None`` in norms written before they existed.
    class_prior : numpy.ndarray, optional
        ``(C,)``: the class mix behind a training speaker's all-clip statistics.
    """

    prior: SpeakerStats
    enrol_shift: np.ndarray
    enrol_scale: np.ndarray
    prior_weight: float
    class_offset: np.ndarray | None = None
    class_var: np.ndarray | None = None
    class_prior: np.ndarray | None = None

    def _mixture(self, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean offset and variance of a typical speaker's clips drawn with class proportions ``mix``."""
        mix = np.asarray(mix, dtype=np.float64)
        mix = mix / mix.sum()
        offset = np.tensordot(mix, self.class_offset, axes=1)
        spread = self.class_var + (self.class_offset - offset) ** 2
        return offset, np.tensordot(mix, spread, axes=1)

    def correct(self, stats: SpeakerStats, mix: np.ndarray | None) -> SpeakerStats:
        """Statistics of unlabelled clips turned into estimates of the speaker's all-emotion statistics.

        Clips of one emotion have a mean shifted toward that emotion and a smaller spread;
        standardising by them erases the emotion they share. Given ``mix``, the estimated
        class proportions of the clips (the inductive head's mean posterior, no labels), the
        typical shift and spread of that mix (learned on the training speakers) are replaced
        by those of the training mix. A mix equal to the training mix changes nothing.

        Parameters
        ----------
        stats : SpeakerStats
            Raw statistics of the speaker's clips.
        mix : numpy.ndarray or None
            ``(C,)`` nonnegative class proportions; ``None`` (or a norm without class
            statistics) returns ``stats`` unchanged.
        """
        if mix is None or self.class_offset is None:
            return stats
        seen_offset, seen_var = self._mixture(mix)
        full_offset, full_var = self._mixture(self.class_prior)
        return SpeakerStats(stats.mean - seen_offset + full_offset,
                            stats.var * (full_var + EPS) / (seen_var + EPS), stats.n)

    def resolve(self, stats: SpeakerStats | None, kind: str = "adapt") -> SpeakerStats:
        """The statistics to standardise a speaker with.

        Parameters
        ----------
        stats : SpeakerStats or None
            Raw statistics of the speaker's clips (None: no information, use the prior).
        kind : {"adapt", "enrol"}
            ``"enrol"``: ``stats`` come from calm, neutral speech and are corrected first.
        """
        if stats is None:
            return self.prior
        mean, var = stats.mean, stats.var
        if kind == "enrol":
            mean, var = mean + self.enrol_shift, var * self.enrol_scale
        elif kind != "adapt":
            raise ValueError(f"kind={kind!r}: expected 'adapt' or 'enrol'")
        n, k0 = stats.n, self.prior_weight
        return SpeakerStats((n * mean + k0 * self.prior.mean) / (n + k0),
                            (n * var + k0 * self.prior.var) / (n + k0), n)

    def normalize(self, x: np.ndarray, stats: SpeakerStats | None, kind: str = "adapt") -> np.ndarray:
        """Standardise clips ``x`` of one speaker (see :meth:`resolve`)."""
        return self.resolve(stats, kind).apply(x)

    @classmethod
    def fit(cls, x: np.ndarray, speakers: np.ndarray, enrol: np.ndarray, *, prior_weight: float,
            labels: np.ndarray | None = None, n_classes: int | None = None) -> SpeakerNorm:
        """Learn the prior and the enrolment correction (and, given labels, the class statistics) from training clips.

        Parameters
        ----------
        x : numpy.ndarray
            Clean features of the training clips, shape ``(n, *feature_shape)``.
        speakers : numpy.ndarray
            Speaker of each clip.
        enrol : numpy.ndarray of bool
            Which clips are neutral or calm (the kind of speech an enrolment holds).
        prior_weight : float
            ``k0`` (see the class).
        labels, n_classes : numpy.ndarray, int, optional
            Class index of each clip and the number of classes: learn ``class_offset``,
            ``class_var`` and ``class_prior`` (each class from the speakers with 2+ clips of it;
            a class no speaker has twice gets no offset and the prior's variance).
        """
        stats, shifts, scales = [], [], []
        for speaker in sorted(set(speakers.tolist())):
            own = speakers == speaker
            stats.append(SpeakerStats.of(x[own]))
            if (own & enrol).sum() >= 2:
                calm = SpeakerStats.of(x[own & enrol])
                shifts.append(stats[-1].mean - calm.mean)
                scales.append((stats[-1].var + EPS) / (calm.var + EPS))
        shape = x.shape[1:]
        prior = SpeakerStats(np.mean([s.mean for s in stats], axis=0), np.mean([s.var for s in stats], axis=0),
                             len(stats))
        shift = np.mean(shifts, axis=0) if shifts else np.zeros(shape)
        scale = np.mean(scales, axis=0) if scales else np.ones(shape)
        if labels is None:
            return cls(prior, shift, scale, float(prior_weight))
        offsets = np.zeros((n_classes, *shape))
        variances = np.broadcast_to(prior.var, (n_classes, *shape)).copy()
        for c in range(n_classes):
            per_speaker = [(x[(speakers == s) & (labels == c)], own.mean)
                           for s, own in zip(sorted(set(speakers.tolist())), stats)]
            per_speaker = [(clips, mean) for clips, mean in per_speaker if len(clips) >= 2]
            if per_speaker:
                offsets[c] = np.mean([clips.mean(axis=0) - mean for clips, mean in per_speaker], axis=0)
                variances[c] = np.mean([clips.var(axis=0) for clips, _ in per_speaker], axis=0)
        class_prior = np.bincount(labels, minlength=n_classes).astype(np.float64)
        return cls(prior, shift, scale, float(prior_weight), offsets, variances, class_prior / class_prior.sum())

    # --- files ---------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write as ``.npz`` (float32 arrays and a JSON header), atomically."""
        header = {"format": FORMAT, "kind": "speaker-norm", "prior_n": self.prior.n,
                  "prior_weight": self.prior_weight}
        arrays = {"prior_mean": self.prior.mean, "prior_var": self.prior.var, "enrol_shift": self.enrol_shift,
                  "enrol_scale": self.enrol_scale}
        if self.class_offset is not None:
            # One array per class (every array of the file has the feature shape), the mix in the header.
            header["class_prior"] = [float(v) for v in self.class_prior]
            arrays.update({f"class_offset_{c}": v for c, v in enumerate(self.class_offset)})
            arrays.update({f"class_var_{c}": v for c, v in enumerate(self.class_var)})
        return _write_npz(path, header, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpeakerNorm:
        """Read a file written by :meth:`save` (no code is executed).

        Raises
        ------
        ModelError
            Missing or malformed file, or a header field or array of the wrong type, shape or range
            (one line naming the file and the field).
        """
        names = ("prior_mean", "prior_var", "enrol_shift", "enrol_scale")
        try:
            header, arrays = _read_npz(path, "speaker-norm", names, nonnegative=("prior_var", "enrol_scale"))
            at = _at(path)
            prior_n = _field(header, "prior_n", at, _is_count, "a positive integer")
            prior_weight = _field(header, "prior_weight", at, _is_weight, f"a number from 0 to {MAX_CLIPS}")
            mix = _field(header, "class_prior", at, _is_mix, "a list of 2+ class proportions (>= 0, sum 1)", None)
            if mix is not None:
                per_class = tuple(f"class_{k}_{c}" for k in ("offset", "var") for c in range(len(mix)))
                header, arrays = _read_npz(path, "speaker-norm", names + per_class,
                                           nonnegative=("prior_var", "enrol_scale",
                                                        *(n for n in per_class if n.startswith("class_var"))))
        except ProfileError as exc:
            raise ModelError(str(exc)) from None
        prior = SpeakerStats(arrays["prior_mean"], arrays["prior_var"], prior_n)
        classes = {}
        if mix is not None:
            classes = {"class_offset": np.stack([arrays[f"class_offset_{c}"] for c in range(len(mix))]),
                       "class_var": np.stack([arrays[f"class_var_{c}"] for c in range(len(mix))]),
                       "class_prior": np.asarray(mix, dtype=np.float64)}
        return cls(prior, arrays["enrol_shift"], arrays["enrol_scale"], float(prior_weight), **classes)


def normalize_by_group(x: np.ndarray, groups: np.ndarray, norm: SpeakerNorm) -> np.ndarray:
    """Standardise every group (speaker, session, folder) of clips by its own statistics.

    Parameters
    ----------
    x : numpy.ndarray
        Features, shape ``(n, *feature_shape)``.
    groups : numpy.ndarray
        Group of each clip, shape ``(n,)``.
    norm : SpeakerNorm
        Prior and shrinkage.
    """
    out = np.empty(x.shape, dtype=np.float32)
    for group in set(groups.tolist()):
        own = groups == group
        out[own] = norm.normalize(x[own], SpeakerStats.of(x[own]))
    return out


# --- profiles ------------------------------------------------------------

@dataclass(frozen=True)
class SpeakerProfile:
    """A speaker's enrolment: raw feature statistics of a few calm recordings.

    Parameters
    ----------
    name : str
        Speaker name (letters, digits, ``.``, ``_``, ``-``; at most 64).
    stats : SpeakerStats
        Statistics of the enrolment clips' features.
    features : str
        Fingerprint of the feature pipeline that made them (see :func:`fingerprint`);
        a profile is only used with models sharing it.
    created : str
        ISO 8601 time of the enrolment.
    kind : {"enrol", "adapt"}
        Calm enrolment speech, or unlabelled speech of any emotion.
    """

    name: str
    stats: SpeakerStats
    features: str
    created: str = ""
    kind: str = "enrol"

    def save(self, folder: str | os.PathLike | None = None) -> Path:
        """Write ``<folder>/<name>.npz`` atomically (about 40 KB for Whisper-base features).

        ``folder`` defaults to :func:`default_profiles_dir`.

        The mean is kept in float32: a dimension's mean can be large next to its
        spread within one speaker, where float16 rounding would be many standard
        deviations. The standard deviation only needs relative precision: float16.
        """
        path = profile_path(self.name, folder)
        header = {"format": FORMAT, "kind": "speaker-profile", "name": self.name, "features": self.features,
                  "created": self.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "clips": self.stats.n, "profile_kind": self.kind}
        try:
            return _write_npz(path, header, mean=self.stats.mean.astype(np.float32),
                              std=np.sqrt(self.stats.var).astype(np.float16))
        except OSError as exc:
            raise ProfileError(f"{path}: cannot write the profile ({exc.strerror or exc})") from None

    @classmethod
    def load(cls, path: str | os.PathLike, *, features: str | None = None,
             shape: Sequence[int] | None = None) -> SpeakerProfile:
        """Read a profile; refuse one made for another feature pipeline or feature shape.

        Parameters
        ----------
        path : str or os.PathLike
            The ``.npz`` file.
        features : str, optional
            The using model's feature fingerprint (see :func:`fingerprint`).
        shape : sequence of int, optional
            The using model's feature shape (its speaker norm's ``prior.mean.shape``): statistics of another
            shape would broadcast into nonsense or fail deep inside the head.

        Raises
        ------
        ProfileError
            Missing, malformed, or foreign profile: one line naming the file, the field, its value and
            what was expected.
        """
        header, arrays = _read_npz(path, "speaker-profile", ("mean", "std"), nonnegative=("std",))
        at = _at(path)
        name = _field(header, "name", at, _is_name, "a speaker name (1-64 letters, digits, '.', '_' or '-')")
        fingerprint_ = _field(header, "features", at, _is_fingerprint, "the feature fingerprint (a short text)")
        clips = _field(header, "clips", at, _is_count, "a positive integer")
        created = _field(header, "created", at, _is_short_text, "the enrolment time (a short one-line text)", "")
        kind = _field(header, "profile_kind", at, lambda v: v in ("enrol", "adapt"), "'enrol' or 'adapt'", "enrol")
        if features is not None and fingerprint_ != features:
            raise ProfileError(f"{at}: made for another model's features ({fingerprint_}, this model "
                               f"uses {features}); enrol the speaker again with this model")
        mean = arrays["mean"].astype(np.float64)
        if shape is not None and mean.shape != tuple(shape):
            raise ProfileError(f"{at}: field 'mean' has shape {mean.shape}: expected this model's feature shape "
                               f"{tuple(shape)}; enrol the speaker again with this model")
        var = arrays["std"].astype(np.float64) ** 2
        return cls(name, SpeakerStats(mean, var, clips), fingerprint_, created, kind)

    def check_shape(self, shape: Sequence[int]) -> SpeakerProfile:
        """Return this profile if its statistics have the feature ``shape``, else raise :class:`ProfileError`.

        For a profile passed in memory (:meth:`load` takes ``shape=`` for files).
        """
        if self.stats.mean.shape != tuple(shape):
            raise ProfileError(f"speaker {self.name!r}: statistics of shape {self.stats.mean.shape}, this model's "
                               f"features have shape {tuple(shape)}; enrol the speaker again with this model")
        return self


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid speaker name, else raise :class:`ProfileError`."""
    # fullmatch: with match, "$" also matches before a final newline ("alice\n" would pass).
    if not _is_name(name):
        raise ProfileError(f"speaker {_show(name)}: use 1-64 letters, digits, '.', '_' or '-' (not starting with "
                           "'.', '_' or '-')")
    return name


def default_profiles_dir() -> Path:
    """``$SER_SPEAKERS_DIR``, else ``~/.local/share/ser/speakers``."""
    env = os.environ.get("SER_SPEAKERS_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "ser" / "speakers"


def profile_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """Where the profile of speaker ``name`` lives."""
    return Path(folder or default_profiles_dir()) / f"{check_name(name)}.npz"


def read_profile(speaker, *, features: str, shape: Sequence[int],
                 folder: str | os.PathLike | None = None) -> SpeakerProfile:
    """The enrolment profile ``speaker`` (a name, or a profile passed through), checked against a model.

    Parameters
    ----------
    speaker : str or SpeakerProfile
        A profile name (looked up in ``folder``) or a profile.
    features : str
        The model's feature fingerprint (:func:`fingerprint`).
    shape : sequence of int
        The model's feature shape.
    folder : path-like, optional
        Where profiles live (default :func:`default_profiles_dir`).

    Raises
    ------
    ProfileError
        No such profile, or one made for another model's features.
    """
    if isinstance(speaker, SpeakerProfile):
        if speaker.features != features:
            raise ProfileError(f"speaker {speaker.name!r}: profile made for another model's features")
        return speaker.check_shape(shape)
    path = profile_path(speaker, folder)
    if not path.exists():
        raise ProfileError(f"speaker {speaker!r}: no profile at {path}; enrol the speaker first")
    return SpeakerProfile.load(path, features=features, shape=shape)


def enrol(recognizer, speaker: str, clips: Sequence, *, folder: str | os.PathLike | None = None,
          save: bool = True) -> SpeakerProfile:
    """Enrol a speaker from a few calm recordings (no labels needed).

    Parameters
    ----------
    recognizer : ser.inference.Recognizer
        A model with a speaker-adapted head; the profile is tied to its features.
    speaker : str
        Name of the profile (letters, digits, ``.``, ``_``, ``-``).
    clips : sequence
        Audio files, or ``(y, sr)`` pairs of in-memory audio: the speaker reading
        a few sentences calmly; 5-10 clips of a few seconds each are plenty.
    folder : path-like, optional
        Where profiles live (default :func:`default_profiles_dir`).
    save : bool
        Write ``<folder>/<speaker>.npz`` (replacing an earlier profile).

    Returns
    -------
    SpeakerProfile
        Pass it (or its name) as ``speaker=`` to the recognizer's predictions.
    """
    from ser.errors import AudioError

    check_name(speaker)
    recognizer.require_adapted_head()
    if isinstance(clips, (str, bytes, os.PathLike)) or len(clips) == 0:
        raise AudioError(f"speaker {speaker!r}: no enrolment clips given (expected a list of files or (y, sr) pairs)")
    frontend = recognizer.frontend
    feats = [frontend.clip(*clip) if isinstance(clip, tuple) else frontend.file(clip)[0] for clip in clips]
    profile = SpeakerProfile(speaker, SpeakerStats.of(np.stack(feats)), recognizer.features_id,
                             created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if save:
        profile.save(folder)
    return profile


def list_profiles(folder: str | os.PathLike | None = None) -> list[dict]:
    """One row per ``*.npz`` file in ``folder``; never raises for a bad file.

    A row is named after its file, the name ``--speaker`` and :func:`remove_profile` take, not after the
    name in the header. A readable profile's row holds its header (``clips``, ``created``, ``features``,
    ``kind``), ``bytes`` and ``path``, plus a ``note`` when the header names another speaker (a renamed
    or copied file: still usable under the file's name). A file that cannot be used holds ``path`` and
    ``error`` (one line) instead: unreadable, malformed, or named so that ``--speaker`` cannot reach it.
    """
    folder = Path(folder or default_profiles_dir())
    rows = []
    for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        name = path.stem
        try:
            if not _is_name(name):
                raise ProfileError(f"{_at(path)}: file name {name!r} is not a valid speaker name, so --speaker "
                                   "cannot use it (1-64 letters, digits, '.', '_' or '-'); rename the file")
            p = SpeakerProfile.load(path)
            row = {"name": name, "clips": p.stats.n, "created": p.created, "features": p.features, "kind": p.kind,
                   "bytes": path.stat().st_size, "path": str(path)}
            if p.name != name:
                row["note"] = f"header names {p.name!r}, file is {name!r}"
        except ProfileError as exc:
            row = {"name": name, "path": str(path), "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a listing shows every file; one bad file must not hide the rest
            row = {"name": name, "path": str(path), "error": f"{_at(path)}: unreadable ({_one_line(exc)})"}
        rows.append(row)
    return rows


def remove_profile(name: str, folder: str | os.PathLike | None = None) -> Path:
    """Delete the profile of speaker ``name``; raise :class:`ProfileError` if there is none."""
    path = profile_path(name, folder)
    if not path.is_file():
        raise ProfileError(f"{path}: no profile for speaker {name!r}")
    path.unlink()
    return path


def fingerprint(config) -> str:
    """Short digest of the audio and feature settings that determine a model's features."""
    import hashlib

    settings = config.to_dict()
    payload = json.dumps({"audio": settings["audio"], "features": settings["features"]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- npz with a JSON header ------------------------------------------------

def _write_npz(path: str | os.PathLike, header: dict, **arrays: np.ndarray) -> Path:
    import io

    from ser.utils import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez_compressed(buffer, header=np.array(json.dumps(header)), **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def _read_npz(path: str | os.PathLike, kind: str, names: Sequence[str], *,
              nonnegative: Sequence[str] = ()) -> tuple[dict, dict[str, np.ndarray]]:
    """Header and arrays ``names`` of an npz of ``kind``, checked.

    The header must be a JSON object of that ``kind`` and :data:`FORMAT`; the arrays must hold finite
    floating-point numbers within :data:`MAX_STAT`, share one non-empty shape, and be ``>= 0`` where
    named in ``nonnegative``. Header fields beyond ``kind`` and ``format`` are the caller's to check
    (with :func:`_field`). Raises :class:`ProfileError`, one line naming the file.
    """
    path = Path(path)
    at = _at(path)
    if not path.exists():
        raise ProfileError(f"{at}: file not found")
    if not path.is_file():
        raise ProfileError(f"{at}: not a file")
    try:
        # Our own file object: np.load given a path leaks its file when the zip directory is damaged.
        with open(path, "rb") as fh:
            # Only a zip is an npz: np.load would otherwise read a lone .npy array whole, however large.
            if fh.read(2) != b"PK":
                raise ValueError("not a zip archive")
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as data:
                size = sum(info.file_size for info in data.zip.infolist())
                if size > MAX_NPZ_BYTES:  # declared sizes bound what zipfile will inflate: no zip bombs
                    raise ValueError(f"{size} bytes uncompressed, more than {MAX_NPZ_BYTES}")
                raw = data["header"]
                if raw.dtype.kind != "U" or raw.ndim != 0:
                    raise ValueError(f"its header is a {raw.dtype} array of shape {raw.shape}, not a JSON text")
                header = json.loads(str(raw))
                arrays = {name: np.asarray(data[name]) for name in names}
    except Exception as exc:  # noqa: BLE001 - see below
        # A damaged or hostile file fails inside zipfile, zlib, numpy's format reader or json with many
        # exception types (BadZipFile, zlib.error, struct.error, EOFError, NotImplementedError for an unknown
        # compression, RuntimeError for an encrypted member, MemoryError for a huge claimed shape,
        # RecursionError for deeply nested JSON...). All mean the same here: the file cannot be read.
        raise ProfileError(f"{at}: not a readable {kind} file ({_one_line(exc)})") from None
    if not isinstance(header, dict) or header.get("kind") != kind:
        raise ProfileError(f"{at}: not a {kind} file")
    version = header.get("format")
    if type(version) is not int or version != FORMAT:  # type: True == 1.0 == 1 in Python
        raise ProfileError(f"{at}: format {_show(version)} is not supported (expected {FORMAT})")
    first = names[0]
    for name, a in arrays.items():
        if a.dtype.kind != "f":
            raise ProfileError(f"{at}: field {name!r} holds {a.dtype} values: expected floating-point numbers")
        if a.ndim == 0 or a.size == 0:
            raise ProfileError(f"{at}: field {name!r} has shape {a.shape}: expected a non-empty array")
        if a.shape != arrays[first].shape:
            raise ProfileError(f"{at}: field {name!r} has shape {a.shape}: expected the shape of {first!r}, "
                               f"{arrays[first].shape}")
        if not np.isfinite(a).all():
            raise ProfileError(f"{at}: field {name!r} holds non-finite values: expected finite numbers")
        if float(np.abs(a).max()) > MAX_STAT:  # float(): comparing in float16 would overflow 1e12
            raise ProfileError(f"{at}: field {name!r} holds values beyond {MAX_STAT:g} in magnitude: expected "
                               "feature statistics")
        if name in nonnegative and (a < 0).any():
            what = "standard deviations" if name == "std" else "variances or variance ratios"
            raise ProfileError(f"{at}: field {name!r} holds negative values: expected {what} (>= 0)")
    return header, arrays


_MISSING = object()


def _field(header: dict, name: str, at: str, valid, expected: str, default=_MISSING):
    """``header[name]`` if ``valid(value)``; ``default`` if absent and given; else :class:`ProfileError`."""
    if name not in header:
        if default is _MISSING:
            raise ProfileError(f"{at}: field {name!r} is missing: expected {expected}")
        return default
    value = header[name]
    if not valid(value):
        raise ProfileError(f"{at}: field {name!r} = {_show(value)}: expected {expected}")
    return value


def _is_name(value) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def _is_count(value) -> bool:
    # type(...) is int: JSON true is a bool (an int in Python), 3.0 is not a count.
    return type(value) is int and 1 <= value <= MAX_CLIPS


def _is_mix(value) -> bool:
    return (isinstance(value, list) and 2 <= len(value) <= 64
            and all(type(v) in (int, float) and 0 <= v <= 1 for v in value) and abs(sum(value) - 1) < 1e-6)


def _is_weight(value) -> bool:
    # Range comparisons reject NaN and infinities; a huge int is refused before any float conversion.
    return type(value) in (int, float) and 0 <= value <= MAX_CLIPS


def _is_short_text(value) -> bool:
    # Printable and short: `ser speakers list` prints it inside a one-line row (no newlines, no escapes).
    return isinstance(value, str) and len(value) <= 64 and value.isprintable()


def _is_fingerprint(value) -> bool:
    return _is_short_text(value) and value != ""


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 40


def _show(value) -> str:
    """A value for an error message: a short one-line repr, however long or deep the value."""
    return _REPR.repr(value)


def _one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line (messages from zipfile or numpy may span several)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _at(path: str | os.PathLike) -> str:
    """A path for an error message: as is, or quoted where it holds a newline or other unprintable text."""
    text = str(path)
    return text if text.isprintable() else repr(text)
