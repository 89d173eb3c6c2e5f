"""Speaker adaptation benchmark: si6 folds, scored with and without speaker statistics.

Usage (from the repository root)::

    .venv/bin/python benchmarks/adaptation.py --preset accurate --name accurate

The protocols are library code (:mod:`ser.protocols`; one of them alone: ``ser evaluate --protocol
si6-adapt-20``); this script runs them all on the same heads. For each EmoBox ``si6`` fold, the
inductive head and the speaker-adapted head are trained on the training actors only (the adapted
head with every training actor standardised by their own statistics). Test actors are then scored under:

- ``si6``: the inductive head on all clips (the headline protocol);
- ``si6-prior``: the adapted head with no speaker statistics (the training speakers' prior);
- ``si6-enrol``: statistics from each test actor's neutral + calm clips (an enrolment), scored on
  their other 48 clips;
- ``si6-adapt-k`` (k = 5, 10, 20): statistics from k random unlabelled clips of the actor, scored on
  the rest, averaged over 5 draws;
- ``si6-adapt-all``: statistics from all of the actor's clips (``ser predict --adapt`` over a folder
  per speaker);
- ``si6-onesided``: statistics from the actor's clips of one emotion only (each emotion in turn, one
  draw each), scored on all 60 of their clips — where plain standardisation erases the emotion;
- ``channel-shift``: every test actor's audio through one random channel (EQ, band limit, codec,
  noise; :func:`ser.augment.random_channel`), scored by the inductive head and by the adapted one
  (statistics from the actor's shifted clips).

Each adapted row carries its ``baseline``: the inductive head on exactly the same clips. No test
label is used except to pick the enrolment and one-emotion clips (the protocols' definitions). With
``speakers.correct_mix`` (the default), adapted rows also carry ``uncorrected``: the same adapted head
with statistics not corrected for their emotion mix. ``--protocols`` runs a subset. Writes
``benchmarks/results/adaptation_<name>_<protocol>.json`` per protocol and ``adaptation_<name>.md``;
finished folds are kept in ``runs/bench/adaptation_<name>/fold_N/result.json`` and reused on a
rerun. (Work folders of the script before it called :mod:`ser.protocols` kept other files and are
not reused.) In ``per_fold``, a row with draws gives its first draw's UAR as ``uar`` (as earlier
files did) and every draw's in ``uar_draws``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from _harness import Run, recipe_config, recipe_parser, setup_logging, write_json, write_text

log = logging.getLogger("adaptation")
KS = (5, 10, 20)
PROTOCOLS = ["si6", "si6-prior", "si6-enrol", *(f"si6-adapt-{k}" for k in KS), "si6-adapt-all", "si6-onesided",
             "channel-shift"]


def _row(summary: dict) -> dict:
    """A pooled summary of :func:`ser.protocols.run_adaptation` in the result files' terms."""
    out = {k: round(summary[k], 4) for k in ("uar", "macro_f1", "accuracy")}
    if "draws" in summary:
        out["uar_std_over_draws"] = round(summary["uar_std_over_draws"], 4)
        out["draws"] = [{**{k: round(d[k], 4) for k in ("uar", "macro_f1", "accuracy")}, "clips": d["n"]}
                        for d in summary["draws"]]
    return {**out, "clips": summary["n"]}


