"""Speaker adaptation benchmark: si6 folds, scored with and without speaker statistics.

Usage (from the repository root)::

    .venv/bin/python benchmarks/adaptation.py --preset accurate --name accurate

For each EmoBox ``si6`` fold, the inductive head and the speaker-adapted head are
trained on the training actors only (the adapted head with every training actor
standardised by their own statistics). Test actors are then scored under:

- ``si6``: the inductive head on all clips (the headline protocol);
- ``si6-enrol``: statistics from each test actor's neutral + calm clips (an
  enrolment), scored on their other 48 clips;
- ``si6-adapt-k`` (k = 5, 10, 20): statistics from k random unlabelled clips of the
  actor, scored on the rest, averaged over 5 draws;
- ``si6-adapt-all``: statistics from all of the actor's clips (``ser predict --adapt``
  over a folder per speaker);
- ``channel-shift``: every test actor's audio through one random channel (EQ, band
  limit, codec, noise; :func:`ser.augment.random_channel`), scored by the inductive
  head and by the adapted one (statistics from the actor's shifted clips).

Each adapted row carries its ``baseline``: the inductive head on exactly the same
clips. No test label is used except to pick the enrolment clips (the protocol's
definition). Writes ``benchmarks/results/adaptation_<name>_<protocol>.json`` per
protocol and ``adaptation_<name>.md``; finished folds are kept in ``runs/bench/``
and reused on a rerun.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from recipe import recipe_config, recipe_parser

log = logging.getLogger("adaptation")
KS = (5, 10, 20)
DRAWS = 5


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """UAR, macro-F1 (over the classes present) and accuracy."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    return {"uar": round(float(balanced_accuracy_score(y_true, y_pred)), 4),
            "macro_f1": round(float(f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true))), 4),
            "accuracy": round(float(accuracy_score(y_true, y_pred)), 4), "clips": int(y_true.size)}


def fold_predictions(config, x, x_channel, aug, y, speakers, fold, enrol) -> dict:
    """Train both heads on the fold's training side; predictions of every protocol on its test actors.

    Returns ``{row: [[indices, predictions], ...]}`` (one pair per draw).
    """
    from ser.speakers import SpeakerStats
    from ser.training import fit, fit_adapted, predict_proba

    inductive, _ = fit(config, x, y, speakers, fold.train, augmented=aug)
    adapted, _, norm = fit_adapted(config, x, y, speakers, fold.train, augmented=aug)

    def ind(feats, idx):
        return predict_proba(inductive, feats[idx]).argmax(axis=1)

    def ada(feats, idx, stats_idx, kind="adapt"):
        stats = SpeakerStats.of(feats[stats_idx]) if stats_idx is not None else None
        return predict_proba(adapted, norm.normalize(feats[idx], stats, kind)).argmax(axis=1)

    rows: dict[str, list] = {}

    def add(name, draw, idx, pred):
        entry = rows.setdefault(name, [])
        while len(entry) <= draw:
            entry.append([[], []])
        entry[draw][0] += idx.tolist()
        entry[draw][1] += pred.tolist()

    for actor in fold.test_speakers:
        own = np.flatnonzero(speakers == actor)
        add("si6", 0, own, ind(x, own))
        add("si6-prior", 0, own, ada(x, own, None))
        add("si6-adapt-all", 0, own, ada(x, own, own))
        calm, rest = own[enrol[own]], own[~enrol[own]]
        add("si6-enrol", 0, rest, ada(x, rest, calm, "enrol"))
        add("si6-enrol:baseline", 0, rest, ind(x, rest))
        for k in KS:
            for draw in range(DRAWS):
                rng = np.random.default_rng([draw, k, int(actor) if actor.isdigit() else 0])
                chosen = np.sort(rng.choice(own, size=k, replace=False))
                left = np.setdiff1d(own, chosen)
                add(f"si6-adapt-{k}", draw, left, ada(x, left, chosen))
                add(f"si6-adapt-{k}:baseline", draw, left, ind(x, left))
        add("channel-shift:clean", 0, own, ind(x, own))
        add("channel-shift:inductive", 0, own, ind(x_channel, own))
        add("channel-shift", 0, own, ada(x_channel, own, own))
    return rows


