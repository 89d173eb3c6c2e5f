"""Trained models as folders, and predictions: :class:`Recognizer` and :class:`Prediction`.

A model folder carries everything needed to use it::

    model.keras     weights and architecture (built-in Keras layers, loaded in safe mode)
    model.onnx      the same network for ONNX Runtime (predictions without TensorFlow)
    config.json     the full Config: inference rebuilds audio and features from it
    labels.json     output classes in order
    metrics.json    evaluation results known when it was saved
    history.json    training curves (and curves.png)
    README.md       model card (data, protocol, metrics, license)
    encoder.npz     (encoder-feature models) the Whisper-base encoder, arrays only (38 MB float16,
                    or 19 MB int8 when trained with int8 weights)
    adapted.keras   (optional) the speaker-adapted head, trained on features standardised per
    adapted.onnx    speaker, and speakers.npz, the training speakers' prior and enrolment
    speakers.npz    correction (see ser.speakers); used only when speaker information is given
    SHA256SUMS      checksums of the files above; a mismatch refuses the load

Models shipped with the package live in ``ser/pretrained/<name>`` (``default``:
Whisper-base features, the most accurate; ``fast``: a small MFCC CNN) and load by
name: ``Recognizer.load("fast")``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import reprlib
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser import audio as audio_mod
from ser.cache import decode_clip, featurize, featurize_many
from ser.config import Config
from ser.errors import AudioError, ConfigError, ModelError, SERError
from ser.utils import atomic_write_text, current_umask, sha256_file

log = logging.getLogger(__name__)

#: Folder of the models shipped inside the package (one sub-folder per model name).
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
#: The trained model used when no model is named.
DEFAULT_MODEL = PRETRAINED_DIR / "default"
MODEL_FILES = ("model.keras", "config.json", "labels.json")
#: The same network as an ONNX graph, run by ONNX Runtime (see ser.export).
ONNX_FILE = "model.onnx"
#: The speech encoder a whisper-feature model carries (see ser.encoders.save_encoder).
ENCODER_FILE = "encoder.npz"
CHECKSUMS = "SHA256SUMS"
#: The speaker-adapted head and its statistics (see ser.speakers).
ADAPTED_KERAS, ADAPTED_ONNX, SPEAKER_NORM = "adapted.keras", "adapted.onnx", "speakers.npz"
#: predict_files decodes and featurises on worker threads from this many files on
#: (below it, the pool and its thread limits cost more than they save).
POOL_MIN_FILES = 17
#: Files decoded and featurised together by one worker (spectral models).
CHUNK_FILES = 16


def bundled_models() -> list[str]:
    """Names of the models shipped inside the package (``default``, ``fast``...), sorted."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CHECKSUMS).is_file())


def resolve_model(path: str | os.PathLike | None = None) -> Path:
    """The model folder meant by ``path``: a folder, a bundled model's name, or ``None`` (the default).

    An existing folder always wins; a bare name (no path separator) that is not
    a folder names a bundled model, e.g. ``"fast"`` → ``ser/pretrained/fast``.

    Raises
    ------
    ModelError
        Neither an existing folder nor a bundled model (the message lists the bundled ones).
    """
    if path is None:
        return DEFAULT_MODEL
    folder = Path(path)
    if folder.is_dir():
        return folder
    name = os.fspath(path)
    if name and os.sep not in name and (os.altsep is None or os.altsep not in name) and name not in (".", ".."):
        bundled = bundled_models()
        if name in bundled:
            return PRETRAINED_DIR / name
        raise ModelError(f"{name}: no such model folder, nor a bundled model (bundled: {', '.join(bundled)})")
    raise ModelError(f"{folder}: model folder not found")


@dataclass(frozen=True)
class Prediction:
    """The emotion recognised in one clip.

    Attributes
    ----------
    label : str
        The most probable emotion.
    confidence : float
        Its probability.
    scores : dict
        Probability of every class, in the model's fixed class order.
    duration : float
        Seconds of audio in the input (before padding/cutting).
    source : str or None
        File name, or ``None`` for in-memory audio.
    """

    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    source: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return {"source": self.source, "label": self.label, "confidence": round(self.confidence, 6),
                "duration": round(self.duration, 3), "scores": {k: round(v, 6) for k, v in self.scores.items()}}

    def _repr_html_(self) -> str:
        # Jupyter shows a prediction as its scores with bars (ser.display).
        from ser.display import prediction_html

        return prediction_html(self)


