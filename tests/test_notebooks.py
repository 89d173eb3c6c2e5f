"""The notebooks under notebooks/: they run top to bottom on a small slice, and their committed outputs are fresh.

The quick run (``SER_NOTEBOOK_QUICK=1``: a few actors or speakers, two epochs) is what CI executes;
the committed outputs come from a full run of ``scripts/run_notebooks.py``, which stamps each
notebook with a digest of its code cells. Editing code without running the notebook again fails
``test_committed_notebook_is_fresh``.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
from conftest import RAVDESS, SHARED

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)

#: Seconds a quick run may take on the 2-core CI machine (measured: 40-65 s each, kernel start included;
#: more on a busy machine).
QUICK_LIMIT_S = 240
#: What each notebook reads besides the repository.
NEEDS = {"walkthrough": (RAVDESS, SHARED / "data" / "emovo" / "labels.csv"),
         "your_data": (SHARED / "data" / "emovo" / "labels.csv", SHARED / "models" / "whisper-base")}


def notebook(path: Path):
    return nbformat.read(path, as_version=4)


def test_the_runner_knows_every_notebook():
    assert sorted(runner.NOTEBOOKS) == sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", runner.NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_fresh(path):
    """Outputs of a full run of exactly these code cells, each executed once in order, no error anywhere."""
    assert runner.problems(notebook(path)) == []


@pytest.mark.parametrize("path", runner.NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_shows_its_plots_and_stays_small(path):
    nb = notebook(path)
    kinds = [mime for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
             for mime in out.get("data", {})]
    assert kinds.count("image/png") >= 4 and "text/html" in kinds
    assert path.stat().st_size < 1_500_000  # moderate dpi, no audio as WAV, no logs
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("name") != "stderr" or len(out["text"]) < 2000, out["text"][:300]


def test_problems_catches_edits_errors_and_partial_runs():
    nb = notebook(runner.NOTEBOOKS[0])
    assert runner.problems(nb) == []
    edited = copy.deepcopy(nb)
    code = next(c for c in edited.cells if c.cell_type == "code")
    code.source += "\nprint('new line')"
    assert any("code cells changed" in p for p in runner.problems(edited))
    prose = copy.deepcopy(nb)
    next(c for c in prose.cells if c.cell_type == "markdown").source += "\n\nOne more sentence."
    assert runner.problems(prose) == []  # prose changes no output
    failed = copy.deepcopy(nb)
    next(c for c in failed.cells if c.cell_type == "code").outputs.append(
        nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[]))
    assert any("error output ValueError: boom" in p for p in runner.problems(failed))
    partial = copy.deepcopy(nb)
    [c for c in partial.cells if c.cell_type == "code"][-1].execution_count = None
    assert any("top to bottom" in p for p in runner.problems(partial))
    quick = copy.deepcopy(nb)
    quick.metadata[runner.STAMP]["mode"] = "quick"
    assert any("not a full one" in p for p in runner.problems(quick))
    unstamped = copy.deepcopy(nb)
    del unstamped.metadata[runner.STAMP]
    assert any("no stamp" in p for p in runner.problems(unstamped))


@pytest.mark.parametrize("path", runner.NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_on_a_small_slice(path, tmp_path, monkeypatch):
    missing = [str(p) for p in NEEDS[path.stem] if not p.exists()]
    if missing:
        pytest.skip(f"shared data not found: {', '.join(missing)}")
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))  # nothing computed before, nothing left behind
    monkeypatch.setenv("SER_SPEAKERS_DIR", str(tmp_path / "speakers"))
    nb, seconds = runner.execute(path, quick=True, timeout=QUICK_LIMIT_S, work=str(tmp_path / "work"))
    assert seconds < QUICK_LIMIT_S
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert "quick run" in "".join(o.get("text", "") for o in code[0].outputs)
    outputs = [out for c in code for out in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    kinds = [mime for o in outputs for mime in o.get("data", {})]
    assert kinds.count("image/png") >= 4 and kinds.count("text/html") >= 2  # plots and rich displays rendered
