"""Scaling benchmark of ``ser batch`` on Ray: 1 → 2 workers, and its overhead against ``ser predict``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/scale.py --model fast --one-job
    .venv/bin/python benchmarks/scale.py --model default --repeat 2

A local Ray cluster (one node with 2 CPUs, on the loopback interface) is started first and
kept for every run, as a real deployment keeps its cluster; its start is not timed. ``ser predict
--jobs 2``, 1 worker and 2 workers are measured ``--repeat`` times in a rotating order and the
medians reported (every run is kept under ``"runs"``). Figures
(written to ``benchmarks/results/scale_<model>.json``):

- ``ser_predict_clips_per_s`` (and ``..._1_job``, once, with ``--one-job``): ``ser predict -q --csv
  --jobs 2`` (``--jobs 1``) over the clips, whole process (model load included), clips / wall time;
- ``clips_per_s_1_worker`` / ``clips_per_s_2_workers``: :func:`ser.batch.score_archive` with 1 or
  2 actors (one CPU each) into a fresh Parquet folder, clips / job wall time (actor start and model
  load included, the connection to the running cluster not);
- ``startup_s_*``: seconds from the job's start to its first rows written (connection, actors
  started, models loaded, first chunk scored), and ``steady_clips_per_s_*``: the rate after
  that, which a long job runs at;
- ``parallel_efficiency`` = clips/s with 2 workers ÷ (2 × clips/s with 1);
  ``overhead`` = 1 − Ray's clips/s with 2 workers ÷ ``ser predict``'s with 2 jobs (equal cores);
- ``max_abs_score_diff`` / ``labels_equal``: Ray's rows against ``ser predict``'s CSV;
- ``load_before`` / ``load_after``: the machine's load averages (1, 5, 15 min): other work on a
  shared machine slows every figure, so compare figures of one file, not across files.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _harness import DATA, RESULTS, ROOT

LOOPBACK = "127.0.0.2"  # loopback; Ray replaces 127.0.0.1 itself by the machine's network address


def ser_predict(files: list[str], model: str, jobs: int) -> tuple[float, dict[str, list[str]]]:
    """Wall seconds of a whole ``ser predict`` process, and its CSV rows by source."""
    argv = [sys.executable, "-m", "ser", "predict", "-q", "--csv", "--model", model, "--jobs", str(jobs), *files]
    start = time.perf_counter()
    proc = subprocess.run(argv, check=False, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{shlex.join(argv[:8])} ... failed: {proc.stderr[-2000:]}")
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    return wall, {r[0]: r for r in rows[1:]}


def ray_job(files: list[str], model: str, workers: int, out: Path, address: str) -> dict:
    from ser.batch import score_archive

    shutil.rmtree(out, ignore_errors=True)
    s = score_archive(files, out, model=model, workers=workers, address=address)
    assert s["written"] == len(files), s
    return s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="bundled model name or model folder")
    parser.add_argument("--name", help="results name (default: the model)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--clips", type=int, default=None, help="first N clips, sorted by path (default: all)")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--one-job", action="store_true", help="also time ser predict --jobs 1 (once)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the three measurements (medians reported)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    os.environ["PYTHONPATH"] = str(ROOT / "src")  # the Ray workers import this checkout's ser
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import pyarrow.parquet as pq
    import ray
    from ray.cluster_utils import Cluster

    start = time.perf_counter()
    files = sorted(str(p) for p in Path(args.data).glob("Actor_*/*.*"))[:args.clips]
    name = args.name or Path(args.model).name
    result = {"benchmark": "scale", "command": "python " + shlex.join(["benchmarks/scale.py", *sys.argv[1:]]),
              "date": date.today().isoformat(), "machine": {"cpus": os.cpu_count(), "gpu": None},
              "model": name, "clips": len(files), "load_before": [round(x, 2) for x in os.getloadavg()]}

    if args.one_job:
        wall1, _ = ser_predict(files, args.model, 1)
        result["ser_predict_clips_per_s_1_job"] = round(len(files) / wall1, 2)

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "node_ip_address": LOOPBACK, "include_dashboard": False,
        "object_store_memory": 200 * 1024 * 1024})
    runs: dict[str, list] = {"predict": [], "1_worker": [], "2_workers": []}
    try:
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        with tempfile.TemporaryDirectory(prefix="ser-scale-") as tmp:
            for r in range(args.repeat):
                # The three measurements in a rotating order: the machine's load drifts over a run.
                for what in (["predict", "1_worker", "2_workers"] * 2)[r % 3:r % 3 + 3]:
                    if what == "predict":
                        wall, predicted = ser_predict(files, args.model, 2)
                        runs["predict"].append(round(len(files) / wall, 2))
                        continue
                    s = ray_job(files, args.model, 1 if what == "1_worker" else 2, Path(tmp) / "r.parquet",
                                cluster.address)
                    runs[what].append({"clips_per_s": round(len(files) / s["wall_s"], 2), "wall_s": s["wall_s"],
                                       "startup_s": s["first_rows_s"], "steady_clips_per_s": s["steady_files_per_s"]})
                    rows = {r["source"]: r for r in pq.read_table(Path(tmp) / "r.parquet").to_pylist()}
    finally:
        ray.shutdown()
        cluster.shutdown()
    result["ser_predict_clips_per_s"] = statistics.median(runs["predict"])
    for key in ("1_worker", "2_workers"):
        result[f"clips_per_s_{key}"] = statistics.median(x["clips_per_s"] for x in runs[key])
        result[f"startup_s_{key}"] = statistics.median(x["startup_s"] for x in runs[key])
        result[f"steady_clips_per_s_{key}"] = statistics.median(x["steady_clips_per_s"] for x in runs[key])
    result["runs"] = runs
    result["parallel_efficiency"] = round(result["clips_per_s_2_workers"] / (2 * result["clips_per_s_1_worker"]), 3)
    result["steady_parallel_efficiency"] = round(
        result["steady_clips_per_s_2_workers"] / (2 * result["steady_clips_per_s_1_worker"]), 3)
    result["overhead"] = round(1 - result["clips_per_s_2_workers"] / result["ser_predict_clips_per_s"], 3)
    result["steady_overhead"] = round(1 - result["steady_clips_per_s_2_workers"] / result["ser_predict_clips_per_s"], 3)
    classes = [k for k in rows[files[0]] if k not in ("source", "label", "confidence", "duration", "error")]
    diffs = [abs(rows[f][c] - float(predicted[f][4 + i])) for f in files if f in predicted and rows[f]["error"] is None
             for i, c in enumerate(classes)]
    result["max_abs_score_diff"] = max(diffs) if diffs else None
    result["labels_equal"] = all(rows[f]["label"] == predicted[f][1] for f in files if f in predicted)
    result["steady_ms_per_clip_1_worker"] = round(1000 / result["steady_clips_per_s_1_worker"], 2)
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_s"] = round(time.perf_counter() - start, 1)
    out = Path(args.results) / f"scale_{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
