"""Evaluation protocols by name, and the speaker-adaptation protocols over their folds.

Names (see ``docs/design.md``):

- ``si6``, ``seed-split``, ``group-kfold``: cross-validation of one head (:func:`ser.evaluation.evaluate`).
- ``loco``: leave one corpus out — train on the other corpora, score the left-out corpus over the
  labels it has (argmax among them); ``si6+corpora``: the si6 folds with every other corpus given
  added to each training side (RAVDESS test actors never seen). Both train on mixed label sets
  (:func:`ser.training.fit`: masked loss, corpus and speaker balance).
- Speaker adaptation, reported beside the plain protocol and never instead of it. Over the ``si6``
  folds (RAVDESS, all 24 actors) or, for any corpus with speakers, over ``group-kfold`` folds
  (prefix ``group-kfold-``). Both heads — the inductive one and the speaker-adapted one (every
  training speaker standardised by their own statistics) — are trained on each fold's training
  speakers only; each test speaker is then scored with statistics of their own unlabelled clips:

  - ``si6-prior``: no statistics (the training speakers' prior), all clips;
  - ``si6-enrol``: statistics of the speaker's neutral + calm clips (an enrolment), scored on the rest;
  - ``si6-adapt-K``: statistics of K random clips of the speaker, scored on the rest (5 draws);
  - ``si6-adapt-all``: statistics of all of the speaker's clips, scored on all of them;
  - ``si6-onesided``: statistics of the speaker's clips of one emotion only (each emotion with 2+
    clips in turn, one draw each), scored on all of the speaker's clips — the case where
    standardising erases the emotion, which ``--adapt`` must survive;
  - ``channel-shift``: each test speaker's audio through one random channel (EQ, band limit, codec,
    noise; the same channel for all their clips), scored by the inductive head (clean and shifted)
    and by the adapted head with statistics of the shifted clips.

  Every adapted figure comes with its ``baseline``: the inductive head on exactly the same clips.
  No test label is used, except to pick the enrolment clips (the protocol's definition).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.config import Config
from ser.dataset import Clip
from ser.errors import ConfigError, ManifestError
from ser.training import FEATURE_LOGGERS, Fold, corpora_of, enrol_mask, fold_digest, load_fold, speakers_of

log = logging.getLogger(__name__)

#: Fold schemes: the plain protocols, and the bases an adaptation protocol is run over.
PLAIN = ("si6", "seed-split", "group-kfold", "loco", "si6+corpora")
BASES = ("si6", "group-kfold", "loco", "si6+corpora")
#: Random draws of the K clips of ``*-adapt-K``, per test speaker.
DRAWS = 5
#: Adaptation kinds besides ``adapt-K``.
KINDS = ("prior", "enrol", "adapt-all", "channel-shift", "onesided")

PROTOCOL_HELP = ("si6 (RAVDESS, all 24 actors), seed-split, group-kfold, loco (leave one corpus out), si6+corpora "
                 "(si6 with other corpora on every training side); speaker adaptation: si6-enrol, si6-adapt-K "
                 "(e.g. si6-adapt-20), si6-adapt-all, si6-prior, si6-onesided, channel-shift, or the same over "
                 "the other bases: loco-adapt-all, si6+corpora-adapt-20, group-kfold-enrol, ...")


@dataclass(frozen=True)
class Protocol:
    """A parsed protocol name: its fold scheme (``base``), and what is scored over the folds."""

    name: str
    base: str
    kind: str = "plain"  # plain, prior, enrol, adapt (with k), adapt-all, channel-shift
    k: int | None = None

    @property
    def adaptive(self) -> bool:
        """Whether test speakers' own statistics are used (a transductive figure)."""
        return self.kind != "plain"


