"""Execute the notebooks under notebooks/ top to bottom, as CI and the committed outputs do.

    python scripts/run_notebooks.py                 # full run: outputs written into the notebooks
    python scripts/run_notebooks.py --quick         # the CI slice (SER_NOTEBOOK_QUICK=1), nothing written
    python scripts/run_notebooks.py --check         # are the committed notebooks fresh? (no kernel)

A full run is what the committed notebooks carry: all 24 RAVDESS actors, full-length training.
It stamps each notebook's metadata with a digest of its code cells, so that
``tests/test_notebooks.py`` can tell when code was edited but the notebook not run again (prose
in Markdown cells can be edited without a new run: it changes no output).
The quick run (``SER_NOTEBOOK_QUICK=1``: a few actors, a few epochs) is the one CI executes.

Each notebook runs in its own folder with ``src/`` first on ``PYTHONPATH``, so the kernel
imports this checkout's ``ser``. Any error stops the run with the failing cell named.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = (ROOT / "notebooks" / "walkthrough.ipynb", ROOT / "notebooks" / "your_data.ipynb")
#: Metadata key of the stamp a full run leaves in a notebook.
STAMP = "ser"


def cells_digest(nb) -> str:
    """SHA-256 over the source of every code cell, in order (Markdown, outputs and metadata ignored)."""
    payload = json.dumps(["".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "code"])
    return hashlib.sha256(payload.encode()).hexdigest()


def problems(nb) -> list[str]:
    """What makes a committed notebook stale or broken; empty when it is fresh.

    Fresh means: stamped by a full run whose code cells were exactly the present ones, every
    code cell executed once, in order, and no error in any output.
    """
    found = []
    stamp = nb.get("metadata", {}).get(STAMP)
    if not stamp:
        found.append("no stamp of a full run (run scripts/run_notebooks.py)")
    else:
        if stamp.get("mode") != "full":
            found.append(f"outputs come from a {stamp.get('mode')!r} run, not a full one")
        if stamp.get("cells") != cells_digest(nb):
            found.append("code cells changed since the last full run (run scripts/run_notebooks.py)")
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    if counts != list(range(1, len(code) + 1)):
        found.append(f"code cells not executed once each, top to bottom (execution counts {counts})")
    for number, cell in enumerate(code, 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"code cell {number}: error output {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and "Traceback (most recent call last)" in "".join(out["text"]):
                found.append(f"code cell {number}: a traceback in its {out.get('name')} output")
    return found


def execute(path: Path, *, quick: bool, timeout: int = 1800, work: str | None = None):
    """Run the notebook at ``path`` in its folder; returns ``(executed notebook, seconds)``.

    Raises ``nbclient.exceptions.CellExecutionError`` (naming the cell) on the first error.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {"SER_NOTEBOOK_QUICK": "1" if quick else "0", "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src")] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    if work:
        env["SER_NOTEBOOK_WORK"] = str(Path(work) / path.stem)
    saved = {k: os.environ.get(k) for k in (*env, "SER_NOTEBOOK_WORK")}
    os.environ.update(env)  # the kernel inherits this process's environment
    if not work:
        os.environ.pop("SER_NOTEBOOK_WORK", None)
    try:
        # capture_fd_output=False: what libraries write straight to the process's file descriptors
        # (TensorFlow's C++ start-up banner, which no setting silences) goes to this script's
        # terminal, as it would from a script, not into whichever cell happens to be running.
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                extra_arguments=["--IPKernelApp.capture_fd_output=False"],
                                resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        client.execute()
        return nb, time.perf_counter() - start
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def stamp(nb, *, wall_s: float) -> None:
    """Mark ``nb`` as the output of a full run of its present cells."""
    nb["metadata"][STAMP] = {"mode": "full", "cells": cells_digest(nb), "date": date.today().isoformat(),
                             "wall_s": round(wall_s, 1), "cpus": os.cpu_count()}
    nb["metadata"].pop("widgets", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook under notebooks/")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the CI slice; the notebooks are not rewritten")
    mode.add_argument("--check", action="store_true", help="only check that the committed notebooks are fresh")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    parser.add_argument("--work", help="keep run folders here (a rerun resumes finished folds); default: temporary")
    args = parser.parse_args(argv)
    import nbformat

    paths = args.notebooks or list(NOTEBOOKS)
    failed = 0
    for path in paths:
        if args.check:
            found = problems(nbformat.read(path, as_version=4))
            print(f"{path}: " + ("fresh" if not found else "; ".join(found)))
            failed += bool(found)
            continue
        nb, seconds = execute(path, quick=args.quick, timeout=args.timeout, work=args.work)
        if args.quick:
            print(f"{path}: quick run ok in {seconds:.0f} s")
            continue
        stamp(nb, wall_s=seconds)
        found = problems(nb)
        if found:
            print(f"{path}: not written: " + "; ".join(found), file=sys.stderr)
            failed += 1
            continue
        nbformat.write(nb, path)
        print(f"{path}: full run in {seconds:.0f} s, {path.stat().st_size / 1e6:.2f} MB written")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
