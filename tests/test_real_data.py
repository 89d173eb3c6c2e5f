"""Smoke tests on a few real RAVDESS actors (../shared/data/ravdess)."""

from __future__ import annotations

import numpy as np

from ser.cache import FeatureCache
from ser.config import preset
from ser.dataset import load_dataset
from ser.evaluation import evaluate
from ser.inference import Recognizer


def test_si6_on_real_actors(ravdess, cache_dir, tmp_path):
    """si6 with a small recipe on 8 real actors runs end to end and tests only fold actors."""
    actors = {"1", "11", "4", "12", "2", "3", "5", "6"}
    clips = [c for c in load_dataset(ravdess) if c.speaker in actors]
    config = preset("tiny").override({"train.epochs": 2})
    report = evaluate(clips, config, protocol="si6", out_dir=tmp_path, cache=FeatureCache(cache_dir),
                      partial_folds=True)
    folds = report["summary"]["folds"]
    assert {tuple(f["test_speakers"]) for f in folds} >= {("1", "11", "20", "21"), ("4", "10", "12", "14")}
    assert sum(f["n"] for f in folds) == report["summary"]["pooled"]["n"]


def test_bundled_model_on_real_clips(ravdess):
    """The bundled model reads real 16 kHz FLAC (mono and stereo) and recognises its training actors well."""
    clips = [c for c in load_dataset(ravdess) if c.speaker in ("1", "2")]
    rec = Recognizer.load()
    results = rec.predict_files([c.path for c in clips], batch_size=32)
    accuracy = np.mean([r.label == c.label for r, c in zip(results, clips)])
    assert accuracy > 0.5  # these actors are in its training data; chance is 1/8