def parse_protocol(name: str) -> Protocol:
    """``"si6-adapt-20"`` → ``Protocol(base="si6", kind="adapt", k=20)``; see the module docstring.

    Raises
    ------
    ConfigError
        An unknown name, naming the ones there are.
    """
    if name in PLAIN:
        return Protocol(name, name)
    if name == "channel-shift":
        return Protocol(name, "si6", "channel-shift")
    for base in BASES:
        rest = name[len(base) + 1:] if name.startswith(base + "-") else None
        if rest in KINDS:
            return Protocol(name, base, rest)
        if rest and rest.startswith("adapt-"):
            k = rest[len("adapt-"):]
            if k.isdigit() and str(int(k)) == k and int(k) >= 2:
                return Protocol(name, base, "adapt", int(k))
    raise ConfigError(f"protocol={name!r}: expected {PROTOCOL_HELP} (K: 2 or more clips)")


def _speaker_seed(speaker: str) -> int:
    # RAVDESS actors keep their number (the committed adaptation figures were drawn with it).
    return int(speaker) if speaker.isdigit() else int(hashlib.sha256(speaker.encode()).hexdigest()[:8], 16)


def channel_condition(speaker: str) -> str:
    """The recording condition (:func:`ser.augment.apply_condition`) of ``speaker`` in ``channel-shift``."""
    return f"channel{_speaker_seed(speaker)}"


def adaptation_rows(protocols: Sequence[Protocol]) -> list[str]:
    """Every row the fold runs compute for ``protocols``: each one, its baseline, channel-shift's clean row."""
    rows = []
    for p in protocols:
        rows.append(p.name)
        if p.adaptive:
            rows.append(f"{p.name}:baseline")
        if p.kind == "channel-shift":
            rows.append(f"{p.name}:clean")
    return rows


