"""Leave one corpus out (``loco``): does training on four corpora in four languages transfer to a fifth voice?

Usage (from the repository root)::

    .venv/bin/python benchmarks/loco.py --preset robust --set train.ensemble=5 \\
        --set 'features.encoder_graph="int8-linear"' --name robust-ensemble5-int8-linear

Corpora: RAVDESS (English), EMOVO (Italian), ASED (Amharic), TurEV-DB (Turkish words), read from
``../shared/data``. For each left-out corpus (``--left-out``, default EMOVO, ASED and TurEV-DB), both heads
of the recipe (inductive, and speaker-adapted) are trained on all the other corpora (mixed label sets:
:func:`ser.training.fit` with the masked loss and corpus/speaker balance) and score the left-out corpus
over its own labels (argmax among them):

- ``uar``: the inductive head (``ser evaluate --protocol loco``);
- ``adapted_uar``: the adapted head, each test speaker standardised by statistics of all of their
  unlabelled clips, corrected for their emotion mix (``loco-adapt-all``; transductive, a separate line);
- ``adapted_uncorrected_uar``: the same adapted head with statistics not corrected for their emotion mix;
- ``ravdess_only_uar`` / ``ravdess_only_adapted_uar``: the same recipe trained on RAVDESS alone (one
  extra training, all 24 actors), scored on the same corpus the same way.

With ``--si6``, also ``si6+corpora``: the si6 folds of RAVDESS with the three other corpora added to every
training side (inductive head; RAVDESS test actors never seen), beside the same recipe's committed si6 on
RAVDESS alone (``benchmarks/results/accuracy_<name>_si6.json``) when there is one.

Writes ``benchmarks/results/loco_<name>.json`` (``"benchmark": "loco"``) and ``.md``; finished folds are kept
in ``runs/bench/loco_<name>/`` and reused on a rerun.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from _harness import ROOT, Run, recipe_config, recipe_parser, scores, setup_logging, write_json, write_text

log = logging.getLogger("loco")
SHARED = ROOT.parent / "shared" / "data"
CORPORA = ("ravdess", "emovo", "ased", "turev")


def per_corpus(rows: list, fold, y, corpora, classes) -> dict:
    """UAR, macro-F1 and accuracy of one row of a fold, per test corpus (first draw; loco rows have one)."""
    import numpy as np

    pos, pred = rows[0]
    idx = fold.test[np.asarray(pos, dtype=int)]
    pred = np.asarray(pred, dtype=int)
    return {corpus: scores(y[idx][corpora[idx] == corpus], pred[corpora[idx] == corpus], classes)
            for corpus in sorted(set(corpora[idx].tolist()))}


def main() -> int:
    parser = recipe_parser(__doc__, preset="robust")
    parser.add_argument("--left-out", nargs="+", default=["emovo", "ased", "turev"], choices=CORPORA)
    parser.add_argument("--si6", action="store_true", help="also run si6+corpora (inductive head)")
    parser.add_argument("--inductive-only", action="store_true",
                        help="an ablation: the inductive head on the loco folds only (no adapted head, no baseline)")
    args = parser.parse_args()
    setup_logging()
    run = Run("loco")
    import numpy as np

    from ser.cache import FeatureCache, default_cache_dir
    from ser.dataset import load_datasets
    from ser.labels import encode
    from ser.protocols import run_adaptation
    from ser.training import Fold, corpora_of, describe_device, loco_folds, speakers_of

    name = args.name or args.preset
    config = recipe_config(args).override({"speakers.adapted_head": True})
    clips = load_datasets([SHARED / c for c in CORPORA])
    corpora = corpora_of(clips)
    y = encode([c.label for c in clips], config.classes)
    cache = FeatureCache(default_cache_dir())
    folds = [f for f in loco_folds(clips) if f.corpus in args.left_out]
    if args.inductive_only:
        return inductive_only(clips, config, folds, cache, Path(args.work) / f"loco_{name}", run, args)
    left_out = np.flatnonzero(np.isin(corpora, args.left_out))
    # The baseline: the same recipe on RAVDESS alone, scored on every left-out corpus over its own labels.
    speakers = speakers_of(clips)
    baseline = Fold(len(CORPORA) + 1, np.flatnonzero(corpora == "ravdess"), left_out,
                    tuple(sorted(set(speakers[left_out].tolist()))), True, "ravdess-only")
    work = Path(args.work) / f"loco_{name}"
    result = run_adaptation(clips, config, ["loco", "loco-adapt-all"], [*folds, baseline], out_dir=work,
                            cache=cache, progress=True, draws=1)
    saved = {f["fold"]: f for f in result["folds"]}
    only = {row: per_corpus(saved[baseline.number]["rows"][row], baseline, y, corpora, config.classes)
            for row in ("loco", "loco-adapt-all")}
    per = {}
    for fold in folds:
        rows = saved[fold.number]["rows"]
        ind = per_corpus(rows["loco"], fold, y, corpora, config.classes)[fold.corpus]
        ada = per_corpus(rows["loco-adapt-all"], fold, y, corpora, config.classes)[fold.corpus]
        raw = (per_corpus(rows["loco-adapt-all:uncorrected"], fold, y, corpora, config.classes)[fold.corpus]
               if "loco-adapt-all:uncorrected" in rows else None)
        labels = sorted({config.classes[i] for i in y[fold.test]}, key=config.classes.index)
        per[fold.corpus] = {
            "labels": labels, "clips": ind["clips"], "test_speakers": len(fold.test_speakers),
            "trained_on": sorted(set(corpora[fold.train].tolist())),
            "uar": ind["uar"], "adapted_uar": ada["uar"],
            **({"adapted_uncorrected_uar": raw["uar"]} if raw else {}),
            "ravdess_only_uar": only["loco"][fold.corpus]["uar"],
            "ravdess_only_adapted_uar": only["loco-adapt-all"][fold.corpus]["uar"],
            "gain_points": round(100 * (ind["uar"] - only["loco"][fold.corpus]["uar"]), 1),
            "inductive": ind, "adapted": ada, "ravdess_only": only["loco"][fold.corpus],
            "ravdess_only_adapted": only["loco-adapt-all"][fold.corpus],
            "train_s": saved[fold.number].get("train_s"), "resumed": bool(saved[fold.number].get("resumed"))}
    out = {"preset": args.preset, "name": name,
           "data": {c: int((corpora == c).sum()) for c in CORPORA},
           "what": "leave one corpus out: trained on the other corpora (masked loss over each corpus's labels, "
                   "corpus- and speaker-balanced), scored on the left-out corpus over its own labels; adapted: "
                   "each test speaker standardised by all of their unlabelled clips (mix-corrected); "
                   "ravdess_only: the same recipe trained on RAVDESS alone",
           "left_out": per, "ravdess_only_train_s": saved[baseline.number].get("train_s"),
           "config": result["config"]}
    if args.si6:
        out["si6+corpora"] = si6_corpora(clips, config, cache, work, args)
    # The header last, so that wall_s covers everything; folds resumed from an earlier run say so (and their
    # own train_s), and train_s_total sums the training time of every fold whoever ran it.
    folds_train_s = [f.get("train_s") or 0 for f in result["folds"]]
    folds_train_s += [f["train_s"] or 0 for f in out.get("si6+corpora", {}).get("folds", [])]
    out = {**run.header(device=describe_device()), "folds_resumed": sum(bool(f.get("resumed"))
                                                                          for f in result["folds"]),
           "train_s_total": round(sum(folds_train_s), 1),
           "load_average_at_end": [round(v, 2) for v in os.getloadavg()], **out}
    results = Path(args.results)
    write_json(results / f"loco_{name}.json", out)
    write_text(results / f"loco_{name}.md", render(out))
    print(render(out))
    return 0


def inductive_only(clips, config, folds, cache, work: Path, run: Run, args) -> int:
    """The inductive head's loco UAR per left-out corpus (``loco_<name>.json`` with ``uar`` only)."""
    from ser.evaluation import fold_predicted, metrics
    from ser.training import cross_validate, describe_device, prepare_features

    plain = config.override({"speakers.adapted_head": False})
    x, augmented = prepare_features(clips, plain, cache=cache)
    results = cross_validate(clips, plain, folds, x=x, augmented=augmented, out_dir=work)
    per = {}
    for fold, r in zip(folds, results):
        m = metrics(r["y_true"], fold_predicted(r), plain.classes)
        per[fold.corpus] = {"uar": round(m["uar"], 4), "macro_f1": round(m["macro_f1"], 4),
                            "accuracy": round(m["accuracy"], 4), "clips": m["n"], "train_s": r["train_s"]}
    out = {**run.header(device=describe_device()), "preset": args.preset, "name": args.name or args.preset,
           "what": "ablation: the inductive head only, loco folds", "left_out": per, "config": plain.to_dict()}
    write_json(Path(args.results) / f"loco_{out['name']}.json", out)
    print(json.dumps(per, indent=2))
    return 0