class Recognizer:
    """A trained emotion classifier with the exact feature pipeline it was trained with.

    Parameters
    ----------
    model : keras.Model
        Outputs probabilities over ``config.classes``.
    config : Config
        The config the model was trained with.
    metadata : dict, optional
        Metrics and other facts shown in the model card.
    adapted : keras.Model, OnnxRunner or path, optional
        The speaker-adapted head (inputs standardised per speaker); a path to its
        ``.onnx`` or ``.keras`` file is loaded on first use.
    speaker_norm : ser.speakers.SpeakerNorm, optional
        Its training speakers' prior and enrolment correction.
    """

    def __init__(self, model, config: Config, *, metadata: dict | None = None, path: Path | None = None,
                 encoder=None, runner=None, adapted=None, speaker_norm=None) -> None:
        self._model = model
        self.config = config
        self.metadata = metadata or {}
        self.path = path
        self.encoder = encoder  # a bundled speech encoder (whisper features), else the shared one
        self.runner = runner  # ONNX Runtime session: predictions without importing TensorFlow
        self._adapted = adapted
        # A head given as a path is the folder's own: saving copies its files unchanged.
        self._adapted_from_folder = isinstance(adapted, Path)
        self.speaker_norm = speaker_norm
        if (adapted is None) != (speaker_norm is None):
            raise ValueError("adapted and speaker_norm go together")

    @property
    def classes(self) -> tuple[str, ...]:
        """Output classes in order."""
        return self.config.classes

    @property
    def adapted(self):
        """The speaker-adapted head, or None (loaded from the folder on first use: no cost for plain predictions)."""
        if isinstance(self._adapted, Path):
            if self._adapted.suffix == ".onnx":
                from ser.export import OnnxRunner

                self._adapted = OnnxRunner(self._adapted)
            else:
                self._adapted = _load_keras(self._adapted)
        return self._adapted

    @adapted.setter
    def adapted(self, head) -> None:
        self._adapted = head
        self._adapted_from_folder = False

    @property
    def model(self):
        """The Keras model (loaded on first use when predictions run on ONNX Runtime)."""
        if self._model is None:
            self._model = _load_keras(self.path / "model.keras")
        return self._model

    # --- loading and saving ------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, runtime: str = "auto") -> Recognizer:
        """Load a model folder (default: the bundled model).

        Checksums in ``SHA256SUMS`` are verified first, and only listed files are
        read; the Keras file is loaded in safe mode and the ONNX file is a plain
        graph, so no code from the folder is ever executed. Files read later (the
        Keras model under ONNX Runtime, the speaker-adapted head) are checked now.

        Parameters
        ----------
        path : path-like, optional
            Model folder, or the name of a bundled model (``"default"``,
            ``"fast"``; see :func:`bundled_models`); default :data:`DEFAULT_MODEL`.
        runtime : {"auto", "onnx", "keras"}
            ``"auto"`` runs ``model.onnx`` on ONNX Runtime when the folder has one
            (no TensorFlow import: about 0.2 s instead of 3-4 s), else Keras.

        Raises
        ------
        ModelError
            One line naming the file: missing folder or file, unknown bundled name,
            malformed ``SHA256SUMS``, checksum mismatch, a file used but not listed,
            malformed JSON (config, labels, metrics), an unreadable network or array
            file, or a network that does not fit the config's features or classes.
        """
        if runtime not in ("auto", "onnx", "keras"):
            raise ValueError(f"runtime={runtime!r}: expected 'auto', 'onnx' or 'keras'")
        folder = resolve_model(path)
        # Every file read below is listed in SHA256SUMS and verified first (see _uses).
        listed = verify_checksums(folder)
        config = _read_config(folder)
        labels = _read_labels(folder)
        if labels != list(config.classes):
            raise ModelError(f"{folder / 'labels.json'}: classes {_excerpt(labels)} differ from config "
                             f"{list(config.classes)}")
        metadata = _read_metrics(folder) if _uses(folder, listed, "metrics.json") else {}
        model = runner = None
        use_onnx = runtime != "keras" and _uses(folder, listed, ONNX_FILE)
        if runtime == "onnx" and not use_onnx:
            raise ModelError(f"{folder / ONNX_FILE}: ONNX model not found (runtime='onnx')")
        # The cheap checks first: a damaged folder fails before TensorFlow or the encoder load.
        adapted, speaker_norm = _read_adapted(folder, listed, config, onnx=use_onnx)
        if use_onnx:
            runner = _open_onnx(folder / ONNX_FILE, config)
            # Read on first use (the model property) or by save: refuse one that is no archive now.
            _check_keras_archive(folder / "model.keras")
        else:
            model = _open_keras(folder / "model.keras", config)
        encoder = None
        if _uses(folder, listed, ENCODER_FILE):
            from ser.encoders import WhisperEncoder

            encoder = _load_part(folder / ENCODER_FILE, WhisperEncoder.from_npz)
        return cls(model, config, metadata=metadata, path=folder, encoder=encoder, runner=runner, adapted=adapted,
                   speaker_norm=speaker_norm)

    def save(self, path: str | os.PathLike, *, history: dict | None = None, card: str | None = None,
             force: bool = False) -> Path:
        """Write the model folder atomically (built aside, then renamed into place).

        Parameters
        ----------
        path : path-like
            The model folder to write. It must not exist, or be an empty folder, or
            (with ``force``) an existing model folder, which is replaced as a whole.
        history : dict, optional
            Training curves (``history.json`` and ``curves.png``).
        card : str, optional
            Model card text (default: :func:`model_card`).
        force : bool
            Replace an existing model folder.

        Raises
        ------
        ModelError
            ``path`` is a file, a folder that is not a model folder, or a model
            folder without ``force`` (checked before anything is written).
        """
        path = check_output_folder(path, force=force)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(path)
            # The pid in the name tells a later save whether the folder's writer is still alive.
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-"))
        except OSError as exc:
            raise ModelError(f"{path}: cannot write the model folder ({exc.strerror or exc})") from None
        try:
            os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private
            self._write_files(tmp, history=history, card=card)
            _move_into_place(tmp, path)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                raise ModelError(f"{path}: cannot write the model folder ({exc.strerror or exc})") from None
            raise
        self.path = path
        return path

    def _write_files(self, tmp: Path, *, history: dict | None, card: str | None) -> None:
        """Every file of the model folder, written into the (new, private) folder ``tmp``."""
        from ser.export import export_onnx

        if self._model is None and self.path is not None and (self.path / ONNX_FILE).exists():
            # Loaded from a folder and never touched: keep its files byte for byte
            # (re-serialising would change them, and every clone would carry both).
            for name in ("model.keras", ONNX_FILE):
                shutil.copyfile(self.path / name, tmp / name)
        else:
            _uncompiled_copy(self.model).save(tmp / "model.keras")
            export_onnx(self.model, tmp / ONNX_FILE)
        if self._adapted is not None:
            if self._adapted_from_folder:
                for name in (ADAPTED_KERAS, ADAPTED_ONNX):
                    shutil.copyfile(self.path / name, tmp / name)
            else:
                _uncompiled_copy(self.adapted).save(tmp / ADAPTED_KERAS)
                export_onnx(self.adapted, tmp / ADAPTED_ONNX)
            self.speaker_norm.save(tmp / SPEAKER_NORM)
        self.config.save(tmp / "config.json")
        if self.config.features.kind == "whisper":
            # Carry the encoder, so the folder works without the CTranslate2 weights.
            if self.path is not None and (self.path / ENCODER_FILE).exists():
                shutil.copyfile(self.path / ENCODER_FILE, tmp / ENCODER_FILE)
            else:
                from ser.encoders import save_encoder

                save_encoder(tmp / ENCODER_FILE, precision=self.config.features.encoder_precision)
        atomic_write_text(tmp / "labels.json", json.dumps(list(self.classes)) + "\n")
        atomic_write_text(tmp / "metrics.json", json.dumps(self.metadata, indent=2) + "\n")
        if history is not None:
            from ser.evaluation import plot_history

            atomic_write_text(tmp / "history.json", json.dumps(history) + "\n")
            plot_history(history, tmp / "curves.png", title=self.config.name)
        atomic_write_text(tmp / "README.md", card or model_card(self.config, self.metadata))
        write_checksums(tmp)

    # --- prediction ---------------------------------------------------
    def _features(self, y: np.ndarray) -> np.ndarray:
        return featurize(y, self.config, encoder=self.encoder)

    def _scores(self, x: np.ndarray, speaker: tuple | None = None) -> np.ndarray:
        """Probabilities for features ``x``; with ``speaker`` = ``(stats, kind)``, from the adapted head."""
        net = self.runner
        if speaker is not None:
            x = self.speaker_norm.normalize(x, *speaker)
            net = self.adapted
        elif net is None:
            net = self.model
        from ser.export import OnnxRunner

        if isinstance(net, OnnxRunner):
            return net(x[..., None].astype(np.float32))
        import keras

        # Calling the model directly avoids Keras' predict() set-up cost per call.
        out = net(x[..., None], training=False)
        return keras.ops.convert_to_numpy(out).astype(np.float64)

    # --- speakers -----------------------------------------------------
    @property
    def features_id(self) -> str:
        """Fingerprint of this model's feature pipeline; profiles are tied to it."""
        from ser.speakers import fingerprint

        return fingerprint(self.config)

    def require_adapted_head(self) -> None:
        """Raise :class:`ModelError` (one line) if this model has no speaker-adapted head."""
        if self.speaker_norm is None:
            where = self.path or "this model"
            raise ModelError(f"{where}: has no speaker-adapted head (train it with speakers.adapted_head=true)")

    def enrol(self, speaker: str, clips: Sequence, *, folder: str | os.PathLike | None = None,
              save: bool = True):
        """Enrol a speaker from a few calm recordings (no labels needed).

        Parameters
        ----------
        speaker : str
            Name of the profile (letters, digits, ``.``, ``_``, ``-``).
        clips : sequence
            Audio files, or ``(y, sr)`` pairs of in-memory audio: the speaker reading
            a few sentences calmly; 5-10 clips of a few seconds each are plenty.
        folder : path-like, optional
            Where profiles live (default :func:`ser.speakers.default_profiles_dir`).
        save : bool
            Write ``<folder>/<speaker>.npz`` (replacing an earlier profile).

        Returns
        -------
        ser.speakers.SpeakerProfile
        """
        from ser.speakers import SpeakerProfile, SpeakerStats, check_name

        check_name(speaker)
        self.require_adapted_head()
        if len(clips) == 0:
            raise AudioError(f"speaker {speaker!r}: no enrolment clips given")
        feats = [self.features(*clip) if isinstance(clip, tuple) else self._load(clip)[0] for clip in clips]
        from datetime import datetime, timezone

        profile = SpeakerProfile(speaker, SpeakerStats.of(np.stack(feats)), self.features_id,
                                 created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        if save:
            profile.save(folder)
        return profile

    def profile(self, speaker, *, folder: str | os.PathLike | None = None):
        """The enrolment profile ``speaker`` (a name, or a profile passed through), checked against this model."""
        from ser.speakers import ProfileError, SpeakerProfile, profile_path

        self.require_adapted_head()
        if isinstance(speaker, SpeakerProfile):
            if speaker.features != self.features_id:
                raise ProfileError(f"speaker {speaker.name!r}: profile made for another model's features")
            return speaker.check_shape(self.speaker_norm.prior.mean.shape)
        path = profile_path(speaker, folder)
        if not path.exists():
            raise ProfileError(f"speaker {speaker!r}: no profile at {path}; enrol the speaker first")
        return SpeakerProfile.load(path, features=self.features_id, shape=self.speaker_norm.prior.mean.shape)

    def _speaker(self, speaker) -> tuple | None:
        """A name, profile or statistics → ``(SpeakerStats, kind)`` for :meth:`_scores` (None passes)."""
        from ser.speakers import SpeakerStats

        if speaker is None:
            return None
        if isinstance(speaker, SpeakerStats):
            self.require_adapted_head()
            return speaker, "adapt"
        profile = self.profile(speaker)
        return profile.stats, profile.kind

    def _prediction(self, probs: np.ndarray, duration: float, source: str | None) -> Prediction:
        if not np.all(np.isfinite(probs)):
            # NaN or inf never becomes output (it would be invalid JSON and a meaningless label).
            raise ModelError(f"{source or 'audio'}: the model gave non-finite scores")
        best = int(np.argmax(probs))
        return Prediction(label=self.classes[best], confidence=float(probs[best]),
                          scores={c: float(p) for c, p in zip(self.classes, probs)}, duration=duration,
                          source=source)

    def predict(self, y: np.ndarray, sr: int, *, speaker=None) -> Prediction:
        """Recognise the emotion in an in-memory signal.

        Parameters
        ----------
        y : numpy.ndarray
            Shape ``(n_samples,)`` or ``(n_samples, n_channels)``, any rate.
        sr : int
            Sample rate of ``y``.
        speaker : str, SpeakerProfile or SpeakerStats, optional
            An enrolled speaker (name or profile, see :meth:`enrol`), or feature
            statistics of other clips of the same speaker (unlabelled adaptation):
            the adapted head reads the clip relative to that speaker's baseline.
        """
        speaker = self._speaker(speaker)
        return self._prediction(self._scores(self.features(y, sr)[None], speaker)[0], _seconds(y, sr), None)

    def features(self, y: np.ndarray, sr: int) -> np.ndarray:
        """The model's input features of an in-memory signal (checked like :meth:`predict`'s)."""
        a = self.config.audio
        duration = _seconds(y, sr)
        if duration > a.max_duration:
            raise AudioError(f"audio: {duration:.1f} s is longer than the {a.max_duration:g} s limit for one clip "
                             "(use ser.timeline for long recordings)")
        return _finite(self._features(audio_mod.prepare(y, sr, sr=a.sample_rate, min_duration=a.min_duration)),
                       "audio")

    def predict_features(self, x: np.ndarray, *, speaker=None) -> Prediction:
        """Recognise the emotion from features of :meth:`features`; ``speaker`` as in :meth:`predict`."""
        return self._prediction(self._scores(np.asarray(x)[None], self._speaker(speaker))[0], 0.0, None)

    def _load(self, path: str | os.PathLike) -> tuple[np.ndarray, float]:
        """``(features, file duration)`` of one file; raises its :class:`SERError`."""
        x, duration = self._load_chunk([path])[0]
        if isinstance(x, SERError):
            raise x
        return x, duration

    def predict_file(self, path: str | os.PathLike, *, speaker=None) -> Prediction:
        """Recognise the emotion in an audio file (any format libsndfile reads); ``speaker`` as in :meth:`predict`."""
        speaker = self._speaker(speaker)
        x, duration = self._load(path)
        return self._prediction(self._scores(x[None], speaker)[0], duration, str(path))

    def predict_files(self, paths: Sequence[str | os.PathLike], *, batch_size: int = 32, progress: bool = False,
                      errors: str = "raise", jobs: int | None = None, speaker=None,
                      groups: Sequence[str] | None = None) -> list[Prediction | SERError]:
        """Recognise many files, in batches, decoding them on all cores.

        From :data:`POOL_MIN_FILES` files on, decoding and features (the speech
        encoder included) run on ``jobs`` worker threads; the model itself runs
        on batches, in input order. :meth:`iter_predict_files` gives the same
        results one by one as soon as each is known.

        Parameters
        ----------
        paths : sequence of path-like
            Audio files.
        batch_size : int
            Clips per model call.
        progress : bool
            Show a progress bar.
        errors : {"raise", "return"}
            On an unusable file, raise its error, or put the error in its place in
            the result list and go on.
        jobs : int, optional
            Worker threads for decoding and features (default: all cores; 1 = all
            in the calling thread).
        speaker : str, SpeakerProfile or SpeakerStats, optional
            Every file is of this enrolled speaker (see :meth:`predict`).
        groups : sequence of str, optional
            Unlabelled adaptation: the speaker (or session, folder) of each file. Each
            group's features are standardised by the group's own statistics (shrunk
            toward the training speakers' when the group is small) and read by the
            adapted head. Every file is decoded before the first prediction.

        Returns
        -------
        ser.display.Predictions
            A list: one :class:`Prediction` (or, with ``errors="return"``, error) per path, in
            order; it shows as a table in Jupyter.
        """
        from ser.display import Predictions

        return Predictions(self.iter_predict_files(paths, batch_size=batch_size, progress=progress, errors=errors,
                                                   jobs=jobs, speaker=speaker, groups=groups))

    def iter_predict_files(self, paths: Sequence[str | os.PathLike], *, batch_size: int = 32,
                           progress: bool = False, errors: str = "raise", jobs: int | None = None, speaker=None,
                           groups: Sequence[str] | None = None) -> Iterator[Prediction | SERError]:
        """:meth:`predict_files` as a generator: each result, in input order, as soon as it is known.

        A result is known once its batch has been scored (or its file has failed), so an
        interrupted run keeps everything before its last batch. With ``groups`` every
        file is decoded before the first result.
        """
        # Checked now, not on the first next(): a generator body would defer the errors.
        self._check_batch_arguments(paths, batch_size=batch_size, errors=errors, jobs=jobs, speaker=speaker,
                                    groups=groups)
        return self._results(paths, batch_size=batch_size, progress=progress, errors=errors, jobs=jobs,
                             known=self._speaker(speaker), groups=groups)

    def _results(self, paths, *, batch_size, progress, errors, jobs, known, groups) -> Iterator:
        ready: dict[int, Prediction | SERError] = {}
        pending: list[tuple[int, np.ndarray, float]] = []  # (index, features, duration)
        kept: list[tuple[int, np.ndarray, float]] = []  # every file's, when adapting per group
        next_out = 0

        def score(batch: list[tuple[int, np.ndarray, float]], stats=None) -> None:
            probs = self._scores(np.stack([x for _, x, _ in batch]), stats if stats is not None else known)
            for (i, _, duration), p in zip(batch, probs):
                try:
                    ready[i] = self._prediction(p, duration, str(paths[i]))
                except SERError as exc:
                    if errors == "raise":
                        raise
                    ready[i] = exc

        stream = self._feature_stream(paths, jobs=jobs or os.cpu_count() or 1)
        try:
            with _progress_bar(len(paths), progress) as bar:
                for i, (x, duration) in enumerate(stream):
                    bar.update(1)
                    if isinstance(x, SERError):
                        if errors == "raise":
                            raise x
                        ready[i] = x
                    elif groups is not None:
                        kept.append((i, x, duration))
                        continue
                    else:
                        pending.append((i, x, duration))
                        if len(pending) < batch_size:
                            continue
                        score(pending)
                        pending.clear()
                    while next_out in ready:
                        yield ready.pop(next_out)
                        next_out += 1
                if pending:
                    score(pending)
        finally:
            stream.close()  # stops the worker pool, also when an error is raised or the caller stops
        if groups is not None:
            self._score_groups(kept, groups, batch_size, score)
        while next_out in ready:
            yield ready.pop(next_out)
            next_out += 1

    def _check_batch_arguments(self, paths, *, batch_size, errors, jobs, speaker, groups) -> None:
        if isinstance(paths, (str, bytes, os.PathLike)):
            # A lone path is a sequence of characters: iterating it would try each character as a file.
            raise TypeError(f"paths={os.fspath(paths)!r}: expected a sequence of paths (use predict_file for one)")
        if errors not in ("raise", "return"):
            raise ValueError(f"errors={errors!r}: expected 'raise' or 'return'")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: expected a positive integer")
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1):
            raise ValueError(f"jobs={jobs!r}: expected a positive integer or None")
        if speaker is not None and groups is not None:
            raise ValueError("give speaker or groups, not both")
        if groups is not None:
            self.require_adapted_head()
            if len(groups) != len(paths):
                raise ValueError(f"groups: {len(groups)} given for {len(paths)} paths")

    @staticmethod
    def _score_groups(kept: list, groups: Sequence[str], batch_size: int, score) -> None:
        """Score each group's clips with the group's own statistics (unlabelled adaptation)."""
        from ser.speakers import SpeakerStats

        by_group: dict[str, list] = {}
        for entry in kept:
            by_group.setdefault(str(groups[entry[0]]), []).append(entry)
        for members in by_group.values():
            stats = (SpeakerStats.of(np.stack([x for _, x, _ in members])), "adapt")
            for first in range(0, len(members), batch_size):
                score(members[first:first + batch_size], stats)

    def _load_chunk(self, paths: Sequence[str | os.PathLike]) -> list[tuple[np.ndarray | SERError, float]]:
        """``(features, file duration)`` or ``(SERError, 0.0)`` per path; spectral features as one batch."""
        decoded: list[tuple[np.ndarray | SERError, float]] = []
        for path in paths:
            try:
                decoded.append(decode_clip(path, self.config, max_duration=self.config.audio.max_duration))
            except SERError as exc:
                decoded.append((exc, 0.0))
        ok = [i for i, (y, _) in enumerate(decoded) if not isinstance(y, SERError)]
        for i, x in zip(ok, featurize_many([decoded[i][0] for i in ok], self.config, encoder=self.encoder)):
            try:
                decoded[i] = (_finite(x, str(paths[i])), decoded[i][1])
            except SERError as exc:
                decoded[i] = (exc, 0.0)
        return decoded

    def _feature_stream(self, paths: Sequence[str | os.PathLike], *, jobs: int):
        """Yield ``(features, file duration)`` or ``(SERError, 0.0)`` per path, in order."""
        # Spectral features of a few clips at a time cost less per clip (one STFT over the
        # batch, fewer Python-level steps holding the GIL); the encoder runs clip by clip.
        size = 1 if self.config.features.kind == "whisper" else CHUNK_FILES
        chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
        if jobs == 1 or len(paths) < POOL_MIN_FILES:
            for chunk in chunks:
                yield from self._load_chunk(chunk)
            return
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        # Worker threads rather than processes (as ser.cache uses for training): decoding
        # (libsndfile), the STFT and the encoder's matrix products run in C with the GIL
        # released, so `jobs` threads fill `jobs` cores, with no worker start-up (0.4-0.9 s
        # for a forkserver pool on this 2-core machine) and one shared copy of the encoder.
        # Measured on 480 RAVDESS clips with the fast model: 1 process 2.5 s, forkserver
        # pool 2.0 s, threads 1.3-1.8 s (whole `ser predict`, cores shared with another job).
        # One BLAS thread each: the workers already fill the cores, and oversubscribed BLAS
        # threads make the small matrix products many times slower.
        pool = ThreadPoolExecutor(max_workers=min(jobs, len(chunks)), thread_name_prefix="ser-predict")
        try:
            with threadpool_limits(1):
                for results in pool.map(self._load_chunk, chunks):
                    yield from results
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a ``SHA256SUMS`` that lists a model's files (not verified)."""
    sums = Path(path) / CHECKSUMS
    try:
        names = {line.partition("  ")[2].strip() for line in sums.read_text(errors="replace").splitlines()}
    except OSError:
        return False
    return all(name in names for name in MODEL_FILES)


