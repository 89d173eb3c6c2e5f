"""Timeline speed on one hour of three kinds of input, segments batched and one at a time.

Usage (from the repository root)::

    .venv/bin/python benchmarks/timeline.py                    # the bundled default model
    .venv/bin/python benchmarks/timeline.py --model fast

Inputs (16 kHz mono, built in a temporary folder from the shared RAVDESS copy and a seeded
generator; never committed):

- ``ravdess``: RAVDESS clips back to back with their own pauses (the input of ``speed.py``);
- ``continuous``: the same clips with their leading and trailing silence cut (``trim_silence``,
  30 dB), back to back: speech with almost no pauses, so the VAD cuts it into pieces of the maximum
  segment length (10 s, or the model's window if shorter) — the most encoder work per hour;
- ``noise``: bursts of white noise (1-15 s, random level) separated by 0.2-1 s of near-silence.

Each input runs in a fresh process (``timeline()`` with ``batch_size=16``, the default, and with
``batch_size=1``, the path before batching); the figures are its wall time, CPU time and peak
resident memory, and the load average of the machine before and after (the CPUs may be shared
with other jobs: the load says how busy they were). The two runs must give the same segments;
the largest score difference between them is recorded. Writes
``benchmarks/results/timeline_<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from _harness import DATA, RESULTS, Run, run_process, write_json

SR = 16000
INPUTS = ("ravdess", "continuous", "noise")


def build_input(kind: str, path: Path, *, seconds: float, data: Path) -> Path:
    """Write ``seconds`` of input ``kind`` to ``path`` block by block (never the whole hour in memory)."""
    import soundfile as sf

    from ser.audio import decode, trim_silence

    clips = sorted(data.rglob("*.flac"))
    rng = np.random.default_rng(0)
    total = int(seconds * SR)
    written, i = 0, 0
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as out:
        while written < total:
            if kind == "noise":
                level = 10 ** rng.uniform(-2, -0.7)
                y = np.concatenate([(level * rng.standard_normal(int(rng.uniform(1, 15) * SR))),
                                    1e-4 * rng.standard_normal(int(rng.uniform(0.2, 1.0) * SR))])
            else:
                y = decode(clips[i % len(clips)], sr=SR)[0]
                if kind == "continuous":
                    y = trim_silence(y, top_db=30)
                i += 1
            y = np.clip(y, -1, 1).astype(np.float32)[: total - written]
            out.write(y)
            written += y.size
    return path


def child(model: str, audio: str, batch: int, out: str) -> int:
    """The measured process: one timeline, its segments written as JSON."""
    from ser.inference import Recognizer
    from ser.timeline import timeline

    rec = Recognizer.load(model)
    segments = timeline(audio, rec, batch_size=batch)
    Path(out).write_text(json.dumps([s.to_dict() for s in segments]))
    return 0


def measure(model: str, audio: Path, batch: int, out: Path) -> dict:
    """Run :func:`child` in a fresh process; wall, CPU, peak RSS and the load around it."""
    argv = [sys.executable, __file__, "--child", model, str(audio), str(batch), str(out)]
    load_before = os.getloadavg()
    wall, cpu, rss = run_process(argv)
    segments = json.loads(out.read_text())
    return {"batch_size": batch, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "peak_rss_mb": round(rss, 1), "segments": len(segments),
            "speech_s": round(sum(s["end"] - s["start"] for s in segments), 1),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()]}


def compare(a: list[dict], b: list[dict]) -> dict:
    """Whether two runs found the same segments and labels, and their largest score difference."""
    same = len(a) == len(b) and all((x["start"], x["end"]) == (y["start"], y["end"]) for x, y in zip(a, b))
    diff = max((abs(x["scores"][k] - y["scores"][k]) for x, y in zip(a, b) for k in x["scores"]), default=0.0)
    return {"same_segments": same, "same_labels": same and all(x["label"] == y["label"] for x, y in zip(a, b)),
            "max_score_diff": diff}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="bundled model name or model folder")
    parser.add_argument("--name", help="results name (default: the model's)")
    parser.add_argument("--seconds", type=float, default=3600.0, help="length of each input")
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 1], help="batch sizes to run")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    run_ = Run("timeline")
    name = args.name or Path(args.model).name
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.inputs:
            audio = build_input(kind, Path(tmp) / f"{kind}.wav", seconds=args.seconds, data=Path(args.data))
            runs, outputs = [], []
            for batch in args.batches:
                out = Path(tmp) / f"{kind}-{batch}.json"
                runs.append(measure(args.model, audio, batch, out))
                outputs.append(json.loads(out.read_text()))
                print(kind, json.dumps(runs[-1]), flush=True)
                results[kind] = {"runs": runs}
                if len(outputs) > 1:
                    results[kind]["batched_vs_single"] = compare(outputs[0], outputs[-1])
                # Written after every run: a run of the default model on the hard inputs takes many
                # minutes on a busy machine, and an interrupted benchmark keeps what it measured.
                result = {**run_.header(), "model": name, "input_seconds": args.seconds,
                          "note": "CPUs shared with other jobs; load_before/load_after are os.getloadavg() "
                                  "(1, 5, 15 min)",
                          "complete": kind == args.inputs[-1] and batch == args.batches[-1], "inputs": results}
                write_json(Path(args.results) / f"timeline_{name}.json", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
