"""Robustness benchmark: UAR on the si6 test folds under degraded recording conditions.

Each si6 fold's model is trained on the clean training side (with the preset's own
augmentation), then scored on its test actors' clips clean and under each condition
of ``ser.augment.CONDITIONS``: white noise at SNR 20/10/5 dB, reverberation (synthetic
RIR, RT60 0.6 s), telephone band (300-3400 Hz via 8 kHz), Ogg Vorbis and MP3 round
trips, level changes of +20/-20 dB, and 1 s of silence before and after.

Usage (from the repository root)::

    .venv/bin/python benchmarks/robustness.py --preset accurate

Writes ``benchmarks/results/robustness_<name>.json`` (name: ``--name`` or the preset). Finished folds are kept in
``runs/bench/robustness_<preset>/`` so an interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
from _harness import Run, recipe_config, recipe_parser, resume, save_fold, scores, setup_logging, write_json


def main() -> int:
    args = recipe_parser(__doc__, preset="accurate").parse_args()
    setup_logging()
    run = Run("robustness")

    from ser.augment import CONDITIONS
    from ser.cache import FeatureCache, default_cache_dir
    from ser.dataset import load_dataset
    from ser.frontend import compute_features
    from ser.labels import encode
    from ser.training import describe_device, fit, fold_digest, predict_proba, prepare_features, si6_folds, speakers_of

    clips = load_dataset(args.data)
    config = recipe_config(args)
    name = args.name or args.preset
    cache = FeatureCache(default_cache_dir())
    work = Path(args.work) / f"robustness_{name}"
    x, augmented = prepare_features(clips, config, cache=cache)
    y = encode([c.label for c in clips], config.classes)
    speakers = speakers_of(clips)
    folds, resumed = [], 0
    for fold in si6_folds(clips):
        path = work / f"fold_{fold.number}.json"
        digest = fold_digest(config, clips, fold, extra={"robustness": list(CONDITIONS)})
        # Folds saved before digests carried the whole config: still reused when it is the same.
        saved = resume(path, digest, legacy=lambda old: old.get("config") == config.to_dict())
        if saved is not None:
            folds.append(saved)
            resumed += 1
            continue
        logging.info("fold %d: training", fold.number)
        model, _ = fit(config, x, y, speakers, fold.train, augmented=augmented)
        test_paths = [clips[i].path for i in fold.test]
        probs = {"clean": predict_proba(model, x[fold.test])}
        for condition in CONDITIONS:
            xc, _ = compute_features(test_paths, config, cache=cache, condition=condition)
            probs[condition] = predict_proba(model, xc)
            logging.info("fold %d, %s: UAR %.3f", fold.number, condition,
                         scores(y[fold.test], probs[condition].argmax(axis=1), config.classes)["uar"])
        # Probabilities too, for fusion.py --robustness (late fusion of two recipes under each condition).
        folds.append(save_fold(path, digest, {
            "fold": fold.number, "paths": [str(p) for p in test_paths], "y_true": y[fold.test].tolist(),
            "preds": {k: p.argmax(axis=1).tolist() for k, p in probs.items()},
            "probs": {k: np.round(p, 6).tolist() for k, p in probs.items()}, "config": config.to_dict()}))

    y_true = np.concatenate([f["y_true"] for f in folds])

    def pooled_uar(condition: str) -> float:
        return scores(y_true, np.concatenate([f["preds"][condition] for f in folds]), config.classes)["uar"]

    def changed(condition: str) -> dict:
        # Predictions that differ from clean, and which way: a drop of a point can be a few clips that
        # flip one way, or many flipping both ways (a model sensitive to small input changes).
        from scipy.stats import binomtest

        before = np.concatenate([f["preds"]["clean"] for f in folds])
        after = np.concatenate([f["preds"][condition] for f in folds])
        worse = int(((before == y_true) & (after != y_true)).sum())
        better = int(((before != y_true) & (after == y_true)).sum())
        # Sign test: how likely so uneven a split is if each flip went either way by chance.
        p = binomtest(worse, worse + better, 0.5).pvalue if worse + better else 1.0
        return {"changed": int((before != after).sum()), "right_to_wrong": worse, "wrong_to_right": better,
                "sign_test_p": round(float(p), 4)}

    clean = pooled_uar("clean")
    conditions = {condition: pooled_uar(condition) for condition in CONDITIONS}
    result = {
        **run.header(device=describe_device()),
        "folds_resumed": resumed,  # computed by an earlier run of this command (wall_s is this run's)
        "preset": args.preset,
        "name": name,
        "config": config.to_dict(),
        "protocol": "si6",
        "clean_uar": clean,
        "conditions": conditions,
        "drop_points": {k: round(100 * (clean - v), 1) for k, v in conditions.items()},
        "predictions_changed": {k: changed(k) for k in CONDITIONS},
        "folds": [{"fold": f["fold"], "clean": scores(f["y_true"], f["preds"]["clean"], config.classes)["uar"]}
                  for f in folds],
    }
    write_json(Path(args.results) / f"robustness_{name}.json", result)
    print(json.dumps({k: result[k] for k in ("preset", "clean_uar", "conditions", "wall_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