def check_output_folder(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Check that a model folder may be written at ``path``; returns it as an absolute path.

    Called before training starts (so a long run never ends in a refusal) and again
    when saving. A model folder replaces only an earlier model folder, and only
    with ``force``; a file, or a folder holding anything else, is never touched.

    Raises
    ------
    ModelError
        One line naming ``path`` and what is in the way.
    """
    path = Path(os.path.abspath(path))
    if path == path.parent:
        raise ModelError(f"{path}: cannot write a model folder over the file system root")
    if not os.path.lexists(path):
        return path
    if path.is_symlink() or not path.is_dir():
        raise ModelError(f"{path}: exists and is not a folder; choose another --out (nothing was changed)")
    if is_model_folder(path):
        if not force:
            raise ModelError(f"{path}: a model folder is already there; use --force to replace it")
        if path == Path.cwd() or Path.cwd().is_relative_to(path):
            raise ModelError(f"{path}: is the current folder; write the model elsewhere")
        return path
    try:
        empty = next(path.iterdir(), None) is None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the folder ({exc.strerror or exc})") from None
    if not empty:
        raise ModelError(f"{path}: folder exists and is not a model folder; choose a new or empty folder "
                         "(nothing was changed)")
    return path


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename the finished folder ``tmp`` to ``path``, replacing an empty folder or an earlier model."""
    if not os.path.lexists(path):
        os.replace(tmp, path)
        return
    if not is_model_folder(path):  # an empty folder (check_output_folder let nothing else through)
        path.rmdir()
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the hidden work folders of earlier saves to ``path`` whose process is gone (killed)."""
    for entry in path.parent.glob(f".{path.name}.*-*"):
        kind, _, rest = entry.name[len(path.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        # An ".old" folder is the previous model only while its rename back never happened: keep it then.
        if kind == "old" and not is_model_folder(path):
            continue
        shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _finite(x: np.ndarray, source: str) -> np.ndarray:
    """``x`` if every feature is finite, else the :class:`AudioError` naming ``source``."""
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{source}: the audio gives non-finite features (samples far outside [-1, 1]?)")
    return x


def _seconds(y: np.ndarray, sr) -> float:
    # Length of an in-memory signal; 0 for a rate that prepare() will refuse anyway.
    return np.shape(y)[0] / sr if isinstance(sr, (int, np.integer)) and sr > 0 else 0.0


class _NoBar:
    # Stands in for tqdm when no bar is shown (importing tqdm.auto costs start-up time).
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None


def _progress_bar(total: int, show: bool):
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="predict", unit="clip")


def _uncompiled_copy(model):
    """A copy without optimizer state (a third of the size, same weights) for saving.

    An ensemble's members are copied one by one: copying the outer model alone
    would bring back each member's compile state (and its optimizer variables).
    Only for writing to disk: Keras' Normalization keeps stale statistics in
    memory after ``set_weights`` (the saved variables are right).
    """
    import keras

    from ser.models import ensemble_model

    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if members:
        return ensemble_model([_uncompiled_copy(member) for member in members])
    bare = keras.Model.from_config(model.get_config())
    bare.set_weights(model.get_weights())
    return bare


def _load_keras(path: Path):
    import keras

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ModelError(f"{path}: cannot load model ({exc})") from None


def write_checksums(folder: str | os.PathLike) -> Path:
    """Write ``SHA256SUMS`` (``sha256  name`` lines) for every file in ``folder``."""
    folder = Path(folder)
    lines = [f"{sha256_file(p)}  {p.name}" for p in sorted(folder.iterdir())
             if p.is_file() and p.name != CHECKSUMS and not p.name.startswith(".")]
    return atomic_write_text(folder / CHECKSUMS, "\n".join(lines) + "\n")


def verify_checksums(folder: str | os.PathLike) -> dict[str, str]:
    """Refuse a model folder whose files are missing or differ from ``SHA256SUMS``.

    Returns
    -------
    dict
        ``file name -> hex digest`` of every listed (and now verified) file.

    Raises
    ------
    ModelError
        A missing or malformed ``SHA256SUMS`` (naming its bad line), or the first
        missing or altered file.
    """
    folder = Path(folder)
    listed = _read_sums(folder)
    for name in MODEL_FILES:
        if name not in listed:
            raise ModelError(f"{folder}: {name} is not listed in {CHECKSUMS}")
    for name, digest in listed.items():
        file = folder / name
        if not file.is_file():
            raise ModelError(f"{file}: missing from the model folder")
        try:
            actual = sha256_file(file)
        except OSError as exc:
            raise ModelError(f"{file}: cannot read ({exc.strerror or exc})") from None
        if actual != digest:
            raise ModelError(f"{file}: checksum mismatch; the file was modified or damaged")
    return listed


#: A SHA256SUMS line as sha256sum writes it: 64 hex digits, a space, then a space
#: (text mode) or "*" (binary mode), then the file name.
_SUMS_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")
#: Short one-line reprs of untrusted values for error messages (a huge or deeply nested
#: JSON value would otherwise make a huge message, or overflow the stack).
_EXCERPT = reprlib.Repr()
_EXCERPT.maxlevel, _EXCERPT.maxstring, _EXCERPT.maxother = 3, 60, 60


def _excerpt(value) -> str:
    return _EXCERPT.repr(value)


def _read_sums(folder: Path) -> dict[str, str]:
    """``file name -> hex digest`` from ``folder/SHA256SUMS``, every line checked.

    Raises
    ------
    ModelError
        No such file, bytes that are not UTF-8, no entries, or a malformed line: no
        digest, a digest other than 64 hex digits, a name that is not a plain file
        in the folder (``/``, ``..``, absolute), a duplicate, an empty line. The
        message names the file, the line's number and its text.
    """
    sums = folder / CHECKSUMS
    if not sums.is_file():
        raise ModelError(f"{folder}: no {CHECKSUMS} file; not a ser model folder")
    lines = _read_text(sums).split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if not lines:
        raise ModelError(f"{sums}: empty; not a ser model folder")
    listed: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        try:
            name, digest = _sums_entry(line.removesuffix("\r"), listed)  # "\r": written on Windows
        except ValueError as exc:
            raise ModelError(f"{sums}: line {number}: {exc} (read {_excerpt(line)})") from None
        listed[name] = digest
    return listed


def _sums_entry(line: str, listed: Mapping[str, str]) -> tuple[str, str]:
    """``(name, digest)`` of one SHA256SUMS line; a ValueError says what is wrong with it."""
    if not line.strip():
        raise ValueError("empty line")
    match = _SUMS_LINE.fullmatch(line)
    if match is None:
        raise ValueError("expected '<64 hex digits>  <file name>'")
    digest, name = match.group(1).lower(), match.group(2)
    # Only files directly in the folder: a name that climbs out of it (../x, /etc/x) or
    # into a sub-folder would make the checksums vouch for files the folder does not hold.
    if (name in (".", "..") or "/" in name or "\\" in name or not name.isprintable()
            or name != name.strip()):
        raise ValueError(f"{_excerpt(name)} is not a plain file name in the folder")
    if name == CHECKSUMS:
        raise ValueError("the file lists itself")
    if name in listed:
        raise ValueError(f"{name} listed twice")
    return name, digest


def _read_text(path: Path) -> str:
    """The UTF-8 text of ``path``; a ModelError for a file that cannot be read or decoded."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})") from None


