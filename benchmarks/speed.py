"""Speed and memory benchmark of ``ser predict`` (whole processes, as a user runs them).

Usage (from the repository root)::

    .venv/bin/python benchmarks/speed.py                      # the bundled default model
    .venv/bin/python benchmarks/speed.py --model src/ser/pretrained/fast --name fast
    .venv/bin/python benchmarks/speed.py --model path/to/model --name mine

``--model`` also takes a bundled model's name (``fast``); the results are named
after ``--name``, else after the model folder.

Figures (written to ``benchmarks/results/speed_<name>.json``):

- ``cold_predict_wall_s``: ``ser predict -q CLIP`` from process start to exit (median of 5);
- ``single_predict_peak_rss_mb``: that process's peak resident memory;
- ``throughput_clips_per_s``: ``ser predict -q --csv FOLDER`` over the RAVDESS folder on disk (all
  1440 clips by default: decode, resample, features, model), clips / whole-process wall time, median
  of 3 runs (start-up included, so fewer clips give lower figures; ``throughput_480_clips_per_s``
  keeps the figure over the first 480 clips, which earlier versions of this script reported);
- ``timeline_1h_wall_s`` / ``timeline_1h_peak_rss_mb``: ``ser predict --timeline`` on one hour
  of 16 kHz speech (RAVDESS clips back to back, with their own pauses).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import DATA, RESULTS, ROOT, Run, write_json

SER = str(ROOT / ".venv" / "bin" / "ser")


def run(argv: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MB) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{shlex.join(argv)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or bundled model name (default: the bundled default model)")
    parser.add_argument("--name", help="results name and the JSON's \"model\" field (default: the model folder's "
                        "name, or default)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--clips", type=int, default=None, help="clips for the throughput figure (default: all)")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    run_ = Run("speed")
    import soundfile as sf

    model = ["--model", args.model] if args.model else []
    name = args.name or (Path(args.model).name if args.model else "default")
    clips = sorted(Path(args.data).rglob("*.flac"))
    one = str(clips[0])
    cold = [run([SER, "predict", "-q", *model, one]) for _ in range(5)]
    n_clips = min(args.clips or len(clips), len(clips))
    with tempfile.TemporaryDirectory() as tmp:
        throughput = {}
        for n in sorted({n_clips, min(480, n_clips)}):
            folder = Path(tmp) / f"clips{n}"
            folder.mkdir()
            for clip in clips[:n]:
                (folder / clip.name).symlink_to(clip)
            throughput[n] = n / statistics.median(run([SER, "predict", "-q", "--csv", *model, str(folder)])[0]
                                                  for _ in range(3))
        # One hour of speech at 16 kHz, written in pieces (never held whole in memory here).
        hour = Path(tmp) / "hour.wav"
        written, i = 0, 0
        with sf.SoundFile(hour, "w", samplerate=16000, channels=1, subtype="PCM_16") as out:
            while written < 3600 * 16000:
                y, sr = sf.read(clips[i % len(clips)], dtype="float32", always_2d=True)
                y = y.mean(axis=1)[: 3600 * 16000 - written]
                out.write(y)
                written += y.size
                i += 1
        timeline_wall, timeline_rss = run([SER, "predict", "-q", *model, "--timeline", str(hour),
                                           "--out", str(Path(tmp) / "hour-emotions")])
        segments = json.loads((Path(tmp) / "hour-emotions.json").read_text())["segments"]
    result = {
        **run_.header(),
        "model": name,
        "model_path": args.model or "bundled default",
        "cold_predict_wall_s": round(statistics.median(w for w, _ in cold), 3),
        "cold_predict_wall_s_runs": [round(w, 3) for w, _ in cold],
        "single_predict_peak_rss_mb": round(max(r for _, r in cold), 1),
        "throughput_clips_per_s": round(throughput[n_clips], 1),
        "throughput_clips": n_clips,
        "throughput_480_clips_per_s": round(throughput[min(480, n_clips)], 1),
        "timeline_1h_wall_s": round(timeline_wall, 1),
        "timeline_1h_peak_rss_mb": round(timeline_rss, 1),
        "timeline_1h_segments": len(segments),
    }
    write_json(Path(args.results) / f"speed_{name}.json", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
