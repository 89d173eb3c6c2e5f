"""Load benchmark of ``ser serve`` on loopback: throughput, latency, bad barrage, memory, live-stream latency.

Usage (from the repository root; loopback only, bounded, stops by itself)::

    .venv/bin/python benchmarks/service.py --model fast
    .venv/bin/python benchmarks/service.py --model default --requests 300 --soak 1500

For one model, one ``ser serve`` process (started here on a free port, stopped at the end):

1. ``offline_clips_per_s``: the same model's batched library prediction (``Recognizer.predict_files``,
   what ``ser predict`` runs; model already loaded) over the benchmark's clips, in this process;
2. ``--requests`` single-clip ``POST /v1/predict`` (RAVDESS clips, 3-5 s, multipart) at concurrency 1
   and at 8 (one keep-alive connection per client thread) → ``requests_per_s``, ``p50_ms``/``p95_ms``/
   ``p99_ms`` (client-side, upload to parsed JSON), ``errors`` (anything but 200);
3. ``--bad`` bad requests at concurrency 8 (random bytes, empty, text, truncated WAV, wrong content
   type, unknown model, bad speaker name, oversized body, garbage multipart), then 50 good ones that
   must all succeed → ``bad_requests``, ``bad_statuses``, ``bad_5xx``, ``good_after_bad_errors``;
4. good requests until ``--soak`` requests in all → ``rss_start_mb`` (after warm-up) and ``rss_end_mb``
   of the server process;
5. a live stream over ``WS /v1/stream`` of ``--segments`` RAVDESS clips with 1 s pauses, sent as
   100 ms PCM16 frames in real time (``--stream-speed`` faster) → ``stream_p95_ms``: from sending
   the frame after which the voice-activity detector closes a segment (found by running the same
   detector here) to receiving that segment's event; ``stream_from_end_p95_ms``: from the segment's
   end in the audio to its event (adds the detector's own wait: the 0.3 s pause that ends a segment
   and up to 1 s until its next decision).

Results: ``benchmarks/results/service_<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _harness import DATA, RESULTS, ROOT, Run, machine, write_json


def start_server(model: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "ser", "serve", "--port", "0", "-q", "--model", model, *extra],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr] + [lines.put(None)], daemon=True).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = lines.get(timeout=120)
        if line is None:
            break
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)/", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise SystemExit("ser serve did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class Client:
    """One keep-alive connection per thread."""

    def __init__(self) -> None:
        self.local = threading.local()

    def __call__(self):
        import httpx

        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(timeout=120)
        return self.local.client


def load(url: str, bodies: list[tuple[str, bytes]], n: int, concurrency: int, client: Client) -> dict:
    """``n`` single-clip predictions at ``concurrency``; latencies in ms."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one(i: int) -> None:
        nonlocal errors
        name, data = bodies[i % len(bodies)]
        start = time.perf_counter()
        try:
            r = client().post(url + "/v1/predict", files=[("file", (name, data))])
            ok = r.status_code == 200 and r.json()["results"][0]["label"]
        except Exception:  # noqa: BLE001 - a failed request is counted, the run goes on
            ok = False
        with lock:
            latencies.append((time.perf_counter() - start) * 1000)
            errors += not ok

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    wall = time.perf_counter() - start
    return {"concurrency": concurrency, "requests": n, "requests_per_s": round(n / wall, 1),
            "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
            "p99_ms": round(percentile(latencies, 99), 1), "errors": errors, "wall_s": round(wall, 1)}


def bad_requests(url: str, n: int, client: Client, max_upload: int) -> dict:
    import io

    import soundfile as sf

    rng = np.random.default_rng(0)
    wav = io.BytesIO()
    sf.write(wav, (0.3 * np.sin(np.arange(16000) / 8)).astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    truncated = wav.getvalue()[:4000]
    kinds = [
        ("random", lambda c: c.post(url + "/v1/predict", files=[("file", ("r.wav", rng.bytes(3000)))])),
        ("empty", lambda c: c.post(url + "/v1/predict", files=[("file", ("e.wav", b""))])),
        ("text", lambda c: c.post(url + "/v1/predict", files=[("file", ("t.txt", b"not audio\n" * 50))])),
        ("truncated", lambda c: c.post(url + "/v1/predict", files=[("file", ("t.wav", truncated))])),
        ("content-type", lambda c: c.post(url + "/v1/predict", content=b"{}", headers={"content-type":
                                                                                     "application/json"})),
        ("model", lambda c: c.post(url + "/v1/predict?model=nope", files=[("file", ("a.wav", wav.getvalue()))])),
        ("speaker", lambda c: c.post(url + "/v1/predict?speaker=../x", files=[("file", ("a.wav", wav.getvalue()))])),
        ("oversized", lambda c: c.post(url + "/v1/predict", content=b"\0" * (max_upload + 1),
                                       headers={"content-type": "audio/wav"})),
        ("multipart", lambda c: c.post(url + "/v1/predict", content=b"--x\r\ngarbage",
                                       headers={"content-type": "multipart/form-data; boundary=x"})),
        ("stream", lambda c: c.get(url + "/v1/stream")),
    ]
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        name, send = kinds[i % len(kinds)]
        try:
            status = send(client()).status_code
        except Exception as exc:  # noqa: BLE001
            status = f"exception {type(exc).__name__}"
        with lock:
            key = f"{name}:{status}"
            statuses[key] = statuses.get(key, 0) + 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))
    bad_5xx = sum(v for k, v in statuses.items() if k.split(":")[1].startswith("5") or "exception" in k)
    return {"bad_requests": n, "bad_statuses": dict(sorted(statuses.items())), "bad_5xx": bad_5xx}


