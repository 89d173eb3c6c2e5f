"""Plots of clips, predictions, timelines and evaluations: one function, one figure.

Every function returns a :class:`matplotlib.figure.Figure` and, given ``path=``, also writes
it as a PNG (atomically). Figures are made with matplotlib's object-oriented API, not pyplot:
they are not kept by pyplot's figure manager (no leak in a loop, no need to close them), work
in scripts and threads without a display, and show exactly once in Jupyter when a cell returns
one (``%matplotlib inline``). matplotlib is imported inside the functions, so ``import ser.plot``
costs nothing, and nothing here imports TensorFlow or the training code.

Each emotion keeps one colour in every plot (``tab10`` in :data:`ser.labels.EMOTIONS` order, as
the ``--timeline`` PNG uses).

>>> from ser import plot
>>> fig = plot.scores(prediction)                          # doctest: +SKIP
>>> plot.confusion(report, path="confusion.png")           # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ser.labels import EMOTIONS
from ser.utils import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DPI", "balance", "clip", "confusion", "curves", "folds", "per_class", "save", "scores", "splits",
           "timeline", "to_png"]

#: Resolution of written and displayed figures: sharp enough on screen, small in a notebook.
DPI = 80
#: How metrics are written on axes.
_METRIC_NAMES = {"uar": "UAR", "accuracy": "accuracy", "macro_f1": "macro-F1", "f1": "F1", "precision": "precision",
                 "recall": "recall"}


# --- helpers ---------------------------------------------------------------------------------
def _require_matplotlib() -> None:
    """Import matplotlib, or raise a one-line MissingExtraError naming the ``plot`` extra."""
    from ser.runtime import require

    require("matplotlib", "plot")


def _figure(width: float, height: float, **kwargs) -> Figure:
    _require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained", **kwargs)


def to_png(fig: Figure, *, dpi: float | None = None) -> bytes:
    """The PNG bytes of a figure (at ``dpi``, default the figure's own)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def save(fig: Figure, path: str | os.PathLike, *, dpi: float | None = None) -> Path:
    """Write a figure as a PNG, atomically (complete or absent); returns the path."""
    return atomic_write_bytes(path, to_png(fig, dpi=dpi))


def _done(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        save(fig, path)
    return fig


def colours(classes: Sequence[str]) -> dict[str, Any]:
    """One colour per emotion: ``tab10`` in :data:`EMOTIONS` order, other labels after them."""
    _require_matplotlib()
    from matplotlib import colormaps

    names = list(EMOTIONS) + [c for c in classes if c not in EMOTIONS]
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _is_report(obj: Any) -> bool:
    return isinstance(obj, Mapping) and any(k in obj for k in ("summary", "per_class", "confusion"))


def _pooled(report: Mapping) -> tuple[Mapping, list[str]]:
    """``(pooled metrics, classes)`` of an evaluation report, a scored report or a benchmark result."""
    if "summary" in report:  # ser.evaluation.evaluate
        return report["summary"]["pooled"], list(report["classes"])
    if "shared_labels" in report:  # ser.evaluation.score_model
        return report, list(report["shared_labels"])
    if "confusion" in report and "classes" in report:  # a benchmarks/results JSON file: metrics under "pooled"
        return {**report, **report.get("pooled", {})}, list(report["classes"])
    raise ValueError("report: expected a report of ser.evaluation.evaluate or score_model (or a benchmark "
                     f"result), got a mapping with keys {sorted(report)[:8]}")


def _folds(report: Mapping) -> list[Mapping]:
    folds = report["summary"]["folds"] if "summary" in report else report.get("folds")
    if not folds:
        raise ValueError("report: has no per-fold results")
    return list(folds)


def _named(reports: Mapping | Sequence, default: str) -> dict[str, Mapping]:
    """``{name: report}`` from one report, a mapping of named reports, or a sequence of reports."""
    if _is_report(reports):
        return {default: reports}
    if isinstance(reports, Mapping):
        return dict(reports)
    return {f"{default} {i + 1}": r for i, r in enumerate(reports)}


# --- predictions -----------------------------------------------------------------------------
def scores(prediction: Any, *, title: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """Horizontal bar chart of every class's probability; the recognised emotion stands out.

    Parameters
    ----------
    prediction : Prediction, Segment or mapping
        Anything with ``.scores`` (a :class:`ser.inference.Prediction`, a
        :class:`ser.timeline.Segment`), or a ``{class: probability}`` mapping.
    title : str, optional
        Default: the file name (if known), the label and its confidence.
    path : path-like, optional
        Also write the figure there as a PNG.
    """
    values = dict(getattr(prediction, "scores", prediction))
    if not values:
        raise ValueError("prediction: has no scores")
    classes = list(values)
    best = max(classes, key=values.__getitem__)
    _require_matplotlib()
    from matplotlib.colors import to_rgba

    palette = colours(classes)
    fig = _figure(5.6, 0.3 * len(classes) + 0.9)
    ax = fig.add_subplot()
    y = np.arange(len(classes))
    ax.barh(y, [values[c] for c in classes],
            color=[to_rgba(palette[c], 1.0 if c == best else 0.45) for c in classes])
    for i, c in enumerate(classes):
        ax.text(min(values[c], 1.0) + 0.01, i, f"{values[c]:.2f}", va="center", fontsize=8,
                fontweight="bold" if c == best else "normal")
    ax.set_yticks(y, classes)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("probability")
    ax.spines[["top", "right"]].set_visible(False)
    if title is None:
        source = getattr(prediction, "source", None)
        title = (f"{Path(source).name}: " if source else "") + f"{best} ({values[best]:.2f})"
    ax.set_title(title, fontsize=10)
    return _done(fig, path)


#: Row lengths for long timelines: the shortest that needs at most `_MAX_ROWS` rows is used.
_ROW_SECONDS = (120, 300, 600, 900, 1800, 3600, 7200, 14400)
_MAX_ROWS = 12


def _clock(t: float) -> str:
    t = round(t)
    h, rest = divmod(t, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def timeline(segments: Sequence, *, duration: float | None = None, classes: Sequence[str] | None = None,
             title: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """An emotion timeline: one coloured bar per speech segment, height = confidence.

    Recordings over two minutes wrap over several rows (at most 12), as the
    ``ser predict --timeline`` PNG does.

    Parameters
    ----------
    segments : sequence of Segment
        As :func:`ser.timeline.timeline` returns them (a :class:`ser.timeline.Timeline`
        also brings its recording's duration, source and classes).
    duration : float, optional
        Length of the recording in seconds (default: the timeline's, else the last segment's end).
    classes : sequence of str, optional
        Emotions in legend order (default: the timeline's, else :data:`EMOTIONS`).
    title : str, optional
        Default: the recording's file name.
    path : path-like, optional
        Also write the figure there as a PNG.
    """
    _require_matplotlib()
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    segments = list(segments) if not hasattr(segments, "duration") else segments
    duration = duration if duration is not None else getattr(segments, "duration", None)
    classes = list(classes or getattr(segments, "classes", None) or EMOTIONS)
    duration = max(float(duration or 0.0), max((s.end for s in segments), default=0.0), 1e-3)
    names = classes + sorted({s.label for s in segments} - set(classes))
    palette = colours(names)
    row = duration if duration <= _ROW_SECONDS[0] else next(
        (r for r in _ROW_SECONDS if duration / r <= _MAX_ROWS), math.ceil(duration / _MAX_ROWS))
    rows = max(1, math.ceil(duration / row - 1e-9))
    fig = _figure(10, 1.2 + (1.0 * rows if rows > 1 else 1.4))
    axes = fig.subplots(rows, 1, squeeze=False, sharey=True)[:, 0]
    clock = FuncFormatter(lambda t, _: _clock(t))
    for r, ax in enumerate(axes):
        lo, hi = r * row, (r + 1) * row
        for s in segments:
            if s.end <= lo or s.start >= hi:
                continue
            a, b = max(s.start, lo), min(s.end, hi)
            ax.bar(a, s.confidence, width=b - a, align="edge", color=palette[s.label], edgecolor="white",
                   linewidth=0.3)
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 0.5, 1])
        ax.xaxis.set_major_formatter(clock)
        ax.grid(axis="x", color="0.85", linewidth=0.6)
        ax.set_axisbelow(True)
        if hi > duration:
            ax.axvspan(duration, hi, color="0.93", linewidth=0)
    axes[rows // 2].set_ylabel("confidence")
    axes[-1].set_xlabel("time (h:mm:ss)" if duration >= 3600 else "time (m:ss)")
    fig.legend(handles=[Patch(color=palette[n], label=n) for n in names], loc="outside right upper",
               frameon=False, title="emotion", fontsize=8)
    if title is None:
        source = getattr(segments, "source", None)
        title = Path(source).name if source else "emotion timeline"
    fig.suptitle(f"{title} — {len(segments)} speech segments, {_clock(duration)}", fontsize=10)
    return _done(fig, path)


# --- data --------------------------------------------------------------------------------------
def _speaker_order(speakers) -> list[str]:
    return sorted(set(speakers), key=lambda s: (len(s), s))


def balance(clips: Sequence, *, by: str | None = None, title: str | None = None,
            path: str | os.PathLike | None = None) -> Figure:
    """Clips per emotion (stacked by a metadata column, e.g. ``by="intensity"``) and per speaker.

    Parameters
    ----------
    clips : sequence of Clip
        As :func:`ser.dataset.load_dataset` or :func:`ser.dataset.index_corpus` return them.
    by : str, optional
        A ``Clip.meta`` key to split each emotion's bar by (``"gender"``, ``"intensity"``...).
    """
    from collections import Counter

    if not clips:
        raise ValueError("clips: expected at least one clip")
    labels = [c.label for c in clips]
    classes = [e for e in EMOTIONS if e in labels] + sorted(set(labels) - set(EMOTIONS))
    fig = _figure(10, 3.2)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.4])
    x = np.arange(len(classes))
    if by is None:
        counts = Counter(labels)
        palette = colours(classes)
        left.bar(x, [counts[c] for c in classes], color=[palette[c] for c in classes])
    else:
        groups = sorted({str(c.meta.get(by, "?")) for c in clips})
        bottom = np.zeros(len(classes))
        for g in groups:
            counts = Counter(c.label for c in clips if str(c.meta.get(by, "?")) == g)
            height = np.array([counts[c] for c in classes], dtype=float)
            left.bar(x, height, bottom=bottom, label=g)
            bottom += height
        left.legend(title=by, fontsize=8, frameon=False)
    left.set_xticks(x, classes, rotation=40, ha="right")
    left.set_ylabel("clips")
    left.set_title("clips per emotion", fontsize=10)
    speakers = [c.speaker or "?" for c in clips]
    order = _speaker_order(speakers)
    per = Counter(speakers)
    right.bar(np.arange(len(order)), [per[s] for s in order], color="0.55")
    step = max(1, math.ceil(len(order) / 30))
    right.set_xticks(np.arange(len(order))[::step], order[::step], rotation=90 if len(order) > 12 else 0,
                     fontsize=8)
    right.set_xlabel("speaker")
    right.set_title(f"clips per speaker ({len(order)} speakers)", fontsize=10)
    left.spines[["top", "right"]].set_visible(False)
    right.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    return _done(fig, path)


def clip(y: np.ndarray | Mapping[str, np.ndarray], sr: int, *, n_mfcc: int = 40, n_mels: int = 64,
         n_fft: int = 1024, hop_length: int = 256, title: str | None = None,
         path: str | os.PathLike | None = None) -> Figure:
    """Waveform, log-mel spectrogram and MFCC of a clip (or of several, side by side).

    Parameters
    ----------
    y : numpy.ndarray or mapping
        A mono signal, shape ``(n_samples,)``, or ``{name: signal}`` for one column each
        (e.g. ``{"original": y, "augmented": y_aug}``).
    sr : int
        Sample rate of the signals.
    n_mfcc, n_mels, n_fft, hop_length : int
        Feature settings, as in :func:`ser.features.mfcc` and :func:`ser.features.logmel`.
    """
    from ser.features import logmel, mfcc

    signals = dict(y) if isinstance(y, Mapping) else {"": y}
    if not signals:
        raise ValueError("y: expected a signal or a mapping of signals")
    fig = _figure(4.2 * len(signals) + 0.8, 5.4)
    axes = fig.subplots(3, len(signals), squeeze=False, sharex="col")
    image = None
    for j, (name, sig) in enumerate(signals.items()):
        sig = np.asarray(sig, dtype=np.float32)
        if sig.ndim != 1 or sig.size == 0:
            raise ValueError(f"y[{name!r}]: expected a non-empty mono signal, got shape {sig.shape}")
        seconds = sig.size / sr
        # The waveform as its envelope (min and max per ~5 ms): what a plot of every sample
        # shows, at a fraction of the PNG's size.
        step = max(1, sr // 200)
        frames = sig[: sig.size // step * step].reshape(-1, step)
        t = np.arange(frames.shape[0]) * step / sr
        axes[0, j].fill_between(t, frames.min(axis=1), frames.max(axis=1), color="0.25", lw=0)
        axes[0, j].set_xlim(0, seconds)
        axes[0, j].set_title(name or "waveform", fontsize=10)
        mel = logmel(sig, sr=sr, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length)
        image = axes[1, j].imshow(mel, origin="lower", aspect="auto", extent=(0, seconds, 0, n_mels),
                                  cmap="magma", vmin=-80, vmax=0, interpolation="nearest")
        m = mfcc(sig, sr=sr, n_mfcc=n_mfcc, n_mels=max(n_mels, n_mfcc), n_fft=n_fft, hop_length=hop_length)
        # Each coefficient standardised over the clip: the first (overall level) would otherwise
        # take the whole colour range.
        m = (m - m.mean(axis=1, keepdims=True)) / (m.std(axis=1, keepdims=True) + 1e-8)
        axes[2, j].imshow(m, origin="lower", aspect="auto", extent=(0, seconds, 0, n_mfcc), cmap="coolwarm",
                          vmin=-3, vmax=3, interpolation="nearest")
        axes[2, j].set_xlabel("time (s)")
    axes[0, 0].set_ylabel("amplitude")
    axes[1, 0].set_ylabel(f"log-mel band\n({n_mels}, dB)")
    axes[2, 0].set_ylabel("MFCC\n(per coefficient)")
    if image is not None:
        fig.colorbar(image, ax=axes[1, :].tolist(), label="dB", fraction=0.04)
    if title:
        fig.suptitle(title, fontsize=11)
    return _done(fig, path)


def splits(clips: Sequence, folds: Sequence, *, title: str | None = None,
           path: str | os.PathLike | None = None) -> Figure:
    """Which speakers each fold tests on: the share of every speaker's clips in the test set.

    A speaker-independent split (``si6``) shows whole columns of 0 or 1 per fold; a random
    split (``seed-split``) shows every speaker on both sides, which is why it flatters.

    Parameters
    ----------
    clips : sequence of Clip
    folds : sequence of Fold
        As :func:`ser.training.make_folds` returns them (``.number``, ``.test`` indices into ``clips``).
    """
    if not folds:
        raise ValueError("folds: expected at least one fold")
    speakers = np.array([c.speaker or "?" for c in clips])
    order = _speaker_order(speakers.tolist())
    totals = np.array([np.sum(speakers == s) for s in order], dtype=float)
    share = np.zeros((len(folds), len(order)))
    for i, fold in enumerate(folds):
        tested = speakers[np.asarray(fold.test)]
        share[i] = [np.sum(tested == s) for s in order] / totals
    fig = _figure(max(5.0, 0.28 * len(order) + 1.8), 0.42 * len(folds) + 1.4)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Greens", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(np.arange(len(order)), order, fontsize=8)
    ax.set_yticks(np.arange(len(folds)), [f"fold {f.number}" for f in folds])
    ax.set_xlabel("speaker")
    fig.colorbar(image, ax=ax, label="share of the speaker's clips\nin the test set", fraction=0.04)
    ax.set_title(title or "test speakers per fold", fontsize=10)
    return _done(fig, path)


# --- training and evaluation -----------------------------------------------------------------
def curves(history: Mapping, *, title: str = "", path: str | os.PathLike | None = None) -> Figure:
    """Training curves: loss and accuracy per epoch, on the fitting clips and the validation speakers.

    Parameters
    ----------
    history : mapping
        As training returns it (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
        ``best_epoch``), or a fold result (``fold_N/result.json``) holding one as ``history``.
    """
    _require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    history = history.get("history", history) if isinstance(history, Mapping) else history
    if not history.get("loss"):
        raise ValueError("history: has no 'loss' curve")
    fig = _figure(9, 3.0)
    for ax, key in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        values = history.get(key, [])
        epochs = np.arange(1, len(values) + 1)
        ax.plot(epochs, values, label="training clips")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label="validation speakers")
        if history.get("best_epoch"):
            ax.axvline(history["best_epoch"], color="grey", ls="--", lw=1, label="best epoch (kept)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return _done(fig, path)


def confusion(report: Mapping | Sequence[Sequence[int]], classes: Sequence[str] | None = None, *,
              title: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """Confusion matrix (rows = true, columns = predicted): colour = share of the true class, counts written.

    Parameters
    ----------
    report : mapping or 2-D array
        A report of :func:`ser.evaluation.evaluate` (its pooled matrix) or
        :func:`ser.evaluation.score_model`, a benchmark result, or a matrix of counts.
    classes : sequence of str, optional
        Class names, needed for a bare matrix.
    """
    if isinstance(report, Mapping):
        pooled, classes = _pooled(report)
        matrix = pooled["confusion"]
        if title is None:
            title = f"UAR {pooled['uar']:.3f}, macro-F1 {pooled['macro_f1']:.3f} ({int(np.sum(matrix))} clips)"
    else:
        matrix = report
    cm = np.asarray(matrix, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix: expected a square matrix, got shape {cm.shape}")
    classes = list(classes) if classes is not None else [str(i) for i in range(cm.shape[0])]
    if len(classes) != cm.shape[0]:
        raise ValueError(f"classes: {len(classes)} names for a {cm.shape[0]}x{cm.shape[0]} matrix")
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = _figure(5.6, 4.8)
    ax = fig.add_subplot()
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_title(title or "", fontsize=10)
    return _done(fig, path)


def per_class(reports: Mapping | Sequence[Mapping], *, metric: str = "f1", title: str | None = None,
              path: str | os.PathLike | None = None) -> Figure:
    """Per-class precision, recall or F1 (pooled), as bars; several reports side by side.

    Parameters
    ----------
    reports : mapping
        One report (see :func:`confusion`), or ``{name: report}`` to compare several.
    metric : {"f1", "precision", "recall"}
    """
    if metric not in ("f1", "precision", "recall"):
        raise ValueError(f"metric={metric!r}: expected 'f1', 'precision' or 'recall'")
    named = _named(reports, "model")
    pooled = {name: _pooled(r) for name, r in named.items()}
    classes: list[str] = []
    for _, cls in pooled.values():
        classes += [c for c in cls if c not in classes]
    fig = _figure(max(6.0, 0.8 * len(classes) + 1.5), 3.2)
    ax = fig.add_subplot()
    width = 0.8 / len(named)
    x = np.arange(len(classes))
    for k, (name, (metrics, cls)) in enumerate(pooled.items()):
        values = [metrics["per_class"][c][metric] if c in cls else np.nan for c in classes]
        ax.bar(x + (k - (len(named) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, classes, rotation=30, ha="right")
    _metric_bars_style(fig, ax, metric, len(named), legend=len(named) > 1)
    ax.set_title(title or f"{_METRIC_NAMES[metric]} per class (pooled)", fontsize=10)
    return _done(fig, path)


def _metric_bars_style(fig: Figure, ax, metric: str, n_series: int, *, legend: bool) -> None:
    """The look :func:`per_class` and :func:`folds` share: a 0-1 metric axis, light grid, legend below."""
    ax.set_ylim(0, 1)
    ax.set_ylabel(_METRIC_NAMES[metric])
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    if legend:
        fig.legend(fontsize=8, frameon=False, ncols=min(n_series, 3), loc="outside lower center")


def folds(reports: Mapping | Sequence[Mapping], *, metric: str = "uar", title: str | None = None,
          path: str | os.PathLike | None = None) -> Figure:
    """A metric per fold for one or several cross-validation runs, pooled value as a dashed line.

    Parameters
    ----------
    reports : mapping
        A report of :func:`ser.evaluation.evaluate` or a benchmark result (both have
        per-fold results), or ``{name: report}`` to compare runs on the same folds.
    metric : {"uar", "accuracy", "macro_f1"}
    """
    if metric not in ("uar", "accuracy", "macro_f1"):
        raise ValueError(f"metric={metric!r}: expected 'uar', 'accuracy' or 'macro_f1'")
    named = _named(reports, "run")
    numbers = sorted({int(f["fold"]) for r in named.values() for f in _folds(r)})
    fig = _figure(max(5.0, 0.9 * len(numbers) + 2.5), 3.0)
    ax = fig.add_subplot()
    width = 0.8 / len(named)
    x = np.arange(len(numbers))
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for k, (name, report) in enumerate(named.items()):
        by_fold = {int(f["fold"]): f[metric] for f in _folds(report)}
        pooled, _ = _pooled(report)
        colour = cmap(k % cmap.N)
        ax.bar(x + (k - (len(named) - 1) / 2) * width, [by_fold.get(n, np.nan) for n in numbers], width,
               color=colour, label=f"{name} (pooled {pooled[metric]:.3f})")
        ax.axhline(pooled[metric], color=colour, ls="--", lw=1)
    ax.set_xticks(x, [f"fold {n}" for n in numbers])
    _metric_bars_style(fig, ax, metric, len(named), legend=True)  # the legend carries the pooled values
    ax.set_title(title or f"{_METRIC_NAMES[metric]} per fold (dashed: pooled)", fontsize=10)
    return _done(fig, path)
