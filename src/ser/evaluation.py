"""Metrics, reports (JSON/Markdown) and plots; :func:`evaluate` runs a whole protocol."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ser.cache import FeatureCache
from ser.config import Config
from ser.dataset import Clip
from ser.display import Report
from ser.errors import ConfigError, ManifestError
from ser.training import cross_validate, describe_device, make_folds, prepare_features, si6_missing
from ser.utils import atomic_write_text

log = logging.getLogger(__name__)


def metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """Accuracy (WA), UAR, macro-F1, per-class precision/recall/F1 and the confusion matrix.

    The confusion matrix has rows = true, columns = predicted, in ``classes`` order.
    UAR and macro-F1 are over the classes present in ``y_true``.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = np.unique(y_true)
    labels = np.arange(len(classes))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": int(y_true.size),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "uar": float(np.mean(r[present])),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                          "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def fold_predicted(fold: dict) -> np.ndarray:
    """A fold result's predicted classes: argmax of ``probs``, among each clip's ``allowed`` labels when saved."""
    from ser.training import restricted_argmax

    allowed = fold.get("allowed")
    return restricted_argmax(np.asarray(fold["probs"]), None if allowed is None else np.asarray(allowed, dtype=bool))


def summarize(folds: list[dict], classes: Sequence[str]) -> dict:
    """Per-fold metrics, mean ± std over folds and metrics pooled over all test predictions."""
    per_fold = []
    for f in folds:
        pred = fold_predicted(f)
        m = metrics(f["y_true"], pred, classes)
        per_fold.append({"fold": f["fold"], "test_speakers": f["test_speakers"], "n": m["n"],
                         "accuracy": m["accuracy"], "uar": m["uar"], "macro_f1": m["macro_f1"],
                         "train_s": f.get("train_s"), "resumed": bool(f.get("resumed")),
                         "best_epoch": f["history"].get("best_epoch"),
                         "epochs_run": len(f["history"].get("loss", []))})
    y_true = np.concatenate([f["y_true"] for f in folds])
    y_pred = np.concatenate([fold_predicted(f) for f in folds])
    keys = ("accuracy", "uar", "macro_f1")
    return {
        "pooled": metrics(y_true, y_pred, classes),
        "mean": {k: float(np.mean([f[k] for f in per_fold])) for k in keys},
        "std": {k: float(np.std([f[k] for f in per_fold])) for k in keys},
        "folds": per_fold,
    }


