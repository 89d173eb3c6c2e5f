"""Ablation: the si6 effect of each lever of the encoder-based recipe.

Every row is a full si6 run (6 EmoBox actor folds, validation speakers from the
training side only) of the ``accurate`` preset with some settings changed.

Usage (from the repository root)::

    .venv/bin/python benchmarks/ablation.py

Writes ``benchmarks/results/ablation_accurate_si6.json`` and ``.md``. Each row's run
folder is kept in ``runs/bench/ablation/`` so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from _harness import DATA, RESULTS, WORK, Run, setup_logging, write_json, write_text

#: (name, what changes relative to the `accurate` preset)
VARIANTS: list[tuple[str, dict]] = [
    ("last layer only, no augmentation", {"model.layers": "last", "augment.copies": 0}),
    ("learned layer weights, no augmentation", {"augment.copies": 0}),
    ("learned layer weights + 2 augmented copies (= accurate)", {}),
    ("  hidden layer 512", {"model.dense_units": 512}),
    ("  input dropout 0.4", {"model.input_dropout": 0.4}),
    ("  no label smoothing", {"train.label_smoothing": 0.0}),
    ("  ensemble of 5 (seeds 42-46)", {"train.ensemble": 5}),
]


def write_results(rows: list[dict], args: argparse.Namespace, run: Run, device: str) -> str:
    """Write the table so far (after every row, so an interrupted run leaves its finished rows)."""
    result = {**run.header(device=device), "kind": "ablation", "protocol": "si6", "preset": args.preset,
              "rows": rows}
    out = Path(args.results)
    write_json(out / f"ablation_{args.preset}_si6.json", result)
    lines = [f"# Ablation on si6 — preset `{args.preset}`", "",
             (f"{result['date']}, {result['machine']['cpus']} CPUs, `{result['command']}`, {result['wall_s']:.0f} s "
              "(features cached once, shared by all rows)"), "",
             "| # | variant | UAR | macro-F1 | accuracy | lowest fold UAR | training s (6 folds) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["pooled"]
        lines.append(f"| {r['row']} | {r['variant']} | {p['uar']:.3f} | {p['macro_f1']:.3f} | {p['accuracy']:.3f} | "
                     f"{r['min_fold_uar']:.3f} | {r['train_s_total']:.0f} |")
    write_text(out / f"ablation_{args.preset}_si6.md", "\n".join(lines) + "\n")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="accurate")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--work", default=str(WORK / "ablation"))
    parser.add_argument("--only", type=int, nargs="*", help="row numbers to run (default: all)")
    args = parser.parse_args()
    setup_logging()
    run = Run("accuracy")

    from ser.cache import FeatureCache, default_cache_dir
    from ser.config import preset
    from ser.dataset import load_dataset
    from ser.evaluation import evaluate

    clips = load_dataset(args.data)
    rows, table = [], ""
    for number, (name, changes) in enumerate(VARIANTS, start=1):
        if args.only and number not in args.only:
            continue
        config = preset(args.preset).override(changes)
        t0 = time.perf_counter()
        report = evaluate(clips, config, protocol="si6", out_dir=Path(args.work) / f"row{number}",
                          cache=FeatureCache(default_cache_dir()))
        s = report["summary"]
        rows.append({"row": number, "variant": name.strip(), "changes": changes,
                     "pooled": {k: round(s["pooled"][k], 4) for k in ("accuracy", "uar", "macro_f1")},
                     "fold_uar": [round(f["uar"], 4) for f in s["folds"]],
                     "min_fold_uar": round(min(f["uar"] for f in s["folds"]), 4),
                     "train_s_total": round(sum(f["train_s"] or 0 for f in s["folds"]), 1),
                     "wall_s": round(time.perf_counter() - t0, 1)})
        logging.info("%s: si6 UAR %.3f", name.strip(), s["pooled"]["uar"])
        table = write_results(rows, args, run, report["device"])
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
