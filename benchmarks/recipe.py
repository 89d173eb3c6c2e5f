"""What the benchmark scripts share: the command-line arguments of a recipe and the paths they use.

A recipe is a preset plus ``--set`` overrides, run on the shared RAVDESS copy; results go to
``benchmarks/results/`` and resumable work to ``runs/bench/``.
"""

from __future__ import annotations

import argparse
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