def confusion_text(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """The confusion matrix as a fixed-width text table (rows = true, columns = predicted)."""
    short = [c[:7] for c in classes]
    width = max(7, max(len(str(v)) for row in confusion for v in row))
    lines = ["true \\ pred".ljust(12) + " ".join(s.rjust(width) for s in short)]
    for name, row in zip(short, confusion):
        lines.append(name.ljust(12) + " ".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | os.PathLike, *,
                   title: str = "") -> Path:
    """Save a confusion-matrix heat map (row-normalised colours, counts written) as PNG (:func:`ser.plot.confusion`)."""
    from ser import plot

    plot.save(plot.confusion(confusion, classes, title=title), path, dpi=110)
    return Path(path)


def plot_history(history: dict, path: str | os.PathLike, *, title: str = "") -> Path:
    """Save training curves (loss and accuracy, validation if present) as PNG (:func:`ser.plot.curves`)."""
    from ser import plot

    plot.save(plot.curves(history, title=title), path, dpi=110)
    return Path(path)


def protocol_label(report: dict) -> str:
    """The protocol's name as reports print it: ``si6 (partial: 2 of 6 folds)`` when folds are missing."""
    if not report.get("partial"):
        return report["protocol"]
    return f"{report['protocol']} (partial: {len(report['summary']['folds'])} of 6 folds)"


def render_markdown(report: dict) -> str:
    """A human-readable Markdown rendering of a report from :func:`evaluate`."""
    s, classes = report["summary"], report["classes"]
    pooled = s["pooled"]
    lines = [
        f"# {protocol_label(report)} — preset `{report['config']['name']}`", "",
        f"- date: {report['date']}, machine: {report['machine']['cpus']} CPUs, device: {report['device']}",
        f"- clips: {report['clips']}, wall time: {report['wall_s']:.0f} s",
    ]
    if report.get("partial"):
        lines.append(f"- **partial folds**: RAVDESS actors {', '.join(map(str, report['actors_missing']))} are not "
                     "in the data; not comparable with si6 on all 24 actors")
    if report.get("adaptation"):
        lines.append("- speaker adaptation: each test speaker's own unlabelled clips are used (transductive); "
                     "reported beside the plain protocol, never instead of it")
    lines += [
        "",
        "| fold | test speakers | n | accuracy | UAR | macro-F1 | epochs | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in s["folds"]:
        lines.append(f"| {f['fold']} | {', '.join(f['test_speakers']) or 'mixed'} | {f['n']} | "
                     f"{f['accuracy']:.3f} | {f['uar']:.3f} | {f['macro_f1']:.3f} | {f['epochs_run']} | "
                     f"{f['train_s']} |")
    if len(s["folds"]) > 1:
        m, d = s["mean"], s["std"]
        lines.append(f"| mean ± std | | | {m['accuracy']:.3f} ± {d['accuracy']:.3f} | {m['uar']:.3f} ± "
                     f"{d['uar']:.3f} | {m['macro_f1']:.3f} ± {d['macro_f1']:.3f} | | |")
    spread = f" ± {pooled['uar_std_over_draws']:.3f} over draws" if "uar_std_over_draws" in pooled else ""
    lines.append(f"| **pooled** | | {pooled['n']} | **{pooled['accuracy']:.3f}** | **{pooled['uar']:.3f}**{spread} | "
                 f"**{pooled['macro_f1']:.3f}** | | |")
    for key in ("baseline", "clean", "uncorrected"):
        if key in report:
            b = report[key]
            lines.append(f"| {b['what']} | | {b['n']} | {b['accuracy']:.3f} | {b['uar']:.3f} | {b['macro_f1']:.3f} "
                         "| | |")
    lines += ["", "## Per class (pooled)", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c in classes:
        pc = pooled["per_class"][c]
        lines.append(f"| {c} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {pc['support']} |")
    lines += ["", "## Confusion matrix (pooled; rows = true, columns = predicted)", "", "```",
              confusion_text(pooled["confusion"], classes), "```", ""]
    return "\n".join(lines)


def check_run_folder(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as a run folder: new, empty, or an earlier run's (whose finished folds are resumed).

    Raises
    ------
    ConfigError
        ``out_dir`` is a file, or a folder holding other things than a run (nothing is written into it).
    """
    out = Path(out_dir)
    if os.path.lexists(out) and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and not (out / "config.json").is_file() and any(out.iterdir()):
        raise ConfigError(f"{out}: folder exists and is not a run folder (no config.json); choose a new or "
                        "empty folder")
    return out


def evaluate(clips: Sequence[Clip], config: Config, *, protocol: str, out_dir: str | os.PathLike,
             folds_k: int = 5, grid: dict | None = None, inner_folds: int = 3,
             cache: FeatureCache | None = None, jobs: int | None = None, progress: bool = False,
             partial_folds: bool = False, executor=None) -> dict:
    """Run a protocol end to end and write its report into ``out_dir``.

    Writes ``config.json``, ``report.json``, ``report.md``, ``confusion.png`` and
    per fold ``fold_N/result.json`` (and ``fold_N/curves.png``). Finished folds are
    reused when the same command is run again (resume).

    Parameters
    ----------
    protocol : str
        ``si6``, ``seed-split``, ``group-kfold`` (``folds_k`` folds), or a speaker-adaptation
        protocol of :mod:`ser.protocols` (``si6-enrol``, ``si6-adapt-20``, ``channel-shift``,
        ``group-kfold-adapt-10`` …; encoder features only; no ``grid``).
    partial_folds : bool
        Let ``si6`` (and its adaptation protocols) run without all 24 RAVDESS actors: the
        report then says ``"partial": true`` and names the missing actors.
    executor : callable, optional
        Runs the feature extraction and the folds of ``si6``, ``seed-split`` and ``group-kfold``
        (:func:`ser.batch.ray_executor`: as Ray tasks, the same numbers as the default, local
        path). Adaptation protocols run here.

    Returns
    -------
    Report
        The report (a dict; it shows as tables in Jupyter): protocol, config, device,
        machine, wall time and ``summary`` (see :func:`summarize`); adaptation protocols add
        ``baseline`` (the inductive head on the same clips) and, for channel shift, ``clean``.

    Raises
    ------
    ConfigError, ManifestError
        An unknown protocol, or data it cannot run on (si6 without all 24 actors and without
        ``partial_folds``; too few speakers), before anything is written.
    """
    from datetime import date

    from ser.protocols import parse_protocol

    start = time.perf_counter()
    spec = parse_protocol(protocol)
    out = check_run_folder(out_dir)
    # Folds first: a protocol the data cannot support is refused before anything is written.
    folds = make_folds(clips, spec.base, k=folds_k, seed=config.train.seed, partial=partial_folds)
    if spec.adaptive and grid:
        raise ConfigError(f"grid: not with protocol={protocol} (choose the settings with --grid under si6 first)")
    if spec.adaptive and config.features.kind != "whisper":
        raise ConfigError(f"protocol={protocol}: speaker adaptation needs encoder features (e.g. --config robust or "
                          f"accurate); the config has features.kind={config.features.kind!r}")
    if spec.adaptive and not config.speakers.adapted_head:
        config = config.override({"speakers.adapted_head": True})  # refuses a config without encoder features
    missing = si6_missing(clips) if spec.base in ("si6", "si6+corpora") else []
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create the run folder ({exc.strerror or exc})") from None
    config.save(out / "config.json")
    device = describe_device()
    log.info("device: %s", device)
    extra = {}
    if spec.adaptive:
        from ser.protocols import run_adaptation

        result = run_adaptation(clips, config, [spec], folds, out_dir=out, cache=cache, jobs=jobs,
                                progress=progress)["protocols"][protocol]
        summary = {"pooled": result["pooled"], "folds": result["folds"], **_fold_spread(result["folds"])}
        extra = {"adaptation": True, **{k: result[k] for k in ("baseline", "clean", "uncorrected") if k in result}}
    else:
        x, augmented = prepare_features(clips, config, cache=cache, jobs=jobs, progress=progress, executor=executor)
        results = cross_validate(clips, config, folds, x=x, augmented=augmented, out_dir=out, grid=grid,
                                 inner_folds=inner_folds, cache=cache, progress=progress, executor=executor)
        for r in results:
            plot_history(r["history"], out / f"fold_{r['fold']}" / "curves.png", title=f"fold {r['fold']}")
        summary = summarize(results, config.classes)
    report = {
        "protocol": protocol, "partial": bool(missing), "actors_missing": missing,
        "date": date.today().isoformat(), "device": device,
        "machine": {"cpus": os.cpu_count(), "gpu": device if device.startswith("GPU") else None},
        "clips": len(clips), "classes": list(config.classes), "config": config.to_dict(),
        "grid": grid, "wall_s": round(time.perf_counter() - start, 1), "summary": summary, **extra,
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "report.md", render_markdown(report))
    plot_confusion(summary["pooled"]["confusion"], config.classes, out / "confusion.png",
                   title=f"{protocol}, pooled (UAR {summary['pooled']['uar']:.3f})")
    return Report(report)  # a dict that shows as tables in Jupyter


def _fold_spread(folds: list[dict]) -> dict:
    keys = ("accuracy", "uar", "macro_f1")
    return {"mean": {k: float(np.mean([f[k] for f in folds])) for k in keys},
            "std": {k: float(np.std([f[k] for f in folds])) for k in keys}}


def training_overlap(metadata: dict, clips: Sequence[Clip]) -> dict | None:
    """Which of ``clips`` (files, speakers) were in a model's training data, from its ``metrics.json``.

    Parameters
    ----------
    metadata : dict
        The model folder's recorded metadata (``Recognizer.metadata``); its ``training_data``
        (:func:`ser.training.training_data_record`) lists training speakers and file digests.

    Returns
    -------
    dict or None
        ``None`` when the model folder does not record its training data; else ``files`` and
        ``test_files`` (counts), ``speakers`` (the shared qualified names), ``test_speakers``
        and ``held_out`` (no file and no speaker shared).
    """
    from ser.training import FILE_DIGEST_CHARS, qualified_speaker
    from ser.utils import sha256_file

    record = metadata.get("training_data") if isinstance(metadata, dict) else None
    if not isinstance(record, dict):
        return None
    trained_speakers = set(record.get("speakers") or ())
    test_speakers = {qualified_speaker(c) for c in clips if c.speaker}
    shared = sorted(test_speakers & trained_speakers, key=lambda s: (len(s), s))
    files = 0
    if record.get("files"):
        trained_files = set(record["files"])
        files = sum(sha256_file(c.path)[:FILE_DIGEST_CHARS] in trained_files for c in clips)
    return {"files": files, "test_files": len(clips), "speakers": shared, "test_speakers": len(test_speakers),
            "held_out": not files and not shared}


def overlap_warning(overlap: dict | None) -> str | None:
    """One line saying which test data trained the model, or ``None`` when nothing did (or it is unknown)."""
    if not overlap or overlap["held_out"]:
        return None
    names = ", ".join(overlap["speakers"][:4]) + (" …" if len(overlap["speakers"]) > 4 else "")
    return (f"{overlap['files']} of {overlap['test_files']} test files and {len(overlap['speakers'])} of "
            f"{overlap['test_speakers']} test speakers{f' ({names})' if names else ''} were in this model's training "
            "data: these scores are not a held-out estimate")


def score_model(recognizer, clips: Sequence[Clip], *, out_dir: str | os.PathLike | None = None,
                batch_size: int = 32, progress: bool = False) -> dict:
    """Score a trained model on a labelled corpus (e.g. another corpus than it was trained on).

    Only the emotions that both the model and the data have are scored, and the
    model's prediction is restricted to them (the arg-max over those classes), so
    a model that knows "calm" is not penalised on a corpus without it.

    Parameters
    ----------
    recognizer : ser.inference.Recognizer
        The trained model.
    clips : sequence of Clip
        Labelled clips.
    out_dir : path-like, optional
        Where to write ``report.json``, ``report.md`` and ``confusion.png``.

    Returns
    -------
    Report
        A dict (shown as tables in Jupyter): ``shared_labels``, ``left_out``
        (``{"model_only": [...], "data_only": {label: n}}``), ``failed`` files, and the
        metrics of :func:`metrics` over the shared labels.
    """
    from collections import Counter

    model_classes = list(recognizer.classes)
    data_counts = Counter(c.label for c in clips)
    shared = [c for c in model_classes if c in data_counts]
    if not shared:
        raise ManifestError(f"no emotion in common between the model ({model_classes}) and the data")
    scored = [c for c in clips if c.label in shared]
    from ser.quiet import warnings_once
    from ser.training import FEATURE_LOGGERS

    with warnings_once(*FEATURE_LOGGERS, "ser.inference"):
        results = recognizer.predict_files([c.path for c in scored], batch_size=batch_size, progress=progress,
                                           errors="return")
    columns = [model_classes.index(c) for c in shared]
    y_true, y_pred, failed = [], [], []
    for clip, result in zip(scored, results):
        if isinstance(result, Exception):
            failed.append(str(result))
            continue
        probs = np.array([result.scores[c] for c in model_classes])[columns]
        y_true.append(shared.index(clip.label))
        y_pred.append(int(np.argmax(probs)))
    if not y_true:
        raise ManifestError(f"none of the {len(scored)} clips could be scored; first error: {failed[0]}")
    overlap = training_overlap(getattr(recognizer, "metadata", {}), scored)
    warning = overlap_warning(overlap)
    if warning:
        log.warning("%s", warning)
    report = {
        "shared_labels": shared,
        "left_out": {"model_only": [c for c in model_classes if c not in data_counts],
                     "data_only": {k: v for k, v in sorted(data_counts.items()) if k not in shared}},
        "failed": failed,
        "model": str(getattr(recognizer, "path", "")),
        # True: no test file or speaker trained the model; None: the model folder does not say.
        "held_out": None if overlap is None else overlap["held_out"],
        "training_overlap": overlap,
        **metrics(y_true, y_pred, shared),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
        lines = [f"# Model `{report['model']}` on {report['n']} clips", "",
                 f"- scored over: {', '.join(shared)}",
                 f"- model classes not in the data: {', '.join(report['left_out']['model_only']) or 'none'}",
                 "- data labels the model lacks (not scored): "
                 + (", ".join(f"{k} {v}" for k, v in report["left_out"]["data_only"].items()) or "none"),
                 f"- files that failed: {len(failed)}",
                 "- held out: " + ("unknown (the model folder does not record its training data)" if overlap is None
                                   else "yes (no test file or speaker trained the model)" if overlap["held_out"]
                                   else f"**no**: {warning}"), "",
                 f"accuracy {report['accuracy']:.3f}, UAR {report['uar']:.3f}, macro-F1 {report['macro_f1']:.3f}", "",
                 "```", confusion_text(report["confusion"], shared), "```", ""]
        atomic_write_text(out / "report.md", "\n".join(lines))
        plot_confusion(report["confusion"], shared, out / "confusion.png", title=f"UAR {report['uar']:.3f}")
    return Report(report)  # a dict that shows as tables in Jupyter
