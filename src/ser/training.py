"""Splits, fitting one model, cross-validation, final fit and grid search.

Every split is grouped by speaker (``Clip.speaker``): validation speakers are
always drawn from the training side, so no test speaker's clips or statistics
ever reach training, normalisation, early stopping or model choice.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.augment import mask_spectrogram
from ser.cache import FeatureCache
from ser.config import Config
from ser.dataset import Clip
from ser.errors import ConfigError, ManifestError
from ser.frontend import compute_features, local_executor
from ser.labels import encode
from ser.quiet import FEATURE_LOGGERS, import_keras, warnings_once
from ser.utils import atomic_write_text, sha256_file

log = logging.getLogger(__name__)

#: EmoBox speaker-independent RAVDESS folds (test actors of each of the 6 folds).
SI6_FOLDS: tuple[tuple[int, ...], ...] = (
    (1, 11, 20, 21), (4, 10, 12, 14), (8, 9, 19, 23), (3, 5, 7, 24), (2, 15, 16, 18), (6, 13, 17, 22),
)

PROTOCOLS = ("seed-split", "si6", "group-kfold", "loco", "si6+corpora")


@dataclass(frozen=True)
class Fold:
    """One train/test split: indices into the clip list.

    ``restrict``: each test clip is scored among the labels its corpus has (``loco``: a corpus
    without ``calm`` is never wrong by ``calm``); ``corpus``: the left-out corpus, if any.
    """

    number: int
    train: np.ndarray
    test: np.ndarray
    test_speakers: tuple[str, ...] = ()
    restrict: bool = False
    corpus: str = ""


def speakers_of(clips: Sequence[Clip]) -> np.ndarray:
    """Speaker id per clip; a clip with no speaker is its own group."""
    return np.array([c.speaker or f"clip:{c.path}" for c in clips])


def corpora_of(clips: Sequence[Clip]) -> np.ndarray:
    """Corpus of each clip (``meta["corpus"]``; ``""`` for manifest rows that do not say)."""
    return np.array([str((c.meta or {}).get("corpus", "")) for c in clips])


def label_masks(y: np.ndarray, corpora: np.ndarray, idx: np.ndarray, n_classes: int) -> np.ndarray:
    """Which labels each clip's corpus has, as seen among the clips ``idx``: bool ``(n, n_classes)``.

    A corpus's label set is the labels its clips in ``idx`` (a training side) carry, so a
    test corpus's labels are never read; clips of a corpus absent from ``idx`` get every label.
    """
    masks = np.ones((len(y), n_classes), dtype=bool)
    for corpus in np.unique(corpora[idx]):
        present = np.zeros(n_classes, dtype=bool)
        present[np.unique(y[idx][corpora[idx] == corpus])] = True
        masks[corpora == corpus] = present
    return masks


def is_mixed(corpora: np.ndarray | None, idx: np.ndarray) -> bool:
    """Whether the clips ``idx`` come from more than one corpus (the masked, balanced training applies)."""
    return corpora is not None and len(np.unique(corpora[idx])) > 1


def mixed_weights(y: np.ndarray, corpora: np.ndarray, speakers: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Sample weights of clips ``idx`` from several corpora, mean 1: ``(len(idx),)`` float32.

    Each corpus gets the same total weight, split equally among its speakers, each speaker's
    share split over their clips in inverse proportion to their class's frequency in the
    corpus (the single-corpus "balanced" class weights, within the corpus). Without it,
    ASED (65 speakers, 2474 clips) would outweigh EMOVO (6 actors, 588 clips) four to one.
    """
    w = np.empty(len(idx), dtype=np.float64)
    cs, ss, ys = corpora[idx], speakers[idx], y[idx]
    corpus_names = np.unique(cs)
    for corpus in corpus_names:
        in_corpus = cs == corpus
        classes, counts = np.unique(ys[in_corpus], return_counts=True)
        class_w = dict(zip(classes.tolist(), (in_corpus.sum() / (len(classes) * counts)).tolist()))
        own_speakers = np.unique(ss[in_corpus])
        for speaker in own_speakers:
            own = np.flatnonzero(in_corpus & (ss == speaker))
            cw = np.array([class_w[int(c)] for c in ys[own]])
            w[own] = cw / cw.sum() / len(own_speakers) / len(corpus_names)
    return (w * len(idx)).astype(np.float32)