def main() -> int:
    parser = recipe_parser(__doc__, preset="accurate")
    parser.add_argument("--protocols", nargs="+", default=PROTOCOLS, choices=PROTOCOLS, metavar="PROTOCOL",
                        help=f"a subset of {', '.join(PROTOCOLS)}")
    args = parser.parse_args()
    protocols = [p for p in PROTOCOLS if p in args.protocols]
    setup_logging()
    run = Run("adaptation")

    from ser.cache import FeatureCache, default_cache_dir
    from ser.dataset import load_dataset
    from ser.protocols import run_adaptation
    from ser.training import describe_device, si6_folds, speakers_of

    name = args.name or args.preset
    config = recipe_config(args)
    clips = load_dataset(args.data)
    folds = si6_folds(clips)
    result = run_adaptation(clips, config, protocols, folds, out_dir=Path(args.work) / f"adaptation_{name}",
                            cache=FeatureCache(default_cache_dir()), progress=True)
    meta = {**run.header(device=describe_device()), "preset": args.preset, "config": result["config"],
            "data": f"RAVDESS speech, {len(clips)} clips, {len(set(speakers_of(clips).tolist()))} actors",
            "folds_resumed": sum(bool(f.get("resumed")) for f in result["folds"]),
            "train_s_total": round(sum(f.get("train_s") or 0 for f in result["folds"]), 1)}
    out = Path(args.results)
    lines = [f"# Speaker adaptation, `{name}` (si6 folds, RAVDESS)", "",
             (f"`{meta['command']}` — {meta['date']}, {meta['machine']['cpus']} CPUs "
              f"({meta['machine']['cpu_model']}), {meta['wall_s']:.0f} s"), "",
             "| protocol | UAR | macro-F1 | accuracy | clips | inductive head, same clips (UAR) | adapted, "
             "uncorrected statistics (UAR) |", "|---|---|---|---|---|---|---|"]
    results = {}
    for protocol in protocols:
        r = result["protocols"][protocol]
        row = {"benchmark": "adaptation", "protocol": protocol, **_row(r["pooled"])}
        if protocol == "channel-shift":
            clean, shifted = _row(r["clean"]), _row(r["baseline"])
            lost = clean["uar"] - shifted["uar"]
            row.update(inductive_clean=clean, inductive_shifted=shifted, uar_lost_to_channel=round(lost, 4),
                       uar_recovered=round(row["uar"] - shifted["uar"], 4),
                       recovered_fraction=round((row["uar"] - shifted["uar"]) / lost, 3) if lost > 0 else None,
                       what="each test actor's audio through one random channel (EQ, band limit, codec, noise); "
                            "adapted: statistics from all of the actor's shifted clips")
        elif "baseline" in r:
            row["baseline"] = {"what": "inductive head on the same clips", **_row(r["baseline"])}
        if "uncorrected" in r:
            row["uncorrected"] = {"what": r["uncorrected"]["what"], **_row(r["uncorrected"])}
        row.update(meta, per_fold=[{"fold": f["fold"], "test_speakers": f["test_speakers"],
                                    "uar": round(f["uar_draws"][0] if "uar_draws" in f else f["uar"], 4),
                                    **({"uar_draws": [round(u, 4) for u in f["uar_draws"]]}
                                       if "uar_draws" in f else {})} for f in r["folds"]])
        results[protocol] = row
        write_json(out / f"adaptation_{name}_{protocol}.json", row)
        base = row.get("baseline", {}).get("uar")
        spread = f" ± {row['uar_std_over_draws']:.3f}" if "uar_std_over_draws" in row else ""
        raw = row.get("uncorrected", {}).get("uar")
        lines.append(f"| {protocol} | {row['uar']:.3f}{spread} | {row['macro_f1']:.3f} | {row['accuracy']:.3f} | "
                     f"{row['clips']} | {'' if base is None else f'{base:.3f}'} | {'' if raw is None else f'{raw:.3f}'} |")
    cs = results.get("channel-shift")
    if cs is not None:
        fraction = cs["recovered_fraction"] if cs["recovered_fraction"] is not None else "n/a"
        lines += ["", (f"Channel shift: inductive UAR {cs['inductive_clean']['uar']:.3f} clean → "
                       f"{cs['inductive_shifted']['uar']:.3f} through the channels "
                       f"(−{cs['uar_lost_to_channel']:.3f}); adapted {cs['uar']:.3f}: recovers "
                       f"{cs['uar_recovered']:+.3f} ({fraction} of the loss)."), ""]
    write_text(out / f"adaptation_{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