def si6_corpora(clips, config, cache, work: Path, args) -> dict:
    """``si6+corpora`` with the inductive head, beside the committed si6 of the same recipe on RAVDESS alone."""
    from ser.evaluation import summarize
    from ser.training import cross_validate, make_folds, prepare_features

    plain = config.override({"speakers.adapted_head": False})
    folds = make_folds(clips, "si6+corpora")
    x, augmented = prepare_features(clips, plain, cache=cache)
    results = cross_validate(clips, plain, folds, x=x, augmented=augmented, out_dir=work / "si6+corpora")
    summary = summarize(results, plain.classes)
    keys = ("uar", "macro_f1", "accuracy")
    out = {"protocol": "si6+corpora", "pooled": {k: round(summary["pooled"][k], 4) for k in keys},
           "clips": summary["pooled"]["n"], "folds_resumed": sum(bool(r.get("resumed")) for r in results),
           "folds": [{"fold": f["fold"], "test_speakers": f["test_speakers"], **{k: round(f[k], 4) for k in keys},
                      "train_s": f["train_s"]} for f in summary["folds"]]}
    committed = Path(args.results) / f"accuracy_{args.name or args.preset}_si6.json"
    if committed.exists():
        before = json.loads(committed.read_text())["pooled"]
        out["ravdess_only_si6"] = {"source": f"benchmarks/results/{committed.name}", **{k: before[k] for k in keys}}
    return out


