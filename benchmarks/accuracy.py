"""Accuracy benchmark: a preset under a protocol on the full RAVDESS speech set.

Usage (from the repository root)::

    .venv/bin/python benchmarks/accuracy.py --preset seed_cnn --protocol seed-split
    .venv/bin/python benchmarks/accuracy.py --preset seed_cnn --protocol si6

Writes ``benchmarks/results/accuracy_<preset>_<protocol>.json`` and ``.md`` (plus the
pooled confusion matrix as PNG). Work is kept in ``runs/bench/`` so an interrupted
run resumes at the first unfinished fold.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from _harness import Run, recipe_config, recipe_parser, setup_logging, write_json, write_text


def main() -> int:
    parser = recipe_parser(__doc__, preset="seed_cnn")
    parser.add_argument("--protocol", default="si6", choices=["seed-split", "si6"])
    parser.add_argument("--seed", type=int, default=None,
                        help="override train.seed (the protocol's seed-split itself stays random_state=42)")
    parser.add_argument("--grid", help="JSON file {\"section.field\": [values]}: nested grid search, the settings "
                        "of every fold chosen on speaker-grouped inner folds of its training actors")
    parser.add_argument("--inner-folds", type=int, default=3)
    args = parser.parse_args()
    setup_logging()
    run = Run("accuracy")

    from ser.cache import FeatureCache, default_cache_dir
    from ser.dataset import load_dataset
    from ser.evaluation import evaluate

    clips = load_dataset(args.data)
    config = recipe_config(args)
    name = f"accuracy_{args.name or args.preset}_{args.protocol}"
    if args.seed is not None:
        config = config.override({"train.seed": args.seed})
        name += f"_seed{args.seed}"
    work = Path(args.work) / name
    grid = json.loads(Path(args.grid).read_text()) if args.grid else None
    report = evaluate(clips, config, protocol=args.protocol, out_dir=work, cache=FeatureCache(default_cache_dir()),
                      grid=grid, inner_folds=args.inner_folds, progress=False)
    s = report["summary"]
    keys = ("accuracy", "uar", "macro_f1")
    result = {
        # wall_s: the whole command, features included. A resumed run reuses finished folds, so its
        # wall time misses their training: train_s_total (kept per fold) covers all folds.
        **run.header(device=report["device"]),
        "train_s_total": round(sum(f["train_s"] or 0 for f in s["folds"]), 1),
        "folds_resumed": sum(f["resumed"] for f in s["folds"]),
        "preset": args.preset,
        "seed": config.train.seed,
        "protocol": args.protocol,
        "clips": len(clips),
        "data": "RAVDESS speech, 1440 clips, 24 actors (16 kHz FLAC copy)",
        "pooled": {k: round(s["pooled"][k], 4) for k in keys},
        "mean": {k: round(s["mean"][k], 4) for k in keys},
        "std": {k: round(s["std"][k], 4) for k in keys},
        "folds": [{"fold": f["fold"], "test_actors": [int(a) for a in f["test_speakers"]] or None, "n": f["n"],
                   **{k: round(f[k], 4) for k in keys}, "epochs_run": f["epochs_run"], "train_s": f["train_s"]}
                  for f in s["folds"]],
        "per_class": s["pooled"]["per_class"],
        "confusion": s["pooled"]["confusion"],
        "classes": report["classes"],
        "config": report["config"],
    }
    if grid:
        result["grid"] = {"candidates": grid, "inner_folds": args.inner_folds,
                          "chosen": [{"fold": f["fold"], **json.loads((work / f"fold_{f['fold']}" / "grid.json")
                                                                     .read_text())["best_params"]}
                                     for f in s["folds"]]}
    out = Path(args.results)
    write_json(out / f"{name}.json", result)
    md = (work / "report.md").read_text()
    md += (f"\nCommand: `{result['command']}` — wall time {result['wall_s']:.0f} s on {result['machine']['cpus']} "
           f"CPUs ({result['machine']['cpu_model']}).\n")
    write_text(out / f"{name}.md", md)
    shutil.copyfile(work / "confusion.png", out / f"{name}_confusion.png")
    print(json.dumps({k: result[k] for k in ("preset", "protocol", "pooled", "wall_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
