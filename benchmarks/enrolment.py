"""Enrolment speed and profile size of the bundled model (or another model folder).

Usage (from the repository root)::

    .venv/bin/python benchmarks/enrolment.py

Figures (written to ``benchmarks/results/enrolment_<name>.json``):

- ``enrol_10_clips_s``: ``Recognizer.enrol`` from 10 RAVDESS clips (one actor's neutral and
  calm clips, as an enrolment holds), model already loaded, median of 5;
- ``cli_enrol_10_clips_wall_s``: ``ser speakers enrol NAME <10 files>`` as a whole process, median of 3;
- ``profile_bytes``: size of the profile file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import DATA, RESULTS, ROOT, Run, write_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the bundled model)")
    parser.add_argument("--name", default="default")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    run = Run("enrolment")
    from ser.inference import Recognizer
    from ser.speakers import enrol

    # Actor 1's neutral (01) and calm (02) clips: the first 10 of them.
    clips = sorted(p for p in (Path(args.data) / "Actor_01").glob("*.flac") if p.name.split("-")[2] in ("01", "02"))
    clips = clips[:10]
    rec = Recognizer.load(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            profile = enrol(rec, "actor01", clips, folder=tmp)
            times.append(time.perf_counter() - t)
        size = (Path(tmp) / "actor01.npz").stat().st_size
        argv = [str(ROOT / ".venv" / "bin" / "ser"), "speakers", "enrol", "cli01", *map(str, clips), "-q",
                "--speakers-dir", tmp] + (["--model", args.model] if args.model else [])
        walls = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            walls.append(time.perf_counter() - t)
    result = {
        **run.header(), "model": args.name,
        "clips": [p.name for p in clips], "profile_clips": profile.stats.n,
        "enrol_10_clips_s": round(statistics.median(times), 3), "enrol_10_clips_s_runs": [round(t, 3) for t in times],
        "cli_enrol_10_clips_wall_s": round(statistics.median(walls), 3), "profile_bytes": size,
    }
    write_json(Path(args.results) / f"enrolment_{args.name}.json", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