def _read_json(path: Path):
    """The JSON value in ``path``; a one-line ModelError for bytes that are not UTF-8 JSON."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError: JSONDecodeError, or an integer past Python's 4300-digit limit;
        # RecursionError: lists or objects nested thousands deep.
        raise ModelError(f"{path}: not valid JSON ({exc})") from None


def _read_config(folder: Path) -> Config:
    """The validated ``folder/config.json``; a ModelError naming the file for any problem."""
    path = folder / "config.json"
    try:
        return Config.load(path)
    except ConfigError as exc:
        # Config.load names the file when it cannot read it, but not for a bad field.
        message = _one_line(str(exc))
        raise ModelError(message if message.startswith(f"{path}:") else f"{path}: {message}") from None


def _read_labels(folder: Path) -> list[str]:
    """The class names in ``folder/labels.json`` (a JSON list of strings)."""
    path = folder / "labels.json"
    labels = _read_json(path)
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ModelError(f"{path}: expected a JSON list of class names, got {_excerpt(labels)}")
    return labels


def _read_metrics(folder: Path) -> dict:
    """The recorded metrics in ``folder/metrics.json`` (a JSON object)."""
    path = folder / "metrics.json"
    metrics = _read_json(path)
    if not isinstance(metrics, dict):
        raise ModelError(f"{path}: expected a JSON object of metrics, got {_excerpt(metrics)}")
    return metrics


def _uses(folder: Path, listed: Mapping[str, str], name: str) -> bool:
    """Whether the load reads the optional ``folder/name``: only when listed, so verified.

    A file present but not listed is refused rather than ignored or used unverified.
    """
    if name in listed:
        return True
    if (folder / name).exists():
        raise ModelError(f"{folder / name}: not listed in {CHECKSUMS}; refusing to use an unverified file")
    return False


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _load_part(path: Path, load, **kwargs):
    """``load(path, **kwargs)``, any failure raised as a one-line ModelError naming ``path``."""
    try:
        return load(path, **kwargs)
    except ModelError as exc:
        message = _one_line(str(exc))
    except Exception as exc:  # noqa: BLE001 - numpy, zipfile, ONNX Runtime and Keras raise many types
        message = _one_line(f"cannot load ({type(exc).__name__}: {exc})")
    raise ModelError(message if str(path) in message else f"{path}: {message}")


def _check_keras_archive(path: Path) -> None:
    """Refuse a ``.keras`` file that is not a zip holding a Keras config and weights.

    Cheap (the zip directory only): for the files read on first use, not at load time.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except Exception as exc:  # noqa: BLE001 - BadZipFile, but also EOFError, ValueError... on crafted bytes
        raise ModelError(_one_line(f"{path}: not a Keras archive ({type(exc).__name__}: {exc})")) from None
    if not {"config.json", "model.weights.h5"} <= names:
        raise ModelError(f"{path}: not a Keras archive (no config.json and model.weights.h5 in the zip)")


