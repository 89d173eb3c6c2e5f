"""Rich display in Jupyter: predictions, lists of predictions and evaluation reports as HTML tables.

The result classes show themselves through these functions (``_repr_html_``): a
:class:`ser.inference.Prediction` as its scores with bars, :class:`Predictions` (what
``Recognizer.predict_files`` returns) as one row per file, a :class:`Report` (what
:func:`ser.evaluation.evaluate` and :func:`ser.evaluation.score_model` return) as its tables and a
shaded confusion matrix. A :class:`ser.timeline.Timeline` shows as its plot (``_repr_png_``, see
:mod:`ser.plot`). Plain HTML with inline styles only, no scripts: it renders in Jupyter, in
exported HTML and on code hosts, and costs no matplotlib import. Outside Jupyter nothing changes:
``Predictions`` is a list and ``Report`` a dict.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser.labels import EMOTIONS

__all__ = ["Audio", "Predictions", "Report", "prediction_html", "predictions_html", "report_html"]

#: matplotlib's tab10, in EMOTIONS order: each emotion has the colour it has in ser.plot.
_TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")
#: Rows shown for a long list of predictions (the rest is counted, not shown: notebooks stay small).
MAX_ROWS = 40

_TABLE = 'style="border-collapse:collapse;font-size:0.85em;margin:0.2em 0"'
_CELL = "padding:1px 6px;"


def _colour(label: str) -> str:
    return _TAB10[EMOTIONS.index(label) % 10] if label in EMOTIONS else "#7f7f7f"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{max(0.0, min(1.0, alpha)):.2f})"


def _short(name: str) -> str:
    return name[:5]


# --- predictions -------------------------------------------------------------------------------
def prediction_html(prediction: Any, *, heading: str | None = None) -> str:
    """One prediction (or timeline segment) as a small table: the emotion, then every score with a bar."""
    scores = dict(prediction.scores)
    if heading is None:
        source = getattr(prediction, "source", None)
        duration = getattr(prediction, "duration", 0.0)
        heading = " · ".join(x for x in (_e(Path(source).name) if source else "",
                                         f"{duration:.1f} s" if duration else "") if x)
    rows = []
    for name, p in scores.items():
        best = name == prediction.label
        weight = "font-weight:bold;" if best else ""
        bar = (f'<div style="width:{120 * max(0.0, min(1.0, p)):.0f}px;height:0.8em;'
               f'background:{_rgba(_colour(name), 1.0 if best else 0.45)}"></div>')
        rows.append(f'<tr><td style="{_CELL}{weight}">{_e(name)}</td>'
                    f'<td style="{_CELL}text-align:right;{weight}">{p:.2f}</td><td style="{_CELL}">{bar}</td></tr>')
    head = (f'<tr><th colspan="3" style="{_CELL}text-align:left">'
            f'<span style="color:{_colour(prediction.label)}">&#9632;</span> {_e(prediction.label)} '
            f"{prediction.confidence:.2f}" + (f' <span style="font-weight:normal">({heading})</span>' if heading
                                              else "") + "</th></tr>")
    return f"<table {_TABLE}>{head}{''.join(rows)}</table>"


def predictions_html(results: Sequence, *, max_rows: int = MAX_ROWS) -> str:
    """Many predictions as one table: file, emotion, confidence and every score (shaded); errors in place."""
    results = list(results)
    ok = [r for r in results if hasattr(r, "scores")]
    classes = list(ok[0].scores) if ok else []
    head = ("<tr>" + "".join(f'<th style="{_CELL}text-align:{a}">{t}</th>' for t, a in
                             [("file", "left"), ("emotion", "left"), ("conf", "right")])
            + "".join(f'<th style="{_CELL}text-align:right" title="{_e(c)}">{_e(_short(c))}</th>' for c in classes)
            + "</tr>")
    rows = []
    for r in results[:max_rows]:
        source = getattr(r, "source", None)
        name = _e(Path(source).name) if source else "(audio)"
        if not hasattr(r, "scores"):  # an error returned in place (errors="return")
            rows.append(f'<tr><td style="{_CELL}">&mdash;</td><td colspan="{2 + len(classes)}" '
                        f'style="{_CELL}color:#b00">{_e(type(r).__name__)}: {_e(r)}</td></tr>')
            continue
        cells = "".join(f'<td style="{_CELL}text-align:right;background:{_rgba(_colour(c), 0.7 * r.scores[c])}">'
                        f"{r.scores[c]:.2f}</td>" for c in classes)
        rows.append(f'<tr><td style="{_CELL}">{name}</td><td style="{_CELL}font-weight:bold">'
                    f'<span style="color:{_colour(r.label)}">&#9632;</span> {_e(r.label)}</td>'
                    f'<td style="{_CELL}text-align:right">{r.confidence:.2f}</td>{cells}</tr>')
    errors = len(results) - len(ok)
    note = f"{len(results)} files" + (f", {errors} failed" if errors else "")
    if len(results) > max_rows:
        note += f"; the first {max_rows} shown"
    return f"<table {_TABLE}>{head}{''.join(rows)}</table><small>{note}</small>"


class Predictions(list):
    """The results of :meth:`ser.inference.Recognizer.predict_files`, in input order.

    A plain list of :class:`ser.inference.Prediction` (or, with ``errors="return"``, errors
    in place) that shows as a table in Jupyter.
    """

    __slots__ = ()

    def _repr_html_(self) -> str:
        return predictions_html(self)


# --- evaluation reports ------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else _e(value)


def _metrics_line(m: Mapping) -> str:
    return (f"accuracy {_fmt(m['accuracy'])} · <b>UAR {_fmt(m['uar'])}</b> · macro-F1 {_fmt(m['macro_f1'])}"
            f" ({m.get('n', '?')} clips)")


def _per_class_table(per_class: Mapping, classes: Sequence[str]) -> str:
    head = "<tr>" + "".join(f'<th style="{_CELL}text-align:{"left" if i == 0 else "right"}">{t}</th>'
                            for i, t in enumerate(("class", "precision", "recall", "F1", "n"))) + "</tr>"
    rows = []
    for c in classes:
        pc = per_class[c]
        f1 = pc["f1"]
        rows.append(f'<tr><td style="{_CELL}">{_e(c)}</td>'
                    + "".join(f'<td style="{_CELL}text-align:right">{_fmt(pc[k])}</td>'
                              for k in ("precision", "recall"))
                    + f'<td style="{_CELL}text-align:right;background:{_rgba("#2ca02c", 0.6 * f1)}">{_fmt(f1)}</td>'
                    f'<td style="{_CELL}text-align:right">{pc["support"]}</td></tr>')
    return f"<table {_TABLE}>{head}{''.join(rows)}</table>"


def _confusion_table(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    head = (f'<tr><th style="{_CELL}text-align:left">true \\ predicted</th>'
            + "".join(f'<th style="{_CELL}text-align:right" title="{_e(c)}">{_e(_short(c))}</th>' for c in classes)
            + "</tr>")
    rows = []
    for i, (c, row) in enumerate(zip(classes, confusion)):
        total = max(sum(row), 1)
        cells = "".join(
            f'<td style="{_CELL}text-align:right;background:{_rgba("#1f77b4", 0.85 * v / total)};'
            f'{"color:white;" if v / total > 0.5 else ""}{"font-weight:bold;" if i == j else ""}">{v}</td>'
            for j, v in enumerate(row))
        rows.append(f'<tr><th style="{_CELL}text-align:left">{_e(c)}</th>{cells}</tr>')
    return f"<table {_TABLE}>{head}{''.join(rows)}</table>"


def _side_by_side(*blocks: str) -> str:
    cells = "".join(f'<td style="vertical-align:top;padding-right:1.5em">{b}</td>' for b in blocks)
    return f'<table style="border-collapse:collapse"><tr>{cells}</tr></table>'


def _cv_html(report: Mapping) -> str:
    s, classes = report["summary"], list(report["classes"])
    pooled = s["pooled"]
    name = report.get("config", {}).get("name", "?")
    wall = report.get("wall_s")
    protocol = _e(report.get("protocol", "?"))
    if report.get("partial"):  # si6 without all 24 actors (evaluate(..., partial_folds=True))
        protocol += f" (partial: {len(s['folds'])} of 6 folds)"
    title = (f"<p><b>{protocol}</b> · preset <code>{_e(name)}</code> · "
             f"{report.get('clips', pooled['n'])} clips" + (f" · {wall:.0f} s" if isinstance(wall, (int, float))
                                                            else "")
             + f"<br>pooled: {_metrics_line(pooled)}</p>")
    names = ("fold", "test speakers", "n", "accuracy", "UAR", "macro-F1", "epochs")
    head = "<tr>" + "".join(f'<th style="{_CELL}text-align:{"left" if i < 2 else "right"}">{t}</th>'
                            for i, t in enumerate(names)) + "</tr>"
    rows = []
    for f in s["folds"]:
        speakers = ", ".join(map(str, f.get("test_speakers") or [])) or "mixed"
        rows.append(f'<tr><td style="{_CELL}">{f["fold"]}</td><td style="{_CELL}">{_e(speakers)}</td>'
                    + "".join(f'<td style="{_CELL}text-align:right">{_fmt(f[k]) if k != "n" else f[k]}</td>'
                              for k in ("n", "accuracy", "uar", "macro_f1"))
                    + f'<td style="{_CELL}text-align:right">{f.get("epochs_run", "")}</td></tr>')
    if len(s["folds"]) > 1:
        m, d = s["mean"], s["std"]
        rows.append(f'<tr><td style="{_CELL}" colspan="3">mean ± std</td>'
                    + "".join(f'<td style="{_CELL}text-align:right">{_fmt(m[k])} ± {_fmt(d[k])}</td>'
                              for k in ("accuracy", "uar", "macro_f1")) + f'<td style="{_CELL}"></td></tr>')
    rows.append(f'<tr style="font-weight:bold"><td style="{_CELL}" colspan="2">pooled</td>'
                f'<td style="{_CELL}text-align:right">{pooled["n"]}</td>'
                + "".join(f'<td style="{_CELL}text-align:right">{_fmt(pooled[k])}</td>'
                          for k in ("accuracy", "uar", "macro_f1")) + f'<td style="{_CELL}"></td></tr>')
    for key in ("baseline", "clean"):  # adaptation protocols: the inductive head on the same clips
        if key in report:
            b = report[key]
            rows.append(f'<tr><td style="{_CELL}" colspan="2">{_e(b.get("what", key))}</td>'
                        f'<td style="{_CELL}text-align:right">{b.get("n", "")}</td>'
                        + "".join(f'<td style="{_CELL}text-align:right">{_fmt(b[k])}</td>'
                                  for k in ("accuracy", "uar", "macro_f1")) + f'<td style="{_CELL}"></td></tr>')
    folds = f"<table {_TABLE}>{head}{''.join(rows)}</table>"
    return title + folds + _side_by_side(_per_class_table(pooled["per_class"], classes),
                                         _confusion_table(pooled["confusion"], classes))


def _scored_html(report: Mapping) -> str:
    shared = list(report["shared_labels"])
    left = report.get("left_out", {})
    model = report.get("model") or "model"
    data_only = left.get("data_only") or {}
    failed = report.get("failed") or []
    overlap = report.get("training_overlap")
    if report.get("held_out") is False and overlap:  # the model folder lists its training files and speakers
        held = (f'<br><b style="color:#b00">not held out</b>: {overlap["files"]} of {overlap["test_files"]} '
                f'test files and {len(overlap["speakers"])} of {overlap["test_speakers"]} test speakers were in '
                "this model's training data, so this is no estimate for new speakers")
    elif report.get("held_out"):
        held = "<br>held out: no test file or speaker was in this model's training data"
    else:
        held = ""
    title = (f"<p><b>{_e(Path(str(model)).name)}</b> scored on {report['n']} clips over {len(shared)} shared "
             f"emotions<br>{_metrics_line(report)}{held}<br><small>model classes not in the data: "
             f"{_e(', '.join(left.get('model_only') or []) or 'none')} · data labels the model lacks (not scored): "
             f"{_e(', '.join(f'{k} {v}' for k, v in data_only.items()) or 'none')} · files that failed: "
             f"{len(failed)}</small></p>")
    return title + _side_by_side(_per_class_table(report["per_class"], shared),
                                 _confusion_table(report["confusion"], shared))


def report_html(report: Mapping) -> str:
    """An evaluation report as HTML: headline metrics, per fold, per class and the confusion matrix.

    Takes the report of :func:`ser.evaluation.evaluate` (cross-validation) or of
    :func:`ser.evaluation.score_model` (a trained model scored on labelled clips).
    """
    if "summary" in report:
        return _cv_html(report)
    if "shared_labels" in report:
        return _scored_html(report)
    raise ValueError("report: expected a report of ser.evaluation.evaluate or score_model")


class Report(dict):
    """An evaluation report: a plain, JSON-ready dict that shows as tables in Jupyter.

    Returned by :func:`ser.evaluation.evaluate` and :func:`ser.evaluation.score_model`;
    :func:`ser.plot.confusion`, :func:`ser.plot.per_class` and :func:`ser.plot.folds` draw it.
    """

    __slots__ = ()

    def _repr_html_(self) -> str:
        return report_html(self)



# --- audio ------------------------------------------------------------------------------------
class Audio:
    """A clip to listen to in Jupyter: an audio player, the signal embedded as Ogg Vorbis.

    Like ``IPython.display.Audio``, but about a tenth of the size of its WAV (a few KB
    per second), so a notebook with clips in it stays small.

    Parameters
    ----------
    y : numpy.ndarray
        Mono signal, shape ``(n_samples,)``, float in [-1, 1].
    sr : int
        Its sample rate.
    title : str, optional
        A caption above the player.
    """

    def __init__(self, y: np.ndarray, sr: int, *, title: str | None = None) -> None:
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1 or y.size == 0:
            raise ValueError(f"y: expected a non-empty mono signal, got shape {y.shape}")
        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise ValueError(f"sr={sr!r}: expected a positive integer")
        self.y, self.sr, self.title = y, int(sr), title

    def ogg(self) -> bytes:
        """The clip as Ogg Vorbis bytes (clipped to [-1, 1])."""
        import io

        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, np.clip(self.y, -1.0, 1.0), self.sr, format="OGG", subtype="VORBIS")
        return buf.getvalue()

    def _repr_html_(self) -> str:
        import base64

        data = base64.b64encode(self.ogg()).decode("ascii")
        caption = f"<div><small>{_e(self.title)}</small></div>" if self.title else ""
        return (f'<div style="display:inline-block;margin-right:1em">{caption}'
                f'<audio controls preload="none" src="data:audio/ogg;base64,{data}"></audio></div>')