def restricted_argmax(probs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Predicted class per row among the labels ``mask`` allows (``(C,)`` or ``(n, C)`` bool; None: all)."""
    if mask is None:
        return probs.argmax(axis=1)
    return np.where(np.broadcast_to(mask, probs.shape), probs, -np.inf).argmax(axis=1)


def seed_split(clips: Sequence[Clip], *, test_size: float = 0.2, seed: int = 42) -> list[Fold]:
    """The original notebook's split: stratified random 80/20 over clips sorted by path.

    Speaker-dependent (the same actors are on both sides): for comparison only.
    """
    from sklearn.model_selection import train_test_split

    order = np.argsort([str(c.path) for c in clips], kind="stable")
    labels = [clips[i].label for i in order]
    train, test = train_test_split(order, test_size=test_size, stratify=labels, random_state=seed)
    return [Fold(1, np.sort(train), np.sort(test))]


def si6_folds(clips: Sequence[Clip], *, partial: bool = False) -> list[Fold]:
    """The ``si6`` protocol: the six EmoBox actor folds of RAVDESS (all 24 actors needed).

    Speakers other than RAVDESS actors 1-24 (another corpus trained alongside) are on the
    training side of every fold.

    Parameters
    ----------
    partial : bool
        Accept data without all 24 actors: a fold whose actors are all missing is skipped,
        and the others test on the actors present. Its figures are not comparable with si6.

    Raises
    ------
    ManifestError
        No RAVDESS actor in the data, or (without ``partial``) some of the 24 missing.
    """
    speakers = speakers_of(clips)
    present = set(speakers.tolist())
    missing = [a for fold in SI6_FOLDS for a in fold if str(a) not in present]
    if len(missing) == sum(len(f) for f in SI6_FOLDS):
        raise ManifestError("si6 needs RAVDESS actors 1-24 as speakers; none found in the data")
    if missing and not partial:
        raise ManifestError(f"si6 needs all 24 RAVDESS actors; {len(missing)} missing "
                            f"({', '.join(map(str, sorted(missing)))}): use group-kfold, or ask for partial "
                            "folds (--partial-folds; not comparable with si6)")
    folds = []
    for number, actors in enumerate(SI6_FOLDS, start=1):
        names = tuple(str(a) for a in actors)
        test = np.flatnonzero(np.isin(speakers, names))
        if test.size == 0:
            log.info("si6 fold %d: none of actors %s in the data; skipped (partial folds)", number, actors)
            continue
        folds.append(Fold(number, np.flatnonzero(~np.isin(speakers, names)), test, names))
    return folds


def si6_missing(clips: Sequence[Clip]) -> list[int]:
    """The RAVDESS actors (1-24) of the si6 folds that ``clips`` lack."""
    present = set(speakers_of(clips).tolist())
    return sorted(a for fold in SI6_FOLDS for a in fold if str(a) not in present)


def group_kfold(clips: Sequence[Clip], *, k: int = 5) -> list[Fold]:
    """Speaker-grouped k-fold for any corpus (scikit-learn ``GroupKFold``)."""
    from sklearn.model_selection import GroupKFold

    speakers = speakers_of(clips)
    if len(set(speakers)) < k:
        raise ConfigError(f"folds={k}: only {len(set(speakers))} speakers in the data")
    out = []
    for number, (train, test) in enumerate(GroupKFold(n_splits=k).split(speakers, groups=speakers), start=1):
        out.append(Fold(number, train, test, tuple(sorted(set(speakers[test])))))
    return out


def loco_folds(clips: Sequence[Clip]) -> list[Fold]:
    """Leave one corpus out: one fold per corpus, trained on all the others, scored over the labels it has.

    Folds are numbered in corpus order (sorted names); the test side is every clip of the corpus
    and ``restrict`` is set, so its clips are predicted among that corpus's labels only.

    Raises
    ------
    ManifestError
        Fewer than two corpora, or clips that do not say their corpus (a generic manifest).
    """
    corpora = corpora_of(clips)
    if (corpora == "").any():
        raise ManifestError(f"loco: {int((corpora == '').sum())} clips do not say their corpus (generic manifest "
                            "rows); give corpus folders or manifests written by ser data index")
    names = sorted(set(corpora.tolist()))
    if len(names) < 2:
        raise ManifestError(f"loco needs clips of two or more corpora; found only {names[0] if names else 'none'}")
    speakers = speakers_of(clips)
    folds = []
    for number, corpus in enumerate(names, start=1):
        test = np.flatnonzero(corpora == corpus)
        folds.append(Fold(number, np.flatnonzero(corpora != corpus), test,
                          tuple(sorted(set(speakers[test].tolist()), key=lambda s: (len(s), s))), True, corpus))
    return folds


def si6_corpora_folds(clips: Sequence[Clip], *, partial: bool = False) -> list[Fold]:
    """``si6+corpora``: the si6 folds with the clips of every other corpus on each training side.

    The test side is RAVDESS test actors only, never seen in training; this differs from
    :func:`si6_folds` only in refusing data without another corpus, so that its name says what
    trained it.

    Raises
    ------
    ManifestError
        No corpus besides RAVDESS in the data, or as :func:`si6_folds`.
    """
    others = sorted(set(corpora_of(clips).tolist()) - {"ravdess", ""})
    if not others:
        raise ManifestError("si6+corpora needs RAVDESS and at least one other corpus (e.g. --data emovo); use si6 "
                            "for RAVDESS alone")
    return si6_folds(clips, partial=partial)


def make_folds(clips: Sequence[Clip], protocol: str, *, k: int = 5, seed: int = 42,
               partial: bool = False) -> list[Fold]:
    """Folds of a named protocol: ``seed-split``, ``si6`` (``partial``: see :func:`si6_folds`), ``group-kfold``,
    ``loco`` (:func:`loco_folds`) or ``si6+corpora`` (:func:`si6_corpora_folds`)."""
    if protocol == "seed-split":
        return seed_split(clips, seed=seed)
    if protocol == "si6":
        return si6_folds(clips, partial=partial)
    if protocol == "si6+corpora":
        return si6_corpora_folds(clips, partial=partial)
    if protocol == "loco":
        return loco_folds(clips)
    if protocol == "group-kfold":
        return group_kfold(clips, k=k)
    raise ConfigError(f"protocol={protocol!r}: expected one of {list(PROTOCOLS)}")


def pick_validation(speakers: np.ndarray, train: np.ndarray, *, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices into (fit, validation) by drawing ``n`` training-side speakers."""
    if n == 0:
        return train, train[:0]
    pool = sorted(set(speakers[train]), key=lambda s: (len(s), s))
    if len(pool) <= n:
        raise ConfigError(f"train.validation_speakers={n}: only {len(pool)} speakers on the training side")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(pool, size=n, replace=False)
    is_val = np.isin(speakers[train], chosen)
    return train[~is_val], train[is_val]


def prepare_features(clips: Sequence[Clip], config: Config, *, cache: FeatureCache | None = None,
                     jobs: int | None = None, progress: bool = False,
                     executor: Callable[..., Iterator] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Clean features of every clip and, if augmentation is on, its augmented copies.

    Copies are made for every clip, but a fold only ever trains on the copies of
    its own training clips; test and validation clips are always used clean.
    ``executor``: see :func:`ser.frontend.compute_features`.
    """
    with warnings_once(*FEATURE_LOGGERS):
        return compute_features([c.path for c in clips], config, copies=config.augment.copies, cache=cache,
                                jobs=jobs, progress=progress, executor=executor)


#: Loggers whose per-file warnings a batch over many files says once (see :func:`ser.quiet.warnings_once`).


def describe_device() -> str:
    """The device TensorFlow will train on, e.g. ``"GPU:0 (NVIDIA …)"`` or ``"CPU (2 cores)"``."""
    import_keras()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU:0 ({details.get('device_name', gpus[0].name)})"
    return f"CPU ({os.cpu_count()} cores)"


def _class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    # 'balanced' as in scikit-learn, for the classes present; absent classes get 1.
    counts = np.bincount(y, minlength=n_classes)
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = y.size / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


def fit(config: Config, x: np.ndarray, y: np.ndarray, speakers: np.ndarray, train: np.ndarray, *,
        augmented: np.ndarray | None = None, progress: bool = False, corpora: np.ndarray | None = None):
    """Fit one model on the clips ``train`` (indices into ``x``).

    Parameters
    ----------
    config : Config
        Model and training settings.
    x : numpy.ndarray
        Clean features of all clips, shape ``(n, n_features, n_frames)``.
    y : numpy.ndarray
        Class indices of all clips, shape ``(n,)``.
    speakers : numpy.ndarray
        Speaker id of all clips, shape ``(n,)``.
    train : numpy.ndarray
        Indices usable for training; validation speakers are drawn from these.
    augmented : numpy.ndarray, optional
        Augmented copies, shape ``(n, copies, n_features, n_frames)``; only the
        copies of fitting clips are used.
    progress : bool
        Show Keras' per-epoch progress.
    corpora : numpy.ndarray, optional
        Corpus of all clips (:func:`corpora_of`). When ``train`` spans several, each clip's
        loss is the cross-entropy over the labels its corpus has
        (:func:`ser.models.masked_crossentropy`, masks from :func:`label_masks`) and, with
        ``train.corpus_balance``, clips are weighted by :func:`mixed_weights` instead of the
        class weights. One corpus (or ``None``) trains exactly as before.

    Returns
    -------
    model : keras.Model
        The fitted model (best validation epoch if ``train.restore_best``). With
        ``train.ensemble`` = N > 1, N members trained with seeds ``seed … seed+N-1``
        (so also other validation speakers), averaged in one model.
    history : dict
        Per-epoch ``loss``, ``accuracy`` (and ``val_loss``, ``val_accuracy``),
        plus ``validation_speakers`` and ``best_epoch`` (of the first member; an
        ensemble adds ``members`` with each member's history).
    """
    if config.train.ensemble == 1:
        return _fit_one(config, x, y, speakers, train, augmented=augmented, progress=progress, corpora=corpora)
    from ser.models import ensemble_model

    members, histories = [], []
    for k in range(config.train.ensemble):
        member_config = config.override({"train.seed": config.train.seed + k, "train.ensemble": 1})
        model, history = _fit_one(member_config, x, y, speakers, train, augmented=augmented, progress=progress,
                                  corpora=corpora)
        model.name = f"member{k}"
        members.append(model)
        histories.append(history)
    history = {**histories[0], "members": histories}
    scores = [h["validation"] for h in histories if h.get("validation")]
    if scores:
        # Each member's validation speakers differ (its own seed) and trained the other members,
        # so the ensemble has no clean validation set: the members' mean is what is recorded.
        uar = float(np.mean([s["uar"] for s in scores]))
        history["validation"] = {
            "what": f"mean of the {len(scores)} members' scores on their own validation speakers",
            "uar": uar, "accuracy": float(np.mean([s["accuracy"] for s in scores])),
            "clips": scores[0]["clips"], "chance_uar": scores[0]["chance_uar"],
            "near_chance": near_chance(uar, scores[0]["chance_uar"], scores[0]["clips"]),
            "members": scores}
    return ensemble_model(members), history


def near_chance(uar: float, chance: float, n: int) -> bool:
    """Whether a UAR on ``n`` clips is within two standard errors of chance (``1 / classes``).

    A score below this line is what guessing gives on that many clips: the model has not
    (measurably) learned anything that carries over to new speakers.
    """
    return uar < chance + 2.0 * math.sqrt(chance * (1.0 - chance) / max(n, 1))


def validation_score(model, x: np.ndarray, y: np.ndarray, classes: Sequence[str],
                     speakers: Sequence[str] = (), masks: np.ndarray | None = None) -> dict:
    """UAR and accuracy of ``model`` on validation clips ``x`` (class indices ``y``), with chance level.

    ``masks`` (``(n, C)`` bool, mixed corpora): each clip predicted among its corpus's labels.

    Returns
    -------
    dict
        ``speakers``, ``clips``, ``uar``, ``accuracy``, ``chance_uar`` (1 / classes present)
        and ``near_chance`` (see :func:`near_chance`).
    """
    from ser.evaluation import metrics

    m = metrics(y, restricted_argmax(predict_proba(model, x), masks), classes)
    chance = 1.0 / len(np.unique(y))
    return {"speakers": list(speakers), "clips": m["n"], "uar": m["uar"], "accuracy": m["accuracy"],
            "chance_uar": chance, "near_chance": near_chance(m["uar"], chance, m["n"])}


def enrol_mask(y: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Which clips (class indices ``y``) are the kind of speech an enrolment holds (neutral, calm)."""
    from ser.speakers import ENROL_CLASSES

    return np.isin(y, [classes.index(c) for c in ENROL_CLASSES if c in classes])


#: Statistics behind augmented copies in :func:`fit_adapted`: k random clips, all, or the calm ones.
SUBSET_SIZES: tuple = (5, 10, 20, "all", "enrol")


def fit_adapted(config: Config, x: np.ndarray, y: np.ndarray, speakers: np.ndarray, train: np.ndarray, *,
                augmented: np.ndarray | None = None, progress: bool = False, corpora: np.ndarray | None = None):
    """Fit the speaker-adapted head: every training speaker standardised by their own statistics.

    Same parameters as :func:`fit`. Clean clips are standardised with statistics of
    all of their speaker's clean clips. With ``speakers.subset_stats``, each
    augmented copy of a speaker's clips is standardised with statistics of a random
    subset of that speaker's clean clips instead (5, 10 or 20 clips, all of them, or
    their calm ones as an enrolment), shrunk like a new speaker's: the head learns
    to read features standardised by the noisy estimates it will get at prediction
    time. Only clips in ``train`` are read; other rows of ``x`` pass through unchanged.

    Returns
    -------
    model : keras.Model
    history : dict
    norm : ser.speakers.SpeakerNorm
        The prior and enrolment correction to standardise new speakers with.
    """
    from ser.speakers import SpeakerNorm, SpeakerStats, normalize_by_group

    enrol = enrol_mask(y, config.classes)
    norm = SpeakerNorm.fit(x[train], speakers[train], enrol[train], prior_weight=config.speakers.prior_weight,
                           labels=y[train], n_classes=len(config.classes))
    xn = x.astype(np.float32, copy=True)
    xn[train] = normalize_by_group(x[train], speakers[train], norm)
    an = None
    if augmented is not None:
        an = augmented.astype(np.float32, copy=True)
        rng = np.random.default_rng(config.train.seed)
        for speaker in sorted(set(speakers[train].tolist()), key=lambda s: (len(s), s)):
            own = train[speakers[train] == speaker]
            for copy in range(an.shape[1]):
                subset, kind = own, "adapt"
                if config.speakers.subset_stats:
                    size = SUBSET_SIZES[rng.integers(len(SUBSET_SIZES))]
                    if size == "enrol" and enrol[own].sum() >= 2:
                        subset, kind = own[enrol[own]], "enrol"
                    elif isinstance(size, int) and size < own.size:
                        subset = rng.choice(own, size=size, replace=False)
                an[own, copy] = norm.normalize(augmented[own, copy], SpeakerStats.of(x[subset]), kind)
    model, history = fit(config, xn, y, speakers, train, augmented=an, progress=progress, corpora=corpora)
    return model, history, norm


def _fit_one(config: Config, x: np.ndarray, y: np.ndarray, speakers: np.ndarray, train: np.ndarray, *,
             augmented: np.ndarray | None = None, progress: bool = False, corpora: np.ndarray | None = None):
    keras = import_keras()
    t = config.train
    n_classes = len(config.classes)
    fit_idx, val_idx = pick_validation(speakers, train, n=t.validation_speakers, seed=t.seed)
    x_fit, y_fit = x[fit_idx], y[fit_idx]
    n_copies = 0
    if augmented is not None and config.augment.copies:
        copies = augmented[fit_idx]
        n_copies = copies.shape[1]
        x_fit = np.concatenate([x_fit, copies.reshape(-1, *x.shape[1:])])
        y_fit = np.concatenate([y_fit, np.repeat(y[fit_idx], copies.shape[1])])

    keras.utils.set_random_seed(t.seed)
    from ser.models import build_model, compile_for

    model = build_model(config, input_shape=x.shape[1:], x_train=x_fit)
    weights = _class_weights(y_fit, n_classes) if t.class_weight == "balanced" else None
    masks = None
    if is_mixed(corpora, train):
        # Several corpora: targets packed with their corpus's label mask for the masked loss (all labels
        # allowed when masks are off: the same loss, then the plain softmax cross-entropy over the union).
        masks = label_masks(y, corpora, train, n_classes)
        if not t.label_masks:
            masks[:] = True
        compile_for(model, config, masked=True)
        if t.corpus_balance:
            w = mixed_weights(y, corpora, speakers, fit_idx)
            weights = np.concatenate([w, np.repeat(w, n_copies)]) if n_copies else w
    fit_rows = np.concatenate([fit_idx, np.repeat(fit_idx, n_copies)]) if n_copies else fit_idx
    callbacks = []
    validation = None
    if val_idx.size:
        validation = (x[val_idx][..., None], _targets(y[val_idx], masks, val_idx, n_classes, t.label_smoothing))
        if t.early_stopping_patience or t.restore_best:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=t.early_stopping_patience or t.epochs,
                restore_best_weights=t.restore_best, verbose=0))
    y_hot = _targets(y_fit, masks, fit_rows, n_classes, t.label_smoothing)
    a = config.augment
    if isinstance(weights, dict):  # class weights of one corpus, per sample (as Keras' class_weight)
        sample_w = np.array([weights[c] for c in y_fit], dtype=np.float32)
    else:
        sample_w = weights
    if a.time_masks or a.freq_masks:
        data = _MaskedBatches(x_fit, y_hot, sample_w, config, np.random.default_rng(t.seed))
        hist = model.fit(data, epochs=t.epochs, validation_data=validation, callbacks=callbacks,
                         verbose=2 if progress else 0)
    elif masks is None:
        hist = model.fit(x_fit[..., None], y_hot, batch_size=t.batch_size, epochs=t.epochs, shuffle=True,
                         class_weight=weights, validation_data=validation, callbacks=callbacks,
                         verbose=2 if progress else 0)
    else:
        hist = model.fit(x_fit[..., None], y_hot, batch_size=t.batch_size, epochs=t.epochs, shuffle=True,
                         sample_weight=sample_w, validation_data=validation, callbacks=callbacks,
                         verbose=2 if progress else 0)
    if masks is not None:
        compile_for(model, config, masked=False)  # a saved model then names built-in objects only
    history = {k.replace("masked_accuracy", "accuracy"): [float(v) for v in vals]
               for k, vals in hist.history.items()}
    history["validation_speakers"] = sorted(set(speakers[val_idx].tolist()), key=lambda s: (len(s), s))
    if "val_loss" in history:
        history["best_epoch"] = int(np.argmin(history["val_loss"])) + 1
    if val_idx.size:
        history["validation"] = validation_score(model, x[val_idx], y[val_idx], config.classes,
                                                 history["validation_speakers"],
                                                 None if masks is None else masks[val_idx])
    return model, history


def _targets(y: np.ndarray, masks: np.ndarray | None, rows: np.ndarray, n_classes: int,
             smoothing: float) -> np.ndarray:
    """One-hot targets; with label masks, smoothed over each clip's allowed labels and packed with the mask.

    Without masks, label smoothing is the loss's (built-in cross-entropy); with them it is spread over
    the clip's corpus's labels only (``rows``: the clip index behind each target), then
    ``[target | mask]``, shape ``(n, 2 C)``, for :func:`ser.models.masked_crossentropy`.
    """
    if masks is None:
        from keras.utils import to_categorical

        return to_categorical(y, n_classes)
    hot = np.eye(n_classes, dtype=np.float32)[y]
    m = masks[rows].astype(np.float32)
    target = (1.0 - smoothing) * hot + smoothing * m / m.sum(axis=1, keepdims=True)
    return np.concatenate([target, m], axis=1)


class _MaskedBatches:
    """Shuffled batches with fresh spectrogram masks each epoch (a Keras ``PyDataset``)."""

    def __new__(cls, *args, **kwargs):
        import keras

        # Build the subclass lazily so that importing this module does not import Keras.
        class Batches(keras.utils.PyDataset):
            def __init__(self, x, y, weights, config, rng):
                super().__init__()
                self.x, self.y, self.config, self.rng = x, y, config, rng
                self.w = weights  # per sample, or None
                self.order = rng.permutation(len(x))

            def __len__(self):
                return math.ceil(len(self.x) / self.config.train.batch_size)

            def __getitem__(self, i):
                bs = self.config.train.batch_size
                idx = self.order[i * bs:(i + 1) * bs]
                xb = mask_spectrogram(self.x[idx], config=self.config.augment, rng=self.rng)[..., None]
                if self.w is None:
                    return xb, self.y[idx]
                return xb, self.y[idx], self.w[idx]

            def on_epoch_end(self):
                self.order = self.rng.permutation(len(self.x))

        return Batches(*args, **kwargs)


def predict_proba(model, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Class probabilities, shape ``(n, n_classes)``, float32.

    The model is called directly on each batch (as :class:`ser.inference.Recognizer` does):
    ``model.predict`` builds a new ``tf.function`` for every model, and one per fold made
    TensorFlow warn about "retracing" twice per evaluation.
    """
    keras = import_keras()
    parts = [keras.ops.convert_to_numpy(model(x[i:i + batch_size][..., None], training=False))
             for i in range(0, len(x), batch_size)]
    if not parts:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)


def changed_settings(config: Config) -> dict:
    """The settings of ``config`` that differ from the defaults of their fields, by section.

    ``{"name": "robust", "features": {"kind": "whisper"}, ...}``: a field added later at its
    default leaves this (and every digest made from it) unchanged.
    """
    import dataclasses

    def changed(obj) -> dict:
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                sub = changed(value)
                if sub:
                    out[f.name] = sub
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            if value != default:
                out[f.name] = value
        return out

    return json.loads(json.dumps(changed(config)))


def fold_digest(config: Config, clips: Sequence[Clip], fold: Fold, *, extra=None) -> str:
    """Digest of what determines a fold's result: the changed settings, its training and test files.

    Settings left at their defaults are not part of it (see :func:`changed_settings`), so adding a
    config field does not invalidate finished folds. ``extra`` (any JSON value: a grid, the rows of
    a protocol) is digested with them.
    """
    payload = {"config": changed_settings(config), "train": [str(clips[i].path) for i in fold.train],
               "test": [str(clips[i].path) for i in fold.test]}
    if fold.restrict:  # scored among each corpus's labels: other predictions than an unrestricted fold's
        payload["restrict"] = True
    if extra is not None:
        payload["extra"] = extra
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _legacy_fold_digest(config: Config, clips: Sequence[Clip], fold: Fold) -> str:
    # Before fold_digest: the whole config. Folds finished then are still reused by a rerun (as long
    # as the config has the same fields); new folds are saved with fold_digest.
    payload = json.dumps({"config": config.to_dict(), "train": [str(clips[i].path) for i in fold.train],
                          "test": [str(clips[i].path) for i in fold.test]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def load_fold(path: Path | None, digests: Sequence[str]) -> dict | None:
    """The one resume rule: a saved fold result is reused when its ``digest`` is one of ``digests``.

    Anything else (no file, unreadable or damaged JSON, another digest) means: compute the fold again.
    """
    if path is None or not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # unreadable: compute the fold again
    if not isinstance(saved, dict) or saved.get("digest") not in digests:
        return None
    log.info("fold result reused: %s", path)
    return saved


def cross_validate(clips: Sequence[Clip], config: Config, folds: Sequence[Fold], *, x: np.ndarray,
                   augmented: np.ndarray | None = None, out_dir: str | os.PathLike | None = None,
                   grid: dict | None = None, inner_folds: int = 3, cache: FeatureCache | None = None,
                   progress: bool = False, executor: Callable[..., Iterator] | None = None) -> list[dict]:
    """Train on each fold's training side and predict its test clips.

    With ``out_dir``, each finished fold is saved as ``fold_N/result.json`` and
    reused on a rerun with the same config and split (resume). With ``grid``, the
    config of each fold is chosen by :func:`grid_search` on that fold's training
    speakers only. ``executor`` runs the folds (default: one after the other here;
    :func:`ser.batch.ray_executor`: as Ray tasks, the same computation per fold).

    Returns
    -------
    list of dict
        Per fold: ``fold``, ``test_speakers``, ``paths``, ``y_true``, ``probs``,
        ``history``, ``config`` (the one used) and ``train_s``.
    """
    results: list[dict | None] = []
    todo: list[tuple[int, Fold, str]] = []
    for fold in folds:
        grid_part = hashlib.sha256(json.dumps(grid, sort_keys=True).encode()).hexdigest() if grid else ""
        digest = fold_digest(config, clips, fold) + grid_part
        path = _fold_path(out_dir, fold)
        saved = load_fold(path, (digest, _legacy_fold_digest(config, clips, fold) + grid_part))
        results.append(None if saved is None else {**saved, "resumed": True})
        if saved is None:
            todo.append((len(results) - 1, fold, digest))
    execute = executor or local_executor
    done = execute(_fold_task, [(fold, digest) for _, fold, digest in todo], clips=clips, config=config, x=x,
                   augmented=augmented, grid=grid, inner_folds=inner_folds, cache=cache, progress=progress)
    for (slot, fold, _), (result, table) in zip(todo, done):
        path = _fold_path(out_dir, fold)
        if path is not None:  # each fold as soon as it is known: a killed run keeps the finished ones
            if table is not None:
                write_grid_table(table, path.parent)
            atomic_write_text(path, json.dumps(result) + "\n")
        results[slot] = result
    return results  # type: ignore[return-value]


def _fold_path(out_dir, fold: Fold) -> Path | None:
    return Path(out_dir) / f"fold_{fold.number}" / "result.json" if out_dir else None


def _fold_task(item: tuple[Fold, str], *, clips: Sequence[Clip], config: Config, x: np.ndarray,
               augmented: np.ndarray | None, grid: dict | None, inner_folds: int, cache: FeatureCache | None,
               progress: bool) -> tuple[dict, dict | None]:
    """One fold of :func:`cross_validate`: (grid search,) fit, predict its test clips → (result, grid table)."""
    import time

    fold, digest = item
    y = encode([c.label for c in clips], config.classes)
    speakers = speakers_of(clips)
    corpora = corpora_of(clips)
    start = time.perf_counter()
    fold_config, fold_x, fold_aug, table = config, x, augmented, None
    if grid:
        table = grid_search(clips, config, grid, train=fold.train, inner_folds=inner_folds, cache=cache)
        fold_config = Config.from_dict(table["best_config"])
        fold_x, fold_aug = prepare_features(clips, fold_config, cache=cache)
    log.info("fold %d: training on %d clips, testing on %d (speakers %s)", fold.number, fold.train.size,
             fold.test.size, ", ".join(fold.test_speakers) or "mixed")
    model, history = fit(fold_config, fold_x, y, speakers, fold.train, augmented=fold_aug, progress=progress,
                         corpora=corpora)
    probs = predict_proba(model, fold_x[fold.test])
    result = {
        "fold": fold.number, "test_speakers": list(fold.test_speakers),
        **({"allowed": label_masks(y, corpora, fold.test, len(fold_config.classes))[fold.test].tolist(),
            "corpus": fold.corpus} if fold.restrict else {}),
        "paths": [str(clips[i].path) for i in fold.test], "y_true": y[fold.test].tolist(),
        "probs": np.round(probs, 6).tolist(), "history": history, "config": fold_config.to_dict(),
        "train_s": round(time.perf_counter() - start, 1), "digest": digest,
    }
    return result, table


def expand_grid(grid: dict) -> list[dict]:
    """All combinations of a grid ``{"dotted.key": [values…]}`` (validated keys)."""
    if not isinstance(grid, dict) or not grid:
        raise ConfigError("grid: expected a non-empty JSON object of {\"section.field\": [values]}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key}: expected a non-empty list of values")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def grid_search(clips: Sequence[Clip], config: Config, grid: dict, *, train: np.ndarray | None = None,
                inner_folds: int = 3, cache: FeatureCache | None = None, progress: bool = False,
                executor: Callable[..., Iterator] | None = None) -> dict:
    """Choose config overrides by speaker-grouped inner cross-validation.

    Only clips in ``train`` are used (default: all): their speakers are split
    into ``inner_folds`` groups; each candidate is trained on the others and
    scored by UAR on the held-out group. The best mean UAR wins. ``executor`` runs
    the candidates (default: one after the other here; :func:`ser.batch.ray_executor`:
    as Ray tasks).

    Returns
    -------
    dict
        ``{"rows": [{"params", "uar_mean", "uar_std", "uar_folds"}], "best_params", "best_config"}``,
        rows sorted best first.
    """
    from sklearn.model_selection import GroupKFold

    train = np.arange(len(clips)) if train is None else np.asarray(train)
    speakers = speakers_of(clips)
    if len(set(speakers[train])) < inner_folds:
        raise ConfigError(f"inner_folds={inner_folds}: only {len(set(speakers[train]))} training speakers")
    candidates = expand_grid(grid)
    for params in candidates:
        config.override(params)  # an invalid candidate is refused before any training
    splits = list(GroupKFold(n_splits=inner_folds).split(train, groups=speakers[train]))
    execute = executor or local_executor
    rows = list(execute(_candidate_task, candidates, clips=clips, config=config, train=train, splits=splits,
                        cache=cache, progress=progress))
    rows.sort(key=lambda r: -r["uar_mean"])
    best = dict(rows[0]["params"])
    return {"rows": rows, "best_params": best, "best_config": config.override(best).to_dict(),
            "inner_folds": inner_folds}


def _candidate_task(params: dict, *, clips: Sequence[Clip], config: Config, train: np.ndarray, splits: list,
                    cache: FeatureCache | None, progress: bool) -> dict:
    """One candidate of :func:`grid_search`: its features, one fit per inner fold → its row of the table."""
    from sklearn.metrics import balanced_accuracy_score

    cand = config.override(params)
    y = encode([c.label for c in clips], config.classes)
    speakers = speakers_of(clips)
    corpora = corpora_of(clips)
    x, aug = prepare_features(clips, cand, cache=cache, progress=progress)
    scores = []
    for inner_train, inner_val in splits:
        model, _ = fit(cand, x, y, speakers, train[inner_train], augmented=aug, corpora=corpora)
        # A held-out clip is scored among its own corpus's labels, as the loco protocol scores.
        masks = label_masks(y, corpora, train[inner_train], len(cand.classes)) if is_mixed(
            corpora, train[inner_train]) else None
        pred = restricted_argmax(predict_proba(model, x[train[inner_val]]),
                                 None if masks is None else masks[train[inner_val]])
        scores.append(float(balanced_accuracy_score(y[train[inner_val]], pred)))
    row = {"params": params, "uar_mean": float(np.mean(scores)), "uar_std": float(np.std(scores)),
           "uar_folds": scores}
    log.info("grid %s: inner UAR %.3f", params, row["uar_mean"])
    return row


def write_grid_table(table: dict, out_dir: str | os.PathLike) -> None:
    """Save a grid-search table as ``grid.json`` and ``grid.md``."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "grid.json", json.dumps(table, indent=2) + "\n")
    keys = list(table["rows"][0]["params"])
    lines = ["| " + " | ".join(keys) + " | inner UAR (mean ± std) |", "|" + "---|" * (len(keys) + 1)]
    for r in table["rows"]:
        lines.append("| " + " | ".join(str(r["params"][k]) for k in keys)
                     + f" | {r['uar_mean']:.3f} ± {r['uar_std']:.3f} |")
    atomic_write_text(out_dir / "grid.md", f"Grid search, {table['inner_folds']} speaker-grouped inner folds\n\n"
                      + "\n".join(lines) + "\n")


def fit_final(clips: Sequence[Clip], config: Config, *, cache: FeatureCache | None = None,
              jobs: int | None = None, progress: bool = False, adapted: bool = False):
    """Train one model on all ``clips`` (validation speakers, if configured, drawn from them).

    With ``adapted=True``, train the speaker-adapted head instead (see :func:`fit_adapted`).

    Returns
    -------
    model : keras.Model
    history : dict
        See :func:`fit`.
    norm : ser.speakers.SpeakerNorm
        Only with ``adapted=True``.
    """
    x, augmented = prepare_features(clips, config, cache=cache, jobs=jobs, progress=progress)
    y = encode([c.label for c in clips], config.classes)
    out = (fit_adapted if adapted else fit)(config, x, y, speakers_of(clips), np.arange(len(clips)),
                                            augmented=augmented, progress=progress, corpora=corpora_of(clips))
    warn_if_near_chance(out[1], what="speaker-adapted head" if adapted else "model")
    return out


def warn_if_near_chance(history: dict, *, what: str = "model") -> bool:
    """Log one warning line when the validation score in ``history`` is near chance; True if so."""
    v = history.get("validation")
    if not v or not v.get("near_chance"):
        return False
    log.warning("the %s's validation UAR %.3f on %d clips of %d held-out speakers is near chance (%.3f): it has "
                "not learned what carries over to new voices; train on more speakers, or longer", what, v["uar"],
                v["clips"], len(v.get("speakers") or history.get("validation_speakers") or ()), v["chance_uar"])
    return True


def qualified_speaker(clip: Clip) -> str:
    """A speaker name that says its corpus (``ravdess:12``, ``crema-d:1001``); as given when unknown."""
    speaker = clip.speaker or ""
    corpus = (clip.meta or {}).get("corpus")
    if speaker and corpus and ":" not in speaker:
        return f"{corpus}:{speaker}"
    return speaker


#: Hex digits kept of each training file's SHA-256 in :func:`training_data_record` (64 bits).
FILE_DIGEST_CHARS = 16


def training_data_record(clips: Sequence[Clip]) -> dict:
    """What a model folder records of its training data, so that scoring it can tell held-out data.

    Returns
    -------
    dict
        ``speakers``: sorted qualified speaker names (:func:`qualified_speaker`); ``files``: the
        sorted first :data:`FILE_DIGEST_CHARS` hex digits of each file's SHA-256 (content, not path:
        a copy elsewhere is still recognised); ``clips``: how many.
    """
    speakers = sorted({qualified_speaker(c) for c in clips if c.speaker},
                      key=lambda s: (s.rpartition(":")[0], len(s), s))  # ravdess:2 before ravdess:10
    files = sorted({sha256_file(c.path)[:FILE_DIGEST_CHARS] for c in clips})
    return {"clips": len(clips), "speakers": speakers, "file_digest": f"sha256[:{FILE_DIGEST_CHARS}]",
            "files": files}


def train_recognizer(clips: Sequence[Clip], config: Config, *, cache: FeatureCache | None = None,
                     jobs: int | None = None, progress: bool = False, metadata: dict | None = None):
    """Train a complete model on ``clips``: the network and, if configured, the speaker-adapted head.

    The one training entry point of ``ser train`` and ``benchmarks/train_default.py``.

    Parameters
    ----------
    clips : sequence of Clip
        Labelled training clips.
    config : Config
        The recipe; ``speakers.adapted_head`` adds the adapted head.
    cache, jobs, progress
        As for :func:`fit_final`.
    metadata : dict, optional
        Recorded in the model folder (``metrics.json``) and its card, beside what this adds:
        ``training_data`` (:func:`training_data_record`: training speakers and file digests, which
        ``ser evaluate --model`` checks test data against) and ``validation`` (the validation score,
        when the recipe holds out validation speakers; a near-chance score is warned about).

    Returns
    -------
    recognizer : ser.inference.Recognizer
        Ready to predict or :meth:`~ser.inference.Recognizer.save`.
    history : dict
        Training curves of the network.
    """
    from ser.inference import Recognizer

    model, history = fit_final(clips, config, cache=cache, jobs=jobs, progress=progress)
    adapted = norm = None
    if config.speakers.adapted_head:
        adapted, _, norm = fit_final(clips, config, cache=cache, jobs=jobs, adapted=True, progress=progress)
    recorded = {**(metadata or {}), "training_data": training_data_record(clips)}
    if history.get("validation"):
        recorded["validation"] = history["validation"]
    return Recognizer(model, config, metadata=recorded, adapted=adapted, speaker_norm=norm), history