def render(out: dict) -> str:
    m = out["machine"]
    lines = [f"# Leave one corpus out — `{out['name']}`", "",
             f"`{out['command']}` — {out['date']}, {m['cpus']} CPUs ({m['cpu_model']}), {out['wall_s']:.0f} s "
             f"({out['folds_resumed']} loco folds resumed from an earlier run; training time of all folds "
             f"{out['train_s_total']:.0f} s, on a machine shared with other jobs)", "",
             "| left out | labels | clips | trained on | UAR | adapted UAR | RAVDESS-only UAR | RAVDESS-only adapted |"
             " gain (points) |", "|---|---|---|---|---|---|---|---|---|"]
    for corpus, r in out["left_out"].items():
        lines.append(f"| {corpus} | {', '.join(r['labels'])} | {r['clips']} | {', '.join(r['trained_on'])} | "
                     f"**{r['uar']:.3f}** | {r['adapted_uar']:.3f} | {r['ravdess_only_uar']:.3f} | "
                     f"{r['ravdess_only_adapted_uar']:.3f} | {r['gain_points']:+.1f} |")
    if "si6+corpora" in out:
        s = out["si6+corpora"]
        base = s.get("ravdess_only_si6")
        lines += ["", f"si6+corpora (RAVDESS test actors, the other corpora on every training side): UAR "
                      f"**{s['pooled']['uar']:.3f}**, macro-F1 {s['pooled']['macro_f1']:.3f}, accuracy "
                      f"{s['pooled']['accuracy']:.3f}"
                  + (f"; the same recipe on RAVDESS alone ({base['source']}): UAR {base['uar']:.3f}" if base else "")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