def _check_network(path: Path, input_shape, output_shape, config: Config) -> None:
    """Refuse a network whose input or output does not fit ``config``'s features and classes."""
    from ser.features import feature_shape

    expected = feature_shape(config.audio, config.features)
    if not isinstance(input_shape, tuple) or len(input_shape) != 4:
        raise ModelError(f"{path}: takes inputs of shape {input_shape}, expected (batch, *{expected}, 1)")
    if None not in input_shape[1:3] and tuple(input_shape[1:3]) != expected:
        raise ModelError(f"{path}: takes features of shape {tuple(input_shape[1:3])}, but config.json "
                         f"gives {expected}")
    n_classes = output_shape[-1] if isinstance(output_shape, tuple) and output_shape else None
    if n_classes is not None and n_classes != len(config.classes):
        raise ModelError(f"{path}: outputs {n_classes} classes, but labels.json has {len(config.classes)}")


def _open_onnx(path: Path, config: Config):
    """An ONNX Runtime session (one thread) on ``path``, checked against ``config``."""
    from ser.export import OnnxRunner

    # One thread: the graph (a small CNN or MLP head) is a small part of the work, and
    # in predict_files it runs beside the decoding workers, which already fill the
    # cores (on 480 clips with the fast model: 0.61-0.71 s instead of 0.81-0.83 s).
    runner = _load_part(path, OnnxRunner, threads=1)
    _check_network(path, runner.input_shape, (runner.n_classes,), config)
    return runner


