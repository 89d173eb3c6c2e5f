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
import zipfile
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
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
    """

    prior: SpeakerStats
    enrol_shift: np.ndarray
    enrol_scale: np.ndarray
    prior_weight: float

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
    def fit(cls, x: np.ndarray, speakers: np.ndarray, enrol: np.ndarray, *, prior_weight: float) -> SpeakerNorm:
        """Learn the prior and the enrolment correction from training clips.

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
        return cls(prior, shift, scale, float(prior_weight))

    # --- files ---------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write as ``.npz`` (float32 arrays and a JSON header), atomically."""
        header = {"format": FORMAT, "kind": "speaker-norm", "prior_n": self.prior.n,
                  "prior_weight": self.prior_weight}
        arrays = {"prior_mean": self.prior.mean, "prior_var": self.prior.var, "enrol_shift": self.enrol_shift,
                  "enrol_scale": self.enrol_scale}
        return _write_npz(path, header, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpeakerNorm:
        """Read a file written by :meth:`save` (no code is executed)."""
        try:
            header, arrays = _read_npz(path, "speaker-norm", ("prior_mean", "prior_var", "enrol_shift",
                                                              "enrol_scale"))
        except ProfileError as exc:
            raise ModelError(str(exc)) from None
        prior = SpeakerStats(arrays["prior_mean"], arrays["prior_var"], int(header["prior_n"]))
        return cls(prior, arrays["enrol_shift"], arrays["enrol_scale"], float(header["prior_weight"]))


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
    def load(cls, path: str | os.PathLike, *, features: str | None = None) -> SpeakerProfile:
        """Read a profile; with ``features``, refuse one made for another feature pipeline.

        Raises
        ------
        ProfileError
            Missing, malformed, or foreign profile (one line naming the file).
        """
        header, arrays = _read_npz(path, "speaker-profile", ("mean", "std"))
        for key in ("name", "features", "clips"):
            if key not in header:
                raise ProfileError(f"{path}: not a speaker profile (no {key!r} in its header)")
        if features is not None and header["features"] != features:
            raise ProfileError(f"{path}: made for another model's features ({header['features']}, this model "
                               f"uses {features}); enrol the speaker again with this model")
        mean, std = arrays["mean"].astype(np.float64), arrays["std"].astype(np.float64)
        if np.any(std < 0):
            raise ProfileError(f"{path}: malformed statistics (negative standard deviations)")
        var = std ** 2
        return cls(str(header["name"]), SpeakerStats(mean, var, int(header["clips"])), str(header["features"]),
                   str(header.get("created", "")), str(header.get("profile_kind", "enrol")))


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid speaker name, else raise :class:`ProfileError`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ProfileError(f"speaker {name!r}: use 1-64 letters, digits, '.', '_' or '-' (not starting with "
                           "'.', '_' or '-')")
    return name


def default_profiles_dir() -> Path:
    """``$SER_SPEAKERS_DIR``, else ``~/.local/share/ser/speakers``."""
    env = os.environ.get("SER_SPEAKERS_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "ser" / "speakers"


def profile_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """Where the profile of speaker ``name`` lives."""
    return Path(folder or default_profiles_dir()) / f"{check_name(name)}.npz"


def list_profiles(folder: str | os.PathLike | None = None) -> list[dict]:
    """Header of every profile in ``folder`` (unreadable files are listed with their error)."""
    folder = Path(folder or default_profiles_dir())
    rows = []
    for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        try:
            p = SpeakerProfile.load(path)
            rows.append({"name": p.name, "clips": p.stats.n, "created": p.created, "features": p.features,
                         "kind": p.kind, "bytes": path.stat().st_size, "path": str(path)})
        except ProfileError as exc:
            rows.append({"name": path.stem, "path": str(path), "error": str(exc)})
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


def _read_npz(path: str | os.PathLike, kind: str, names: Sequence[str]) -> tuple[dict, dict[str, np.ndarray]]:
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            arrays = {name: np.asarray(data[name]) for name in names}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as exc:
        raise ProfileError(f"{path}: not a readable {kind} file ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict) or header.get("kind") != kind:
        raise ProfileError(f"{path}: not a {kind} file")
    if header.get("format") != FORMAT:
        raise ProfileError(f"{path}: format {header.get('format')!r} is not supported (expected {FORMAT})")
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or not all(np.isfinite(a).all() for a in arrays.values()):
        raise ProfileError(f"{path}: malformed arrays (shapes {sorted(shapes)}, or non-finite values)")
    return header, arrays
