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

``--robustness`` fuses two runs of ``benchmarks/robustness.py`` instead (``runs/bench/robustness_<name>/``,
their probabilities on the test actors clean and under every condition) and reports, for each ``w``,
the fused clean UAR, the drop under each condition and whether the drops stay within the limits of the
robustness issue (:data:`LIMITS`)::

    .venv/bin/python benchmarks/fusion.py --robustness --a robust-ensemble5-int8-linear \
        --b accurate-ensemble5-int8-linear --weights 0,0.1,0.2,0.3,0.4,0.5
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


#: Largest allowed drop from clean, in UAR points, per condition: the robustness issue's goals (at most 3
#: points at SNR 20 dB, 10 at 10 dB, 5 for telephone band and compression, and none for ±20 dB level
#: changes or added silence). snr5 and reverb have no limit.
LIMITS = {"snr20": 3.0, "snr10": 10.0, "telephone": 5.0, "ogg": 5.0, "mp3": 5.0,
          "gain+20": 0.0, "gain-20": 0.0, "silence": 0.0}


def load_robustness(work: Path, name: str) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Clips, true classes and ``{condition: probabilities}`` over the six folds of a robustness run."""
    run = work / f"robustness_{name}"
    folds = [json.loads(p.read_text()) for p in sorted(run.glob("fold_*.json"))]
    if len(folds) != 6 or any("probs" not in f for f in folds):
        raise SystemExit(f"{run}: expected 6 folds with probabilities; run benchmarks/robustness.py for {name}")
    paths = [c for f in folds for c in f["paths"]]
    y = np.concatenate([f["y_true"] for f in folds])
    probs = {k: np.concatenate([np.asarray(f["probs"][k]) for f in folds]) for k in folds[0]["probs"]}
    return paths, y, probs


def robustness(args, run: Run) -> int:
    from ser.labels import EMOTIONS

    paths_a, y, pa = load_robustness(Path(args.work), args.a)
    paths_b, y_b, pb = load_robustness(Path(args.work), args.b)
    if paths_a != paths_b or not np.array_equal(y, y_b):
        raise SystemExit("the two robustness runs cover different clips or folds")
    rows = []
    for w in (float(v) for v in args.weights.split(",")):
        uar = {k: scores(y, ((1 - w) * pa[k] + w * pb[k]).argmax(axis=1), EMOTIONS)["uar"] for k in pa}
        drops = {k: round(100 * (uar["clean"] - v), 1) for k, v in uar.items() if k != "clean"}
        over = [k for k, limit in LIMITS.items() if drops[k] > limit]
        rows.append({"weight_b": w, "clean_uar": uar["clean"], "drop_points": drops, "over_limits": over})
    result = {**run.header(), "protocol": "si6", "a": args.a, "b": args.b, "clips": len(y), "limits": LIMITS,
              "rows": rows, "note": "measured on the test folds: an ablation, not a model choice"}
    stem = Path(args.results) / f"fusion_{args.name or args.a + '+' + args.b}_robustness"
    write_json(stem.with_suffix(".json"), result)
    conditions = list(rows[0]["drop_points"])
    lines = [f"# Late fusion under degraded conditions (si6): `{args.a}` + w × `{args.b}`", "",
             f"`{result['command']}` — {result['date']}", "",
             "Drop from clean in UAR points; limits: " + ", ".join(f"{k} ≤ {v:g}" for k, v in LIMITS.items()), "",
             "| w | clean UAR | " + " | ".join(conditions) + " | over limits |",
             "|---|---|" + "---|" * len(conditions) + "---|"]
    lines += [f"| {r['weight_b']:g} | {r['clean_uar']:.3f} | " + " | ".join(f"{r['drop_points'][k]:+.1f}"
                                                                            for k in conditions)
              + f" | {', '.join(r['over_limits']) or 'none'} |" for r in rows]
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="results name of the first run (e.g. robust-ensemble5) or a "
                        "run folder")
    parser.add_argument("--b", required=True, help="results name of the second run (e.g. fast) or a run folder")
    parser.add_argument("--name", help="results name (default: <a>+<b>)")
    parser.add_argument("--weights", default="0,0.1,0.2,0.3,0.5,1", help="weights w of the second run")
    parser.add_argument("--robustness", action="store_true", help="fuse two robustness.py runs (see above)")
    parser.add_argument("--work", default=str(WORK))
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    run = Run("fusion")
    if args.robustness:
        return robustness(args, run)
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