def fold_predictions(config: Config, x: np.ndarray, y: np.ndarray, speakers: np.ndarray, fold: Fold,
                     protocols: Sequence[Protocol], *, augmented: np.ndarray | None = None,
                     x_channel: np.ndarray | None = None, draws: int = DRAWS,
                     corpora: np.ndarray | None = None) -> tuple[dict, dict]:
    """Train both heads on the fold's training side; predictions of each protocol on its test speakers.

    Parameters
    ----------
    x, augmented : numpy.ndarray
        Clean features of all clips ``(n, layers, dims)`` and their augmented copies.
    y, speakers : numpy.ndarray
        Class index and speaker of every clip.
    x_channel : numpy.ndarray, optional
        Features of every clip through its speaker's channel (``channel-shift`` only).
    corpora : numpy.ndarray, optional
        Corpus of every clip: mixed training (:func:`ser.training.fit`) and, for folds with
        ``restrict``, predictions among each test clip's corpus's labels.

    Returns
    -------
    rows : dict
        ``{row: [[test positions, predicted classes], ...]}``, one pair per draw; positions index
        ``fold.test``. Rows are those of :func:`adaptation_rows`.
    histories : dict
        Training histories of the ``inductive`` and ``adapted`` heads.
    """
    from ser.speakers import SpeakerStats
    from ser.training import fit, fit_adapted, predict_proba

    from ser.training import label_masks, restricted_argmax

    inductive, ind_history = fit(config, x, y, speakers, fold.train, augmented=augmented, corpora=corpora)
    adapted, ada_history, norm = fit_adapted(config, x, y, speakers, fold.train, augmented=augmented,
                                             corpora=corpora)
    position = {int(i): p for p, i in enumerate(fold.test)}
    enrol = enrol_mask(y, config.classes)
    rows: dict[str, list] = {}
    # loco: each test clip is predicted among the labels its corpus has.
    allowed = label_masks(y, corpora, fold.test, len(config.classes)) if fold.restrict else None

    def ind(feats, idx):
        return restricted_argmax(predict_proba(inductive, feats[idx]), None if allowed is None else allowed[idx])

    def ada(feats, idx, stats_idx, kind="adapt", correct=config.speakers.correct_mix):
        stats = SpeakerStats.of(feats[stats_idx]) if stats_idx is not None else None
        if stats is not None and kind == "adapt" and correct:
            # The emotion mix of the statistics' clips, estimated without labels by the inductive head.
            stats = norm.correct(stats, predict_proba(inductive, feats[stats_idx]).mean(axis=0))
        probs = predict_proba(adapted, norm.normalize(feats[idx], stats, kind))
        return restricted_argmax(probs, None if allowed is None else allowed[idx])

    def uncorrected(name, draw, idx, stats_idx):
        # The same adapted head with raw statistics: what the mix correction changes, on the same heads.
        if config.speakers.correct_mix:
            add(f"{name}:uncorrected", draw, idx, ada(x, idx, stats_idx, correct=False))

    def add(name, draw, idx, pred):
        entry = rows.setdefault(name, [])
        while len(entry) <= draw:
            entry.append([[], []])
        entry[draw][0] += [position[int(i)] for i in idx]
        entry[draw][1] += [int(v) for v in pred]

    for speaker in fold.test_speakers:
        own = np.flatnonzero(speakers == speaker)
        if own.size == 0:
            continue  # partial si6 folds: an actor of the fold missing from the data
        for p in protocols:
            if p.kind == "plain":
                add(p.name, 0, own, ind(x, own))
            elif p.kind == "prior":
                add(p.name, 0, own, ada(x, own, None))
                add(f"{p.name}:baseline", 0, own, ind(x, own))
            elif p.kind == "adapt-all":
                add(p.name, 0, own, ada(x, own, own))
                add(f"{p.name}:baseline", 0, own, ind(x, own))
                uncorrected(p.name, 0, own, own)
            elif p.kind == "enrol":
                calm, rest = own[enrol[own]], own[~enrol[own]]
                if calm.size < 2 or rest.size == 0:
                    log.info("%s: speaker %s has %d neutral/calm clips and %d others; left out", p.name, speaker,
                             calm.size, rest.size)
                    continue
                add(p.name, 0, rest, ada(x, rest, calm, "enrol"))
                add(f"{p.name}:baseline", 0, rest, ind(x, rest))
            elif p.kind == "adapt":
                if own.size <= p.k:
                    log.info("%s: speaker %s has only %d clips; left out", p.name, speaker, own.size)
                    continue
                for draw in range(draws):
                    rng = np.random.default_rng([draw, p.k, _speaker_seed(speaker)])
                    chosen = np.sort(rng.choice(own, size=p.k, replace=False))
                    left = np.setdiff1d(own, chosen)
                    add(p.name, draw, left, ada(x, left, chosen))
                    add(f"{p.name}:baseline", draw, left, ind(x, left))
                    uncorrected(p.name, draw, left, chosen)
            elif p.kind == "onesided":
                # One draw per emotion (in class order), the same emotion for every speaker of the draw.
                for draw in range(len(config.classes)):
                    one = own[y[own] == draw]
                    if one.size >= 2:
                        add(p.name, draw, own, ada(x, own, one))
                        add(f"{p.name}:baseline", draw, own, ind(x, own))
                        uncorrected(p.name, draw, own, one)
            elif p.kind == "channel-shift":
                add(f"{p.name}:clean", 0, own, ind(x, own))
                add(f"{p.name}:baseline", 0, own, ind(x_channel, own))
                add(p.name, 0, own, ada(x_channel, own, own))
    return rows, {"inductive": ind_history, "adapted": ada_history}


def _summary(draws: list[list], y: np.ndarray, classes: Sequence[str]) -> dict:
    """Metrics of one row pooled over folds: the mean over draws; confusion and per class summed over them."""
    from ser.evaluation import metrics

    draws = [d for d in draws if d[0]]  # onesided: an emotion no test speaker has twice is no draw
    per_draw = [metrics(y[np.asarray(idx, dtype=int)], np.asarray(pred, dtype=int), classes) for idx, pred in draws]
    all_idx = np.concatenate([np.asarray(idx, dtype=int) for idx, _ in draws])
    all_pred = np.concatenate([np.asarray(pred, dtype=int) for _, pred in draws])
    out = metrics(y[all_idx], all_pred, classes)  # per class and confusion: every draw's predictions
    out.update({k: float(np.mean([m[k] for m in per_draw])) for k in ("accuracy", "uar", "macro_f1")})
    out["n"] = per_draw[0]["n"]
    if len(per_draw) > 1:
        out["uar_std_over_draws"] = float(np.std([m["uar"] for m in per_draw]))
        out["draws"] = [{k: m[k] for k in ("n", "accuracy", "uar", "macro_f1")} for m in per_draw]
    return out