def _open_keras(path: Path, config: Config):
    """The Keras model in ``path`` (safe mode), checked against ``config``."""
    _check_keras_archive(path)
    model = _load_part(path, _load_keras)
    _check_network(path, getattr(model, "input_shape", None), getattr(model, "output_shape", None), config)
    return model


def _read_adapted(folder: Path, listed: Mapping[str, str], config: Config, *, onnx: bool):
    """``(adapted head path, SpeakerNorm)`` of the folder, or ``(None, None)`` without speakers.npz.

    The head itself loads on first use (see :attr:`Recognizer.adapted`), but its
    files are checked now: both must be listed (save copies both), the Keras one
    must be an archive, and the ONNX one, when it is the one used, must open
    (about 20 ms for the default model's head, against 0.7 s for its whole load).
    """
    if not _uses(folder, listed, SPEAKER_NORM):
        return None, None
    from ser.speakers import SpeakerNorm

    speaker_norm = _load_part(folder / SPEAKER_NORM, SpeakerNorm.load)
    has_onnx, has_keras = (_uses(folder, listed, name) for name in (ADAPTED_ONNX, ADAPTED_KERAS))
    if has_keras:
        _check_keras_archive(folder / ADAPTED_KERAS)
    if onnx and has_onnx:
        _open_onnx(folder / ADAPTED_ONNX, config)
        return folder / ADAPTED_ONNX, speaker_norm
    if not has_keras:
        raise ModelError(f"{folder / ADAPTED_KERAS}: missing; {SPEAKER_NORM} comes with the adapted head")
    return folder / ADAPTED_KERAS, speaker_norm


