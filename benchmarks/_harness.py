"""What every benchmark script shares: recipe arguments, the result header, atomic writes, resume, metrics.

- :func:`recipe_parser` / :func:`recipe_config`: a preset plus ``--set`` overrides on the shared RAVDESS copy;
  results go to ``benchmarks/results/``, resumable work to ``runs/bench/``.
- :class:`Run`: the header every result file starts with — benchmark, command, date, the real machine
  (CPU model and cores, GPUs found by an actual check, the device that trained), wall time.
- :func:`write_json` / :func:`write_text`: atomic (a crash never leaves half a result file).
- :func:`resume`: the one resume rule — a saved fold is reused when its digest (``ser.training.fold_digest``:
  changed settings, training and test files) matches; anything else is computed again.
- :func:`scores`: UAR, macro-F1 and accuracy from :func:`ser.evaluation.metrics`, rounded as results print them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ravdess"
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "runs" / "bench"


def recipe_parser(doc: str, *, preset: str, work: bool = True) -> argparse.ArgumentParser:
    """A parser with ``--preset``, ``--set``, ``--name``, ``--data``, ``--results`` (and ``--work``)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--preset", default=preset)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a config field, e.g. features.encoder_precision='\"int8\"'")
    parser.add_argument("--name", help="results name instead of the preset's (use with --set)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--results", default=str(RESULTS))
    if work:
        parser.add_argument("--work", default=str(WORK), help="resumable work folder")
    return parser


def recipe_config(args: argparse.Namespace):
    """The :class:`ser.config.Config` of ``--preset`` with every ``--set`` applied."""
    from ser.config import parse_overrides, preset

    config = preset(args.preset)
    return config.override(parse_overrides(args.set)) if args.set else config


def setup_logging() -> None:
    """Timestamped INFO lines on stderr (benchmarks run for minutes to hours)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[str] | None:
    """Names of the NVIDIA GPUs ``nvidia-smi -L`` lists, or ``None`` when there is none (or no driver)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.split(":", 1)[1].split("(UUID")[0].strip() for line in out.splitlines() if line.startswith("GPU ")]
    return names or None


def machine(device: str | None = None) -> dict:
    """The machine a result was measured on: cores, CPU model, GPUs (checked), and the training device if any."""
    out = {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "gpu": gpus()}
    if device is not None:
        out["device"] = device
    return out


class Run:
    """One benchmark run: started on creation; :meth:`header` is the head of every result it writes."""

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self.start = time.perf_counter()
        self.command = f"python benchmarks/{Path(sys.argv[0]).name} " + shlex.join(sys.argv[1:])
        self.date = date.today().isoformat()

    def wall_s(self) -> float:
        return round(time.perf_counter() - self.start, 1)

    def header(self, *, device: str | None = None, **fields) -> dict:
        """``benchmark``, ``command``, ``date``, ``machine`` (:func:`machine`), ``wall_s`` so far, then ``fields``."""
        return {"benchmark": self.benchmark, "command": self.command, "date": self.date,
                "machine": machine(device), "wall_s": self.wall_s(), **fields}


def write_json(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    from ser.utils import atomic_write_text

    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically."""
    from ser.utils import atomic_write_text

    return atomic_write_text(path, text)


def resume(path: Path, digest: str, *, legacy: Callable[[dict], bool] | None = None) -> dict | None:
    """The saved fold at ``path`` if its digest is ``digest`` (:func:`ser.training.load_fold`), else ``None``.

    ``legacy``: a test that accepts a fold saved by an earlier version of the script (before digests).
    """
    from ser.training import load_fold

    saved = load_fold(path, (digest,))
    if saved is None and legacy is not None and path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return old if isinstance(old, dict) and legacy(old) else None
    return saved


def save_fold(path: Path, digest: str, data: dict) -> dict:
    """Save a finished fold (atomically) under its digest; returns what was saved."""
    from ser.utils import atomic_write_text

    saved = {**data, "digest": digest}
    atomic_write_text(path, json.dumps(saved) + "\n")
    return saved


def scores(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """UAR, macro-F1 (over the classes present) and accuracy of :func:`ser.evaluation.metrics`, and the clip count."""
    from ser.evaluation import metrics

    m = metrics(y_true, y_pred, classes)
    return {"uar": round(m["uar"], 4), "macro_f1": round(m["macro_f1"], 4), "accuracy": round(m["accuracy"], 4),
            "clips": m["n"]}
