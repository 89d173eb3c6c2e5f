"""The Whisper-base encoder on one thread: numpy vs ONNX Runtime float32 vs dynamic int8 variants.

Two measurements, written to ``benchmarks/results/encoder_onnx.json``:

* **speed**: milliseconds of one encoder call on a 3.5 s clip (350 mel frames, the log-mel not
  included), one thread everywhere (numpy's BLAS limited by threadpoolctl, ONNX Runtime's
  ``intra_op_num_threads=1``); CPU time (``time.process_time``) beside wall time, because other jobs
  share the cores and wall time then counts their share too;
* **agreement**: each encoder's pooled features (``ser.features.stats_pool``, mean + std per
  hidden state) against the numpy float32 encoder, on RAVDESS clips conditioned as the ``robust``
  preset conditions them (silence trimmed, peak-normalised, own length): cosine and max abs diff
  per hidden state.

Usage: ``PYTHONPATH=src python benchmarks/encoder_onnx.py [--clips 100] [--speed-clips 20]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from _harness import DATA, RESULTS

SPEED_FRAMES = 350  # 3.5 s at Whisper's 10 ms hop


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100, help="RAVDESS clips for the agreement figures")
    parser.add_argument("--speed-clips", type=int, default=20, help="clips timed per encoder")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per clip (the minimum is kept)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", default=str(RESULTS / "encoder_onnx.json"))
    return parser.parse_args()


def machine() -> dict:
    """CPU model, cores, int8 instruction sets and the runtime versions."""
    import onnxruntime

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return {"cpus": os.cpu_count(), "cpu": model or platform.processor(), "gpu": None,
            "int8_instructions": sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}),
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__, "python": platform.python_version()}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def encoders(tmp: Path) -> dict:
    """Every encoder measured, by name, plus the size of each ONNX graph in bytes."""
    from ser.encoder_onnx import INT8_VARIANTS, OnnxWhisperEncoder, build_encoder_graph, quantize_graph
    from ser.encoders import WhisperEncoder, default_whisper_dir, read_ctranslate2_variables

    variables = read_ctranslate2_variables(default_whisper_dir() / "model.bin")
    graph = build_encoder_graph(variables)
    out = {"numpy-float32": WhisperEncoder(variables),
           "numpy-int8-weights": WhisperEncoder.from_dir(precision="int8")}
    sizes = {}
    for name in ("float32", *INT8_VARIANTS):
        model = graph if name == "float32" else quantize_graph(graph, name)
        path = tmp / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        sizes[f"onnx-{name}"] = path.stat().st_size
        out[f"onnx-{name}"] = OnnxWhisperEncoder(path, threads=1)
    return out, sizes


def clip_paths(data: Path, n: int) -> list[Path]:
    """``n`` RAVDESS clips spread evenly over the sorted 1440 (so over all actors)."""
    paths = sorted(data.glob("Actor_*/*.flac")) or sorted(data.glob("Actor_*/*.wav"))
    if not paths:
        sys.exit(f"no RAVDESS clips under {data}")
    return [paths[i] for i in np.linspace(0, len(paths) - 1, min(n, len(paths))).astype(int)]


def conditioned(paths: list[Path]) -> list[np.ndarray]:
    """Waveforms as the robust preset feeds them to the encoder (trimmed, peak-normalised)."""
    from ser import audio
    from ser.config import preset
    from ser.frontend import condition_audio

    a = preset("robust").audio
    return [condition_audio(audio.load(p, sr=a.sample_rate), a) for p in paths]


def speed(encs: dict, ys: list[np.ndarray], repeats: int) -> dict:
    """Milliseconds per 3.5 s clip (CPU and wall), median over clips of the best of ``repeats``."""
    from ser.encoders import whisper_log_mel

    mels = [whisper_log_mel(y, n_frames=SPEED_FRAMES) for y in ys]
    out = {}
    for name, enc in encs.items():
        enc(mels[0])  # warm-up: allocations, ORT's first-run kernel choices
        cpu, wall = [], []
        for mel in mels:
            best_cpu = best_wall = float("inf")
            for _ in range(repeats):
                c0, w0 = time.process_time(), time.perf_counter()
                enc(mel)
                best_cpu = min(best_cpu, time.process_time() - c0)
                best_wall = min(best_wall, time.perf_counter() - w0)
            cpu.append(best_cpu)
            wall.append(best_wall)
        out[name] = {"cpu_ms_per_clip": round(1000 * float(np.median(cpu)), 2),
                     "wall_ms_per_clip": round(1000 * float(np.median(wall)), 2)}
        print(f"{name:20s} cpu {out[name]['cpu_ms_per_clip']:7.2f} ms  wall {out[name]['wall_ms_per_clip']:7.2f} ms",
              flush=True)
    return out


def agreement(encs: dict, ys: list[np.ndarray]) -> dict:
    """Per hidden state, pooled features of each encoder against numpy float32: cosine and max abs diff."""
    from ser.encoders import encode_waveform
    from ser.features import stats_pool

    pooled = {name: np.stack([stats_pool(encode_waveform(y, enc)) for y in ys]) for name, enc in encs.items()}
    ref = pooled["numpy-float32"]
    out = {}
    for name, x in pooled.items():
        if name == "numpy-float32":
            continue
        cos = (x * ref).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(ref, axis=-1))  # (clips, layers)
        diff = np.abs(x - ref).max(axis=(0, 2))
        out[name] = {"cosine_mean": [round(float(c), 6) for c in cos.mean(axis=0)],
                     "cosine_min": [round(float(c), 6) for c in cos.min(axis=0)],
                     "max_abs_diff": [float(f"{d:.3g}") for d in diff],
                     "ref_max_abs": [float(f"{m:.4g}") for m in np.abs(ref).max(axis=(0, 2))]}
        print(f"{name:20s} min cosine per state {out[name]['cosine_min']}", flush=True)
    return out


def main() -> int:
    from threadpoolctl import threadpool_limits

    args = parse_args()
    t0 = time.perf_counter()
    load_before = uptime()
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
        encs, sizes = encoders(Path(tmp))
        speed_ys = conditioned(clip_paths(Path(args.data), args.speed_clips))
        speeds = speed(encs, speed_ys, args.repeats)
        agree = agreement(encs, conditioned(clip_paths(Path(args.data), args.clips)))
    result = {"benchmark": "encoder_onnx", "command": "PYTHONPATH=src python " + shlex.join(sys.argv),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"), "machine": machine(),
              "wall_s": round(time.perf_counter() - t0, 1), "load_before": load_before, "load_after": uptime(),
              "threads": 1, "speed_frames": SPEED_FRAMES, "speed_clips": args.speed_clips, "repeats": args.repeats,
              "agreement_clips": args.clips, "reference": "numpy-float32",
              "variants": {"numpy-int8-weights": "numpy, weights rounded to int8 per channel, float32 compute "
                                                 "(features.encoder_precision='int8')",
                           "onnx-float32": "ONNX Runtime, float32",
                           "onnx-int8": "dynamic int8: every constant-weight MatMul and both convolutions",
                           "onnx-int8-linear": "dynamic int8: the linear layers; convolutions float32",
                           "onnx-int8-mlp": "dynamic int8: the MLP layers only; attention projections and "
                                            "convolutions float32",
                           "onnx-int8-ffn-in": "dynamic int8: the linear layers except each MLP's output "
                                               "projection; convolutions float32"},
              "note": "int8 = onnxruntime.quantization.quantize_dynamic, per-channel int8 weights, uint8 activations "
                      "quantized per call; attention scores, softmax and layer norms stay float32 in every variant",
              "graph_bytes": sizes, "speed": speeds, "agreement": agree}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} in {result['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
