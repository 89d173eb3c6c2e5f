"""Size of the core install: the wheel in a fresh venv without extras (issue 14).

Usage (from the repository root)::

    .venv/bin/python benchmarks/install_size.py

Builds the wheel, installs it into a new virtual environment (dependencies from the package
registry, as a user's ``pip install speech-emotion-recognition`` would), and writes
``benchmarks/results/install_size.json``: the venv's size on disk, the largest packages and the
wheel's size. (Speed is benchmarks/speed.py's job, on a quiet machine.)
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import RESULTS, ROOT, Run, write_json


def mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6, 1)


def main() -> int:
    run = Run("install_size")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The committed tree, not the checkout: setuptools never empties its build/ folder, so files
        # deleted from the package would still ship in a wheel built in place.
        (tmp / "src").mkdir()
        archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp / "src"], input=archive.stdout, check=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", tmp / "src"],
                       check=True)
        (wheel,) = (tmp / "dist").glob("*.whl")
        venv = tmp / "venv"
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv], check=True)
        subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], check=True)
        site = next((venv / "lib").glob("python*/site-packages"))
        packages = sorted(((mb(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)[:8]
        result = {
            **run.header(), "python": platform.python_version(),
            "core_venv_mb": mb(venv), "wheel_mb": round(wheel.stat().st_size / 1e6, 1),
            "largest_packages_mb": dict((name, size) for size, name in packages),
        }
    write_json(RESULTS / "install_size.json", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
