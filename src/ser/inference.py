"""Predictions: :class:`Recognizer` (a loaded model that only predicts) and :class:`Prediction`.

A :class:`Recognizer` is read from a model folder (:mod:`ser.modelfolder`), turns audio
into features with its :class:`~ser.frontend.Frontend`, and runs its network on a
runtime of :mod:`ser.runtime` (ONNX Runtime by default: no TensorFlow). It is immutable
and safe to share between threads: the HTTP service and batch jobs hold one per model.

Models shipped with the package live in ``ser/pretrained/<name>`` (``default``:
Whisper-base features, the most accurate; ``fast``: a small MFCC CNN) and load by
name: ``Recognizer.load("fast")``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser.config import Config
from ser.errors import ModelError, SERError
from ser.frontend import Frontend, seconds
from ser.modelfolder import (DEFAULT_MODEL, PRETRAINED_DIR, bundled_models, check_output_folder,  # noqa: F401
                             read_model_folder, resolve_model, write_model_folder)

log = logging.getLogger(__name__)


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

    Immutable and safe to share between threads. Build one with :meth:`load`, or
    from a trained network (``ser.training.train_recognizer``) and :meth:`save` it.

    Parameters
    ----------
    model : keras.Model, optional
        Outputs probabilities over ``config.classes``; optional when ``runner`` is
        given (then it is read from ``path/model.keras`` on first use, if there).
    config : Config
        The config the model was trained with.
    metadata : dict, optional
        Metrics and other facts shown in the model card.
    path : Path, optional
        The model folder it was read from.
    encoder : ser.encoders.WhisperEncoder, optional
        The speech encoder the folder carries (whisper features); default: the shared one.
    runner : ser.runtime.OnnxRunner, optional
        The network on ONNX Runtime; default: ``model`` on Keras.
    adapted : keras.Model, runner or path, optional
        The speaker-adapted head (inputs standardised per speaker); a path to its
        ``.onnx`` or ``.keras`` file is loaded on first use.
    speaker_norm : ser.speakers.SpeakerNorm, optional
        Its training speakers' prior and enrolment correction.
    """

    def __init__(self, model, config: Config, *, metadata: dict | None = None, path: Path | None = None,
                 encoder=None, runner=None, adapted=None, speaker_norm=None) -> None:
        if (adapted is None) != (speaker_norm is None):
            raise ValueError("adapted and speaker_norm go together")
        if model is None and runner is None:
            raise ValueError("give model or runner")
        self._model = model
        self._config = config
        self._metadata = dict(metadata or {})
        self._path = Path(path) if path is not None else None
        self._frontend = Frontend(config, encoder)
        self._runner = runner
        self._adapted = adapted
        # A head given as a path is the folder's own: saving copies its files unchanged.
        self._adapted_source = adapted if isinstance(adapted, Path) else None
        self._speaker_norm = speaker_norm
        self._lock = threading.Lock()  # guards the two parts loaded on first use
        self._network = None

    # --- what it is ----------------------------------------------------
    @property
    def config(self) -> Config:
        """The config the model was trained with."""
        return self._config

    @property
    def metadata(self) -> dict:
        """Metrics and facts recorded with the model (a copy)."""
        return dict(self._metadata)

    @property
    def path(self) -> Path | None:
        """The model folder it was read from, or None."""
        return self._path

    @property
    def frontend(self) -> Frontend:
        """Its path from audio to features."""
        return self._frontend

    @property
    def encoder(self):
        """The speech encoder its folder carries, or None (spectral features, or the shared encoder)."""
        return self._frontend.encoder

    @property
    def runner(self):
        """The network on ONNX Runtime, or None when it runs on Keras."""
        return self._runner

    @property
    def speaker_norm(self):
        """The training speakers' statistics of the adapted head, or None without one."""
        return self._speaker_norm

    @property
    def classes(self) -> tuple[str, ...]:
        """Output classes in order."""
        return self._config.classes

    @property
    def features_id(self) -> str:
        """Fingerprint of this model's feature pipeline; speaker profiles are tied to it."""
        from ser.speakers import fingerprint

        return fingerprint(self._config)

    @property
    def model(self):
        """The Keras model (read from ``model.keras`` on first use when predictions run on ONNX Runtime).

        Raises
        ------
        ModelError
            The folder has no Keras model (bundled models are ONNX-only).
        """
        with self._lock:
            if self._model is None:
                from ser.modelfolder import open_keras

                self._model = open_keras(self._path, self._config)
            return self._model

    @property
    def adapted(self):
        """The speaker-adapted head as a runner, or None (read on first use: no cost for plain predictions)."""
        with self._lock:
            if isinstance(self._adapted, Path):
                from ser.modelfolder import open_head

                self._adapted = open_head(self._adapted, self._config)
            return self._adapted

    def replace(self, **changes) -> Recognizer:
        """A new Recognizer with some constructor arguments changed (``config``, ``metadata``, ``adapted``...)."""
        parts = dict(model=self._model, config=self._config, metadata=self._metadata, path=self._path,
                     encoder=self.encoder, runner=self._runner, adapted=self._adapted_source or self._adapted,
                     speaker_norm=self._speaker_norm)
        unknown = set(changes) - set(parts)
        if unknown:
            raise TypeError(f"replace: unknown arguments {sorted(unknown)}")
        parts.update(changes)
        return Recognizer(parts.pop("model"), parts.pop("config"), **parts)

    # --- loading and saving ------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, runtime: str = "auto") -> Recognizer:
        """Load and verify a model folder (default: the bundled model).

        Parameters
        ----------
        path : path-like, optional
            Model folder, or the name of a bundled model (``"default"``, ``"fast"``;
            see :func:`ser.modelfolder.bundled_models`); default: the bundled ``default``.
        runtime : {"auto", "onnx", "keras"}
            ``"auto"`` runs ``model.onnx`` on ONNX Runtime when the folder has one
            (no TensorFlow import: about 0.2 s instead of 3-4 s), else Keras.

        Raises
        ------
        ModelError
            One line naming the file (see :func:`ser.modelfolder.read_model_folder`).
        """
        return cls(**read_model_folder(path, runtime=runtime))

    def save(self, path: str | os.PathLike, *, history: dict | None = None, card: str | None = None,
             force: bool = False) -> Path:
        """Write the model folder atomically; see :func:`ser.modelfolder.write_model_folder`.

        Returns
        -------
        Path
            The folder written (absolute). Load it with :meth:`load`.
        """
        return write_model_folder(self, path, history=history, card=card, force=force)

    # --- prediction ---------------------------------------------------
    def _net(self):
        if self._runner is not None:
            return self._runner
        with self._lock:
            if self._network is None:
                from ser.runtime import KerasRunner

                self._network = KerasRunner(self._model)
            return self._network

    def _scores(self, x: np.ndarray, speaker: tuple | None = None) -> np.ndarray:
        """Probabilities for features ``x``; with ``speaker`` = ``(stats, kind)``, from the adapted head."""
        net = self._net()
        if speaker is not None:
            x = self._speaker_norm.normalize(x, *speaker)
            net = self.adapted
        return net(np.ascontiguousarray(x[..., None], dtype=np.float32))

    def require_adapted_head(self) -> None:
        """Raise :class:`ModelError` (one line) if this model has no speaker-adapted head."""
        if self._speaker_norm is None:
            where = self._path or "this model"
            raise ModelError(f"{where}: has no speaker-adapted head (train it with speakers.adapted_head=true)")

    def profile(self, speaker, *, folder: str | os.PathLike | None = None):
        """The enrolment profile ``speaker`` (a name, or a profile passed through), checked against this model."""
        from ser.speakers import read_profile

        self.require_adapted_head()
        return read_profile(speaker, features=self.features_id, shape=self._speaker_norm.prior.mean.shape,
                            folder=folder)

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
            An enrolled speaker (name or profile, see :func:`ser.speakers.enrol`), or
            feature statistics of other clips of the same speaker (unlabelled
            adaptation): the adapted head reads the clip relative to that speaker's baseline.
        """
        speaker = self._speaker(speaker)
        return self._prediction(self._scores(self.features(y, sr)[None], speaker)[0], seconds(y, sr), None)

    def predict_many(self, ys: Sequence[np.ndarray], sr: int, *, jobs: int | None = None) -> list[Prediction | SERError]:
        """:meth:`predict` of many in-memory signals at one rate, as one batch.

        Features on worker threads (:meth:`ser.frontend.Frontend.clips`), then one network call;
        the scores equal :meth:`predict`'s to float round-off. A signal that :meth:`predict`
        would refuse gets its error in its place in the result instead.

        Parameters
        ----------
        ys : sequence of numpy.ndarray
            Signals, each ``(n_samples,)`` or ``(n_samples, n_channels)``.
        sr : int
            Their sample rate.
        jobs : int, optional
            Worker threads for the features (default: all cores).

        Returns
        -------
        list
            One :class:`Prediction` or :class:`~ser.errors.SERError` per signal, in order.
        """
        out: list = self._frontend.clips(ys, sr, jobs=jobs)
        ok = [i for i, x in enumerate(out) if not isinstance(x, SERError)]
        if ok:
            probs = self._scores(np.stack([out[i] for i in ok]))
            for i, p in zip(ok, probs):
                try:
                    out[i] = self._prediction(p, seconds(ys[i], sr), None)
                except SERError as exc:
                    out[i] = exc
        return out

    def features(self, y: np.ndarray, sr: int) -> np.ndarray:
        """The model's input features of an in-memory signal: the embedding API.

        For the bundled ``default`` model (and any model of the ``accurate`` or ``robust``
        recipe) this is an utterance embedding from the frozen Whisper-base encoder: for each
        of its 7 hidden states (the input embedding and 6 layers), the mean and the standard
        deviation over the clip's frames, shape ``(7, 1024)`` (``[:, :512]`` means,
        ``[:, 512:]`` standard deviations), float32. Use it for clustering, retrieval or a
        classifier of your own; ``x[-1, :512]`` (last layer, mean) is a common single vector.
        For spectral models (``fast``) it is the MFCC or log-mel matrix,
        ``(n_features, n_frames)``. :meth:`predict_features` scores these features.

        Parameters
        ----------
        y : numpy.ndarray
            Shape ``(n_samples,)`` or ``(n_samples, n_channels)``, any rate; checked like
            :meth:`predict`'s input (too short, silent, longer than ``audio.max_duration``).
        sr : int
            Sample rate of ``y``.

        Returns
        -------
        numpy.ndarray
            float32, shape :func:`ser.features.feature_shape` of the model's config.
        """
        return self._frontend.clip(y, sr)

    def predict_features(self, x: np.ndarray, *, speaker=None) -> Prediction:
        """Recognise the emotion from features of :meth:`features`; ``speaker`` as in :meth:`predict`."""
        return self._prediction(self._scores(np.asarray(x)[None], self._speaker(speaker))[0], 0.0, None)

    def predict_file(self, path: str | os.PathLike, *, speaker=None) -> Prediction:
        """Recognise the emotion in an audio file (any format libsndfile reads); ``speaker`` as in :meth:`predict`."""
        speaker = self._speaker(speaker)
        x, duration = self._frontend.file(path)
        return self._prediction(self._scores(x[None], speaker)[0], duration, str(path))

    def predict_files(self, paths: Sequence[str | os.PathLike], *, batch_size: int = 32, progress: bool = False,
                      errors: str = "raise", jobs: int | None = None, speaker=None,
                      groups: Sequence[str] | None = None) -> list[Prediction | SERError]:
        """Recognise many files, in batches, decoding them on all cores.

        From :data:`ser.frontend.POOL_MIN_ITEMS` files on, decoding and features (the speech
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

        stream = self.frontend.stream(paths, jobs=jobs)
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
            stream.close()  # stops the worker threads, also when an error is raised or the caller stops
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

    def speaker_stats(self, x: np.ndarray):
        """Statistics of unlabelled clips of one speaker for the adapted head, shape ``x``: ``(n, *features)``.

        With ``speakers.correct_mix`` and a speaker norm that has class statistics, they are
        corrected for the emotions the clips hold, estimated by the inductive head's mean
        posterior over them (:meth:`ser.speakers.SpeakerNorm.correct`): a speaker heard in one
        emotion is then not standardised into neutrality.
        """
        from ser.speakers import SpeakerStats

        self.require_adapted_head()
        stats = SpeakerStats.of(x)
        if self._config.speakers.correct_mix and self._speaker_norm.class_offset is not None:
            mix = np.concatenate([self._scores(x[i:i + 64]) for i in range(0, len(x), 64)]).mean(axis=0)
            stats = self._speaker_norm.correct(stats, mix)
        return stats

    def _score_groups(self, kept: list, groups: Sequence[str], batch_size: int, score) -> None:
        """Score each group's clips with the group's own statistics (unlabelled adaptation)."""
        by_group: dict[str, list] = {}
        for entry in kept:
            by_group.setdefault(str(groups[entry[0]]), []).append(entry)
        for members in by_group.values():
            stats = (self.speaker_stats(np.stack([x for _, x, _ in members])), "adapt")
            for first in range(0, len(members), batch_size):
                score(members[first:first + batch_size], stats)


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
