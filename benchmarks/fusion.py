"""Late fusion of two si6 runs: the encoder model's probabilities averaged with a spectral CNN's.

Usage (from the repository root, after both accuracy runs)::

    .venv/bin/python benchmarks/accuracy.py --preset fast --protocol si6
    .venv/bin/python benchmarks/accuracy.py --preset robust --protocol si6 --set train.ensemble=5 \\
        --name robust-ensemble5
    .venv/bin/python benchmarks/fusion.py --a robust-ensemble5 --b fast
    .venv/bin/python benchmarks/ablation.py      # row 7: `accurate`, ensemble of 5
    .venv/bin/python benchmarks/fusion.py --a robust-ensemble5 --b runs/bench/ablation/row7 \
        --name robust-ensemble5+accurate-ensemble5

Reads each fold's test probabilities from ``runs/bench/accuracy_<name>_si6/fold_N/result.json``
(both models trained on the same training actors only) and scores
``(1 - w) * p_a + w * p_b`` for several weights ``w``. Every row is measured on the test folds:
an ablation of the fusion lever, not a model choice. Writes
``benchmarks/results/fusion_<a>+<b>_si6.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _harness import RESULTS, WORK, Run, scores, write_json, write_text


def load_run(work: Path, name: str) -> dict[str, tuple[int, np.ndarray]]:
    """``{path: (true class, probabilities)}`` over every fold of a finished si6 run.

    ``name`` is a results name (``runs/bench/accuracy_<name>_si6``) or a run folder.
    """
    run = Path(name) if Path(name).is_dir() else work / f"accuracy_{name}_si6"
    folds = sorted(run.glob("fold_*/result.json"))
    if len(folds) != 6:
        raise SystemExit(f"{run}: expected 6 finished folds, found {len(folds)}; "
                         f"run benchmarks/accuracy.py for {name} first")
    out = {}
    for path in folds:
        fold = json.loads(path.read_text())
        for clip, y, p in zip(fold["paths"], fold["y_true"], fold["probs"]):
            out[clip] = (int(y), np.asarray(p, dtype=np.float64))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="results name of the first run (e.g. robust-ensemble5) or a "
                        "run folder")
    parser.add_argument("--b", required=True, help="results name of the second run (e.g. fast) or a run folder")
    parser.add_argument("--name", help="results name (default: <a>+<b>)")
    parser.add_argument("--weights", default="0,0.1,0.2,0.3,0.5,1", help="weights w of the second run")
    parser.add_argument("--work", default=str(WORK))
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    run = Run("fusion")
    from ser.labels import EMOTIONS

    a, b = load_run(Path(args.work), args.a), load_run(Path(args.work), args.b)
    clips = sorted(set(a) & set(b), key=lambda c: Path(c).name)
    if len(clips) != len(a) or len(clips) != len(b):
        raise SystemExit(f"the runs cover different clips ({len(a)} vs {len(b)}, {len(clips)} shared)")
    y = np.array([a[c][0] for c in clips])
    pa, pb = np.stack([a[c][1] for c in clips]), np.stack([b[c][1] for c in clips])
    rows = []
    for w in (float(v) for v in args.weights.split(",")):
        pred = ((1 - w) * pa + w * pb).argmax(axis=1)
        s = scores(y, pred, EMOTIONS)
        rows.append({"weight_b": w, "uar": s["uar"], "macro_f1": s["macro_f1"], "accuracy": s["accuracy"]})
    result = {**run.header(), "protocol": "si6", "a": args.a, "b": args.b, "clips": len(clips), "rows": rows,
              "note": "measured on the test folds: an ablation, not a model choice"}
    stem = Path(args.results) / f"fusion_{args.name or args.a + '+' + args.b}_si6"
    write_json(stem.with_suffix(".json"), result)
    lines = [f"# Late fusion on si6: `{args.a}` + w × `{args.b}`", "",
             f"`{result['command']}` — {result['date']}", "",
             "| w | UAR | macro-F1 | accuracy |", "|---|---|---|---|"]
    lines += [f"| {r['weight_b']:g} | {r['uar']:.3f} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} |" for r in rows]
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