def _prepare(clips: Sequence[Clip], config: Config, protocols: Sequence[Protocol], folds: Sequence[Fold], *,
             cache, jobs, progress) -> tuple:
    from ser.frontend import compute_features
    from ser.quiet import warnings_once
    from ser.training import prepare_features

    x, augmented = prepare_features(clips, config, cache=cache, jobs=jobs, progress=progress)
    x_channel = None
    if any(p.kind == "channel-shift" for p in protocols):
        # One channel per speaker (seeded by the speaker), the same for all of their clips.
        speakers = speakers_of(clips)
        x_channel = np.empty_like(x)
        tested = sorted({s for f in folds for s in f.test_speakers} & set(speakers.tolist()))
        with warnings_once(*FEATURE_LOGGERS):
            for speaker in tested:
                own = np.flatnonzero(speakers == speaker)
                x_channel[own] = compute_features([clips[i].path for i in own], config, cache=cache, jobs=jobs,
                                                  condition=channel_condition(speaker))[0]
    return x, augmented, x_channel


def run_adaptation(clips: Sequence[Clip], config: Config, protocols: Sequence[str | Protocol],
                   folds: Sequence[Fold], *, out_dir: str | Path | None = None, cache=None, jobs: int | None = None,
                   progress: bool = False, draws: int = DRAWS) -> dict:
    """Run speaker-adaptation protocols (and plain rows of the same heads) over ``folds``.

    Both heads are trained once per fold for all ``protocols`` together. With ``out_dir``, each
    finished fold is saved as ``fold_N/result.json`` and reused by a rerun with the same changed
    settings, split and draws that asks for no row it lacks (:func:`ser.training.load_fold`).

    Parameters
    ----------
    protocols : sequence of str or Protocol
        Names of :func:`parse_protocol` whose base matches ``folds`` (plain names give the
        inductive head's row, e.g. ``"si6"`` beside ``"si6-adapt-20"``).
    folds : sequence of Fold
        The base's folds (:func:`ser.training.make_folds`).

    Returns
    -------
    dict
        ``{"protocols": {name: result}, "folds": [...], "config": ...}``; each result has
        ``pooled`` (:func:`ser.evaluation.metrics` pooled over folds; UAR, accuracy and macro-F1
        averaged over draws, with ``uar_std_over_draws`` and ``draws``), ``baseline`` (the same
        for the inductive head on the same clips), ``folds`` (per fold, draws averaged) and, for
        channel shift, ``clean`` (the inductive head on the clean clips).

    Raises
    ------
    ConfigError
        A config without encoder features (speaker adaptation needs them).
    """
    import json

    from ser.labels import encode
    from ser.utils import atomic_write_text

    specs = [p if isinstance(p, Protocol) else parse_protocol(p) for p in protocols]
    if config.features.kind != "whisper":
        raise ConfigError(f"protocol={specs[0].name}: speaker adaptation needs encoder features (e.g. --config "
                          f"robust or accurate); the config has features.kind={config.features.kind!r}")
    config = config.override({"speakers.adapted_head": True}) if not config.speakers.adapted_head else config
    rows = adaptation_rows(specs)
    y = encode([c.label for c in clips], config.classes)
    speakers = speakers_of(clips)
    corpora = corpora_of(clips)
    x = augmented = x_channel = None
    pooled_rows: dict[str, list] = {}
    per_fold = []
    for fold in folds:
        digest = fold_digest(config, clips, fold, extra={"adaptation": 1, "draws": draws})
        path = Path(out_dir) / f"fold_{fold.number}" / "result.json" if out_dir is not None else None
        saved = load_fold(path, (digest,))
        if saved is not None and not set(rows) <= set(saved.get("rows", {})):
            saved = None  # finished for other protocols: these rows need the heads again
        if saved is None:
            if x is None:
                x, augmented, x_channel = _prepare(clips, config, specs, folds, cache=cache, jobs=jobs,
                                                   progress=progress)
            start = time.perf_counter()
            log.info("fold %d: training both heads on %d clips, testing on %d (speakers %s)", fold.number,
                     fold.train.size, fold.test.size, ", ".join(fold.test_speakers))
            fold_rows, histories = fold_predictions(config, x, y, speakers, fold, specs, augmented=augmented,
                                                    x_channel=x_channel, draws=draws, corpora=corpora)
            saved = {"fold": fold.number, "test_speakers": list(fold.test_speakers),
                     "paths": [str(clips[i].path) for i in fold.test], "rows": fold_rows,
                     "epochs_run": len(histories["inductive"].get("loss", [])), "histories": histories,
                     "train_s": round(time.perf_counter() - start, 1), "digest": digest}
            if path is not None:
                atomic_write_text(path, json.dumps(saved) + "\n")
        else:
            saved["resumed"] = True
        per_fold.append(saved)
        for row in rows + [f"{p.name}:uncorrected" for p in specs]:
            entry = pooled_rows.setdefault(row, [])
            for d, (pos, pred) in enumerate(saved["rows"].get(row, [])):
                while len(entry) <= d:
                    entry.append([[], []])
                entry[d][0] += fold.test[np.asarray(pos, dtype=int)].tolist()
                entry[d][1] += list(pred)
    results = {}
    for p in specs:
        if not pooled_rows.get(p.name) or not pooled_rows[p.name][0][0]:
            raise ManifestError(f"protocol={p.name}: no test speaker has the clips it needs (enrolment: 2+ neutral "
                                f"or calm clips and others; adapt-K: more than K clips)")
        result = {"protocol": p.name, "base": p.base, "pooled": _summary(pooled_rows[p.name], y, config.classes)}
        if p.adaptive:
            result["baseline"] = {"what": "inductive head on the same clips",
                                  **_summary(pooled_rows[f"{p.name}:baseline"], y, config.classes)}
        if p.kind == "channel-shift":
            result["clean"] = {"what": "inductive head on the same speakers' clean clips",
                               **_summary(pooled_rows[f"{p.name}:clean"], y, config.classes)}
        if any(d[0] for d in pooled_rows.get(f"{p.name}:uncorrected", [])):
            result["uncorrected"] = {"what": "adapted head, statistics not corrected for their emotion mix",
                                     **_summary(pooled_rows[f"{p.name}:uncorrected"], y, config.classes)}
        result["folds"] = [_fold_summary(f, p.name, fold, y, config.classes) for f, fold in zip(per_fold, folds)
                           if any(d[0] for d in f["rows"].get(p.name, []))]
        results[p.name] = result
    return {"protocols": results, "config": config.to_dict(), "folds": per_fold}


def _fold_summary(saved: dict, row: str, fold: Fold, y: np.ndarray, classes: Sequence[str]) -> dict:
    from ser.evaluation import metrics

    draws = [d for d in saved["rows"][row] if d[0]]
    out = {"fold": saved["fold"], "test_speakers": saved["test_speakers"], "train_s": saved.get("train_s"),
           "resumed": bool(saved.get("resumed")), "epochs_run": saved.get("epochs_run"), "best_epoch": None}
    per_draw = [metrics(y[fold.test[np.asarray(pos, dtype=int)]], np.asarray(pred, dtype=int), classes)
                for pos, pred in draws]
    out.update({k: float(np.mean([m[k] for m in per_draw])) for k in ("accuracy", "uar", "macro_f1")})
    out["n"] = per_draw[0]["n"]
    if len(per_draw) > 1:
        out["uar_draws"] = [m["uar"] for m in per_draw]
    return out