def main() -> int:
    args = recipe_parser(__doc__, preset="accurate").parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from ser.cache import FeatureCache, default_cache_dir
    from ser.frontend import compute_features
    from ser.dataset import load_dataset
    from ser.labels import encode
    from ser.training import enrol_mask, prepare_features, si6_folds, speakers_of
    from ser.utils import atomic_write_text

    start = time.perf_counter()
    name = args.name or args.preset
    config = recipe_config(args)
    cache = FeatureCache(default_cache_dir())
    clips = load_dataset(args.data)
    x, aug = prepare_features(clips, config, cache=cache, progress=True)
    y = encode([c.label for c in clips], config.classes)
    speakers = speakers_of(clips)
    # One channel per actor (seeded by the actor), the same for all of their clips.
    x_channel = np.empty_like(x)
    for actor in sorted(set(speakers.tolist())):
        own = np.flatnonzero(speakers == actor)
        x_channel[own] = compute_features([clips[i].path for i in own], config, cache=cache,
                                          condition=f"channel{int(actor)}")[0]
    enrol = enrol_mask(y, config.classes)
    work = Path(args.work) / f"adaptation_{name}"
    rows: dict[str, list] = {}
    per_fold = []
    for fold in si6_folds(clips):
        path = work / f"fold_{fold.number}.json"
        key = json.dumps(config.to_dict(), sort_keys=True)
        saved = json.loads(path.read_text()) if path.exists() else None
        if saved is None or saved.get("config") != key:
            t = time.perf_counter()
            saved = {"config": key, "rows": fold_predictions(config, x, x_channel, aug, y, speakers, fold, enrol),
                     "train_s": round(time.perf_counter() - t, 1)}
            atomic_write_text(path, json.dumps(saved) + "\n")
        log.info("fold %d done (%.0f s)", fold.number, saved["train_s"])
        per_fold.append({"fold": fold.number, "test_speakers": list(fold.test_speakers), "train_s": saved["train_s"],
                         **{r: scores(y[np.array(d[0][0])], np.array(d[0][1]))["uar"]
                            for r, d in saved["rows"].items() if ":" not in r}})
        for row, draws in saved["rows"].items():
            entry = rows.setdefault(row, [[[], []] for _ in draws])
            for d, (idx, pred) in enumerate(draws):
                entry[d][0] += idx
                entry[d][1] += pred

    def summary(row):
        per_draw = [scores(y[np.array(idx)], np.array(pred)) for idx, pred in rows[row]]
        out = {k: round(float(np.mean([s[k] for s in per_draw])), 4) for k in ("uar", "macro_f1", "accuracy")}
        if len(per_draw) > 1:
            out["uar_std_over_draws"] = round(float(np.std([s["uar"] for s in per_draw])), 4)
            out["draws"] = per_draw
        return {**out, "clips": per_draw[0]["clips"]}

    meta = {"command": "python benchmarks/adaptation.py " + shlex.join(sys.argv[1:]), "date": date.today().isoformat(),
            "machine": {"cpus": os.cpu_count(), "gpu": None}, "preset": args.preset, "config": config.to_dict(),
            "data": f"RAVDESS speech, {len(clips)} clips, {len(set(speakers.tolist()))} actors",
            "wall_s": round(time.perf_counter() - start, 1)}
    results = {}
    for protocol in ["si6", "si6-prior", "si6-enrol", *(f"si6-adapt-{k}" for k in KS), "si6-adapt-all"]:
        result = {"benchmark": "adaptation", "protocol": protocol, **summary(protocol)}
        if f"{protocol}:baseline" in rows:
            result["baseline"] = {"what": "inductive head on the same clips", **summary(f"{protocol}:baseline")}
        results[protocol] = result
    clean, shifted = summary("channel-shift:clean"), summary("channel-shift:inductive")
    adapted = summary("channel-shift")
    lost = clean["uar"] - shifted["uar"]
    results["channel-shift"] = {
        "benchmark": "adaptation", "protocol": "channel-shift", **adapted,
        "inductive_clean": clean, "inductive_shifted": shifted,
        "uar_lost_to_channel": round(lost, 4), "uar_recovered": round(adapted["uar"] - shifted["uar"], 4),
        "recovered_fraction": round((adapted["uar"] - shifted["uar"]) / lost, 3) if lost > 0 else None,
        "what": "each test actor's audio through one random channel (EQ, band limit, codec, noise); adapted: "
                "statistics from all of the actor's shifted clips"}
    out = Path(args.results)
    lines = [f"# Speaker adaptation, `{name}` (si6 folds, RAVDESS)", "",
             f"`{meta['command']}` — {meta['date']}, {meta['machine']['cpus']} CPUs, {meta['wall_s']:.0f} s", "",
             "| protocol | UAR | macro-F1 | accuracy | clips | inductive head, same clips (UAR) |",
             "|---|---|---|---|---|---|"]
    for protocol, result in results.items():
        result.update(meta, per_fold=[{"fold": f["fold"], "test_speakers": f["test_speakers"],
                                       "uar": f.get(protocol, f.get("channel-shift"))} for f in per_fold])
        atomic_write_text(out / f"adaptation_{name}_{protocol}.json", json.dumps(result, indent=2) + "\n")
        base = result.get("baseline", {}).get("uar")
        spread = f" ± {result['uar_std_over_draws']:.3f}" if "uar_std_over_draws" in result else ""
        lines.append(f"| {protocol} | {result['uar']:.3f}{spread} | {result['macro_f1']:.3f} | "
                     f"{result['accuracy']:.3f} | {result['clips']} | {'' if base is None else f'{base:.3f}'} |")
    cs = results["channel-shift"]
    fraction = cs["recovered_fraction"] if cs["recovered_fraction"] is not None else "n/a"
    lines += ["", (f"Channel shift: inductive UAR {cs['inductive_clean']['uar']:.3f} clean → "
                   f"{cs['inductive_shifted']['uar']:.3f} through the channels (−{cs['uar_lost_to_channel']:.3f}); "
                   f"adapted {cs['uar']:.3f}: recovers {cs['uar_recovered']:+.3f} ({fraction} of the loss)."), ""]
    atomic_write_text(out / f"adaptation_{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