def _features_line(config: Config) -> str:
    f, a = config.features, config.audio
    extras = (f", silence trimmed at {a.trim_db:g} dB" if a.trim_db else "") + (", peak-normalised"
                                                                                if a.peak_normalize else "")
    if f.kind == "whisper":
        return (f"- features: frozen Whisper-base encoder ({f.encoder_precision} weights), all 7 hidden states, "
                f"mean + std over the clip's own length (up to {a.duration:g} s){extras}")
    size = f"{f.n_mfcc} coefficients" if f.kind == "mfcc" else f"{f.n_mels} bands"
    return (f"- features: {f.kind} ({size}), n_fft {f.n_fft}, hop {f.hop_length}, normalisation {f.normalize}"
            f"{extras}")


def _model_line(config: Config) -> str:
    m, t = config.model, config.train
    ensemble = f", ensemble of {t.ensemble}" if t.ensemble > 1 else ""
    if m.architecture == "mlp":
        layers = "learned weighted sum of layers" if m.layers == "weighted" else "last layer"
        adapted = ("; plus a speaker-adapted head of the same form on features standardised per speaker "
                   "(used with an enrolled speaker or --adapt)" if config.speakers.adapted_head else "")
        return f"- model: {layers} → dense {m.dense_units} → softmax{ensemble}{adapted}"
    return f"- model: cnn2d, filters {list(m.filters)}, dense {m.dense_units}{ensemble}"