def stream_latency(url: str, files: list[Path], speed: float, max_segment: float) -> dict:
    """Real-time stream of ``files`` with 1 s pauses; latencies of the segment events."""
    import soundfile as sf
    import soxr
    from websockets.sync.client import connect

    from ser.timeline import EnergyVAD

    sr = 16000
    parts = [np.zeros(sr, dtype=np.float32)]
    for f in files:
        y, rate = sf.read(f, dtype="float32", always_2d=True)
        y = y.mean(axis=1)
        parts += [soxr.resample(y, rate, sr) if rate != sr else y, np.zeros(sr, dtype=np.float32)]
    y = np.concatenate(parts)
    pcm = (np.clip(y, -1, 32767 / 32768) * 32768).astype("<i2")
    frame = sr // 10
    frames = [pcm[i:i + frame] for i in range(0, len(pcm), frame)]
    # Which frame closes each segment: the same detector, with the settings the service uses.
    vad = EnergyVAD(sr=sr, max_segment=max_segment)
    closing: dict[float, int] = {}
    for k, f in enumerate(frames):
        for start, _ in vad.feed(f.astype(np.float32) / 32768):
            closing[round(start, 3)] = k
    for start, _ in vad.flush():
        closing[round(start, 3)] = len(frames)
    sent_at: list[float] = []
    events: list[tuple[float, dict]] = []
    with connect(url.replace("http://", "ws://") + "/v1/stream") as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": sr}))
        json.loads(ws.recv())

        def read() -> None:
            from websockets.exceptions import ConnectionClosed

            try:
                while True:
                    message = json.loads(ws.recv())
                    events.append((time.perf_counter(), message))
            except ConnectionClosed:
                pass

        reader = threading.Thread(target=read)
        reader.start()
        t0 = time.perf_counter()
        for k, f in enumerate(frames):
            # Pace: frame k goes out when its audio has been "spoken".
            delay = t0 + (k + 1) * 0.1 / speed - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            ws.send(f.tobytes())
            sent_at.append(time.perf_counter())
        ws.send(json.dumps({"type": "stop"}))
        sent_at.append(time.perf_counter())
        reader.join(120)
    segments = [(t, e) for t, e in events if e["type"] == "segment"]
    processing, from_end = [], []
    for t, e in segments:
        k = closing.get(round(e["start"], 3))
        if k is not None:
            processing.append((t - sent_at[min(k, len(sent_at) - 1)]) * 1000)
        from_end.append((t - (t0 + e["end"] / speed)) * 1000)
    return {"stream_segments": len(segments), "stream_audio_s": round(len(y) / sr, 1), "stream_speed": speed,
            "stream_p50_ms": round(percentile(processing, 50), 1), "stream_p95_ms": round(percentile(processing, 95), 1),
            "stream_from_end_p50_ms": round(percentile(from_end, 50), 1),
            "stream_from_end_p95_ms": round(percentile(from_end, 95), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast", help="bundled model name or folder (default: fast)")
    parser.add_argument("--requests", type=int, default=1000, help="predictions per concurrency level")
    parser.add_argument("--bad", type=int, default=500, help="bad requests in the barrage")
    parser.add_argument("--soak", type=int, default=5000, help="requests in all before the last RSS reading")
    parser.add_argument("--segments", type=int, default=20, help="speech segments in the live stream")
    parser.add_argument("--stream-speed", type=float, default=1.0, help="stream faster than real time")
    parser.add_argument("--clips", type=int, default=200, help="distinct RAVDESS clips used")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    run = Run("service")
    from ser.inference import Recognizer

    paths = sorted(Path(args.data).rglob("*.flac"))[:: max(1, 1440 // args.clips)][: args.clips]
    bodies = [(p.name, p.read_bytes()) for p in paths]
    name = Path(args.model).name
    rec = Recognizer.load(args.model)
    max_segment = max(min(10.0, rec.config.audio.duration), 1.0)  # as ser.timeline chooses it
    rec.predict_files(paths[:4])
    start = time.perf_counter()
    rec.predict_files(paths)
    offline = len(paths) / (time.perf_counter() - start)
    del rec
    max_upload_mb = 25
    proc, url = start_server(args.model, [])
    client = Client()
    try:
        load(url, bodies, 16, 4, client)  # warm-up
        rss_start = rss_mb(proc.pid)
        runs = [load(url, bodies, args.requests, c, client) for c in (1, 8)]
        done = 16 + 2 * args.requests
        bad = bad_requests(url, args.bad, client, max_upload_mb * 1_000_000)
        after = load(url, bodies, 50, 8, client)
        done += 50 + args.bad
        if args.soak > done:
            load(url, bodies, args.soak - done, 8, client)
            done = args.soak
        rss_end = rss_mb(proc.pid)
        stream_files = [p for p in sorted(Path(args.data).rglob("*.flac")) if "Actor_2" in str(p)][:: 5][: args.segments]
        stream = stream_latency(url, stream_files, args.stream_speed, max_segment)
    finally:
        proc.terminate()
        proc.wait(60)
    eight = runs[1]
    result = {
        **run.header(),
        "machine": {**machine(), "load_average_at_end": list(os.getloadavg())},
        "model": name,
        "concurrency": 8,
        "requests_per_s": eight["requests_per_s"],
        "p50_ms": eight["p50_ms"], "p95_ms": eight["p95_ms"], "p99_ms": eight["p99_ms"], "errors": eight["errors"],
        "offline_clips_per_s": round(offline, 1),
        "offline_ratio": round(eight["requests_per_s"] / offline, 3),
        "runs": runs,
        **bad,
        "good_after_bad_errors": after["errors"],
        "requests_total": done,
        "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
        "rss_growth": round(rss_end / rss_start - 1, 3),
        **stream,
        "clips": len(paths),
    }
    write_json(Path(args.results) / f"service_{name}.json", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
