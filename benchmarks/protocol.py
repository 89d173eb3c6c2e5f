"""One protocol through the command line, as a user runs it: ``ser evaluate --protocol P`` on a recipe.

Usage (from the repository root)::

    .venv/bin/python benchmarks/protocol.py --preset robust --set speakers.adapted_head=true \\
        --set train.ensemble=5 --name robust-ensemble5 --protocol si6-adapt-20

Runs ``python -m ser evaluate --data DATA --config PRESET --set … --protocol P --out
runs/bench/protocol_<name>_<P>`` as a separate process (its own output goes to this one's), then writes
``benchmarks/results/protocol_<name>_<P>.json`` and ``.md``: the harness header (command, date,
machine, wall time of the whole process), the ``ser`` command, the report's pooled figures, baseline and
folds, and — where ``benchmarks/results/adaptation_<name>_<P>.json`` or ``accuracy_<name>_<P>.json``
holds the figure of the same recipe measured by the benchmark scripts — that figure and the difference.
A rerun resumes the finished folds (``ser evaluate`` does).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from _harness import ROOT, Run, recipe_parser, write_json, write_text


def main() -> int:
    parser = recipe_parser(__doc__, preset="robust")
    parser.add_argument("--protocol", required=True, help="any name `ser evaluate --protocol` takes")
    parser.add_argument("--partial-folds", action="store_true")
    args = parser.parse_args()
    run = Run("protocol")
    name = args.name or args.preset
    stem = f"protocol_{name}_{args.protocol}"
    out = Path(args.work) / stem
    argv = ["evaluate", "--data", args.data, "--config", args.preset, *(a for s in args.set for a in ("--set", s)),
            "--protocol", args.protocol, "--out", str(out), *(["--partial-folds"] if args.partial_folds else [])]
    code = subprocess.run([sys.executable, "-m", "ser", *argv], cwd=ROOT).returncode
    if code:
        raise SystemExit(f"ser {shlex.join(argv)}: exit code {code}")
    report = json.loads((out / "report.json").read_text())
    s = report["summary"]
    keys = ("uar", "macro_f1", "accuracy")
    result = {**run.header(device=report["device"]), "ser_command": "ser " + shlex.join(argv),
              "protocol": args.protocol, "partial": report.get("partial", False), "preset": args.preset,
              "name": name, "clips": report["clips"], "report_wall_s": report["wall_s"],
              "folds_resumed": sum(bool(f.get("resumed")) for f in s["folds"]),
              "pooled": {k: round(s["pooled"][k], 4) for k in keys},
              **({"uar_std_over_draws": round(s["pooled"]["uar_std_over_draws"], 4)}
                 if "uar_std_over_draws" in s["pooled"] else {}),
              **({"baseline": {k: round(report["baseline"][k], 4) for k in keys}} if "baseline" in report else {}),
              "folds": [{"fold": f["fold"], "test_speakers": f["test_speakers"], "n": f["n"],
                         **{k: round(f[k], 4) for k in keys}, "train_s": f["train_s"]} for f in s["folds"]],
              "per_class": s["pooled"]["per_class"], "confusion": s["pooled"]["confusion"],
              "classes": report["classes"], "config": report["config"]}
    for kind in ("adaptation", "accuracy"):
        committed = Path(args.results) / f"{kind}_{name}_{args.protocol}.json"
        if committed.exists():
            before = json.loads(committed.read_text())
            figure = before.get("pooled", before)
            result["committed"] = {"source": f"benchmarks/results/{committed.name}", "date": before.get("date"),
                                   **{k: figure[k] for k in keys},
                                   "difference": {k: round(result["pooled"][k] - figure[k], 4) for k in keys}}
            break
    results = Path(args.results)
    write_json(results / f"{stem}.json", result)
    p, m = result["pooled"], result["machine"]
    lines = [f"# `ser evaluate --protocol {args.protocol}` — `{name}`", "",
             f"- command: `{result['command']}`, which ran `{result['ser_command']}`",
             f"- {result['date']}, {m['cpus']} CPUs ({m['cpu_model']}), GPU: {m['gpu'] or 'none'}, device: "
             f"{m['device']}; wall time {result['wall_s']:.0f} s ({result['folds_resumed']} folds resumed)", "",
             f"UAR **{p['uar']:.3f}**" + (f" ± {result['uar_std_over_draws']:.3f} over draws"
                                          if "uar_std_over_draws" in result else "")
             + f", macro-F1 {p['macro_f1']:.3f}, accuracy {p['accuracy']:.3f}"
             + (f"; inductive head on the same clips: UAR {result['baseline']['uar']:.3f}" if "baseline" in result
                else "")]
    if "committed" in result:
        c = result["committed"]
        lines += ["", f"Committed figure ({c['source']}, {c['date']}): UAR {c['uar']:.3f}, macro-F1 "
                      f"{c['macro_f1']:.3f}, accuracy {c['accuracy']:.3f}; "
                      f"difference UAR {c['difference']['uar']:+.4f}."]
    lines += ["", "| fold | test speakers | n | UAR | macro-F1 | accuracy | train s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {f['fold']} | {', '.join(f['test_speakers'])} | {f['n']} | {f['uar']:.3f} | {f['macro_f1']:.3f} | "
              f"{f['accuracy']:.3f} | {f['train_s']} |" for f in result["folds"]]
    write_text(results / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