ADAPTATION_NOTE = ("Rows other than si6 and seed-split are the speaker-adapted head under the adaptation protocols "
                   "(benchmarks/adaptation.py): the speaker's statistics from an enrolment (si6-enrol), k unlabelled "
                   "clips (si6-adapt-k), all of them (si6-adapt-all), none (si6-prior), or their clips through one "
                   "random channel (channel-shift).")


def model_card(config: Config, metadata: dict) -> str:
    """A short Markdown model card from the config and recorded metrics."""
    lines = [f"# ser model `{config.name}`", "",
             "Speech emotion recognition: one of " + ", ".join(config.classes) + ".", "",
             "## Input and features", "",
             f"- audio resampled to {config.audio.sample_rate} Hz mono, first {config.audio.duration:g} s"
             + (" (zero-padded if shorter)" if config.features.kind != "whisper" else ""),
             _features_line(config), _model_line(config), ""]
    training = metadata.get("training", {})
    if training:
        lines += ["## Training", ""] + [f"- {k}: {v}" for k, v in training.items()] + [""]
    evaluations = metadata.get("evaluation", {})
    if evaluations:
        lines += ["## Evaluation (same recipe, held-out data)", ""]
        if any(name.startswith("si6-") or name == "channel-shift" for name in evaluations):
            lines += [ADAPTATION_NOTE, ""]
        lines += ["| protocol | accuracy | UAR | macro-F1 | source |", "|---|---|---|---|---|"]
        for name, ev in evaluations.items():
            lines.append(f"| {name} | {ev['accuracy']:.3f} | {ev['uar']:.3f} | {ev['macro_f1']:.3f} | "
                         f"{ev.get('source', '')} |")
        lines.append("")
    lines += ["## Data and license", "",
              metadata.get("data_license", "Trained on data whose license the trainer must state."), ""]
    return "\n".join(lines)
