"""Metrics are right on known inputs; a protocol run writes a complete report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ser.cache import FeatureCache
from ser.config import preset
from ser.dataset import load_dataset
from ser.evaluation import confusion_text, evaluate, metrics, plot_confusion, render_markdown, summarize
from ser.labels import EMOTIONS


def test_metrics_on_known_predictions():
    """Accuracy, UAR (mean recall), macro-F1 and the confusion matrix on a hand-checked case."""
    classes = ("a", "b", "c")
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 0, 2, 2]
    m = metrics(y_true, y_pred, classes)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["uar"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    assert m["confusion"] == [[3, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert m["per_class"]["a"]["precision"] == pytest.approx(3 / 4)
    f1 = [2 * 0.75 * 0.75 / 1.5, 2 * 0.5 * 0.5 / 1.0, 1.0]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))


def test_summarize_pools_and_averages_folds():
    """Pooled metrics come from all predictions together; mean/std from per-fold values."""
    folds = [
        {"fold": 1, "test_speakers": ["1"], "y_true": [0, 1], "probs": [[0.9, 0.1], [0.2, 0.8]], "history": {}},
        {"fold": 2, "test_speakers": ["2"], "y_true": [0, 1], "probs": [[0.9, 0.1], [0.6, 0.4]], "history": {}},
    ]
    s = summarize(folds, ("x", "y"))
    assert [f["accuracy"] for f in s["folds"]] == [1.0, 0.5]
    assert s["mean"]["accuracy"] == pytest.approx(0.75) and s["std"]["accuracy"] == pytest.approx(0.25)
    assert s["pooled"]["accuracy"] == pytest.approx(0.75) and s["pooled"]["n"] == 4


def test_confusion_outputs(tmp_path):
    """The text table keeps the fixed label order; the PNG is a real image."""
    cm = np.eye(8, dtype=int).tolist()
    text = confusion_text(cm, EMOTIONS)
    assert text.splitlines()[1].startswith("neutral") and text.splitlines()[-1].startswith("surpris")
    png = plot_confusion(cm, EMOTIONS, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_writes_a_complete_report(corpus, cache_dir, tmp_path):
    """si6 on the synthetic corpus: per-fold and pooled results, Markdown, plots and the config are saved."""
    clips = load_dataset(corpus)
    config = preset("tiny").override({"train.epochs": 2})
    report = evaluate(clips, config, protocol="si6", out_dir=tmp_path, cache=FeatureCache(cache_dir), jobs=1,
                      partial_folds=True)
    assert report["protocol"] == "si6" and len(report["summary"]["folds"]) == 2
    for name in ("config.json", "report.json", "report.md", "confusion.png", "fold_1/curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"]["pooled"]["n"] == 96
    assert 0.0 <= saved["summary"]["pooled"]["uar"] <= 1.0
    md = render_markdown(saved)
    assert "| **pooled** |" in md and "neutral" in md
