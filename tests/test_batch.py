"""ser batch and --ray on a real two-node Ray cluster on the loopback interface.

The cluster (a head and a second node, one CPU each, small object stores) is started
once for this module by Ray's own ``ray.cluster_utils.Cluster`` and stopped at its end;
every node and worker is a process started here, so tasks really cross processes and
nodes. Each Ray job is bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import ser
from ser import batch
from ser.cli import main
from ser.errors import ConfigError, OutputError

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.flac"))
#: Node address: loopback, but not 127.0.0.1 itself, which Ray swaps for the machine's network address.
LOOPBACK = "127.0.0.2"
JOB_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # Workers import ser from this checkout (the tests may run from a source tree, not an install).
    src = str(Path(ser.__file__).resolve().parents[1])
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "RAY_USAGE_STATS_ENABLED")}
    os.environ["PYTHONPATH"] = os.pathsep.join([src] + ([old["PYTHONPATH"]] if old["PYTHONPATH"] else []))
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    node = {"num_cpus": 1, "node_ip_address": LOOPBACK, "object_store_memory": 200 * 1024 * 1024}
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        c.add_node(**node)
        c.wait_for_nodes(timeout=60)
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _bounded(fn, *args, **kwargs):
    """Run ``fn`` in a thread; fail (not hang) when it takes longer than JOB_TIMEOUT_S."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(JOB_TIMEOUT_S)
    if t.is_alive():
        pytest.fail(f"Ray job still running after {JOB_TIMEOUT_S} s")
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, ravdess_clips) -> Path:
    """A folder with the 4 examples, 8 RAVDESS clips and 4 bad files (empty, not audio, silence, a broken link)."""
    folder = tmp_path_factory.mktemp("batch-inputs")
    for f in EXAMPLES + ravdess_clips[:8]:
        (folder / f.name).symlink_to(f)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notaudio.wav").write_text("hello")
    sf.write(folder / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    (folder / "gone.wav").symlink_to(folder / "missing-target.wav")
    return folder


@pytest.fixture(scope="module")
def ravdess_clips() -> list[Path]:
    root = ROOT.parent / "shared" / "data" / "ravdess"
    clips = sorted(root.glob("Actor_0[12]/*.flac"))
    if len(clips) < 24:
        pytest.skip("shared RAVDESS copy not found at ../shared/data/ravdess")
    return clips


def _predict_json(capsys, args: list[str]) -> tuple[dict[str, dict], set[str]]:
    """``ser predict --json``'s rows by source, and the errors it printed."""
    capsys.readouterr()
    main(["predict", "--json", "-q", *args])
    captured = capsys.readouterr()
    errors = {line[len("error: "):] for line in captured.err.splitlines() if line.startswith("error: ")}
    return {r["source"]: r for r in map(json.loads, captured.out.splitlines())}, errors


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _max_score_diff(a: dict, b: dict) -> float:
    return max(abs(a["scores"][c] - b["scores"][c]) for c in a["scores"])


# --- without a cluster ------------------------------------------------------------

def test_importing_ser_does_not_import_ray():
    code = ("import sys, ser, ser.cli, ser.inference, ser.batch; "
            "sys.exit('ray' in sys.modules or 'pyarrow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}).returncode == 0


def test_missing_extra_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    code = main(["batch", str(EXAMPLES[0]), "-o", str(tmp_path / "r.jsonl"), "--model", "fast", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == ['error: ray is not installed; `ser batch` needs pip install "speech-emotion-recognition[ray]"']


def test_plan_chunks_skips_done_and_keeps_groups_whole():
    sources = [f"f{i}" for i in range(7)] + ["f0"]  # a repeated source is scored once
    rows = batch.plan(sources, sources, done={"f1", "f2"}, chunk=2)
    assert [r["sources"] for r in rows] == [["f0", "f3"], ["f4", "f5"], ["f6"]]
    groups = ["a", "a", "b", "b", "c", "c", "c", "a"]
    rows = batch.plan(sources, sources, groups=groups, done={"f2", "f3", "f4"})
    # group b is complete; a and c are scored whole (their statistics need every file)
    assert [(r["group"], r["sources"]) for r in rows] == [("a", ["f0", "f1"]), ("c", ["f4", "f5", "f6"])]


def test_resume_reads_finished_lines_and_drops_a_cut_line(tmp_path):
    classes = ser.Recognizer.load("fast").classes
    out = tmp_path / "r.jsonl"
    line = {"source": "a.wav", "label": "sad", "confidence": 0.5, "duration": 1.0,
            "scores": dict.fromkeys(classes, 0.125), "error": None}
    out.write_text(json.dumps(line) + "\n" + json.dumps({**line, "source": "b.wav"})[:30])
    assert batch.finished_sources(out, classes) == {"a.wav"}
    assert out.read_text().count("\n") == 1 and out.read_text().endswith("\n")
    (tmp_path / "x.csv").write_text("path,label\n")
    with pytest.raises(OutputError, match="not this model's ser batch CSV"):
        batch.finished_sources(tmp_path / "x.csv", classes)
    with pytest.raises(ConfigError, match="expected a name ending in .parquet"):
        batch.output_format(tmp_path / "r.txt")


def test_ray_option_refuses_a_folder_for_an_address(capsys):
    assert main(["batch", "examples/", "-o", "r.jsonl", "--ray", "examples/"]) == 1
    assert "expected a cluster address" in capsys.readouterr().err


# --- on the two-node cluster -----------------------------------------------------

def test_batch_equals_predict_json_with_error_rows_and_resumes(cluster, inputs, tmp_path, capsys):
    """ser batch (fast model) gives ser predict --json's values, error rows for bad files, and resumes."""
    expected, expected_errors = _predict_json(capsys, [str(inputs), "--model", "fast"])
    out = tmp_path / "r.jsonl"
    args = ["batch", str(inputs), "-o", str(out), "--model", "fast", "--ray", cluster.address, "--chunk", "3", "-q"]
    assert _bounded(main, args) == 1  # bad files: exit 1, like ser predict
    rows = _jsonl(out)
    assert len(rows) == len({r["source"] for r in rows}) == 16
    errors = {Path(r["source"]).name: r["error"] for r in rows if r["error"]}
    assert sorted(errors) == ["empty.wav", "gone.wav", "notaudio.wav", "silence.wav"]
    assert set(errors.values()) == expected_errors  # the same one-line messages as ser predict
    good = [r for r in rows if not r["error"]]
    assert {r["source"] for r in good} == set(expected)
    for r in good:
        e = expected[r["source"]]
        assert (r["label"], r["duration"]) == (e["label"], e["duration"])
        # Scores: the same computation; they may differ in the last printed digit (float32 round-off of a
        # different batch composition in ONNX Runtime), never more.
        assert _max_score_diff(r, e) <= 1e-6

    # An interrupted run: 5 complete lines and half of the sixth. The rerun does only the rest.
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:5]) + text[5][:20])
    assert _bounded(main, args) == 1
    rerun = _jsonl(out)
    assert rerun[:5] == rows[:5]
    assert sorted(r["source"] for r in rerun) == sorted(r["source"] for r in rows)
    assert "already there" in capsys.readouterr().err


def test_parquet_and_csv_outputs_hold_the_same_rows(cluster, inputs, tmp_path):
    import pyarrow.parquet as pq

    files = [str(p) for p in sorted(inputs.iterdir())]
    s = _bounded(batch.score_archive, files, tmp_path / "r.parquet", model="fast", address=cluster.address, chunk=4)
    assert (s["written"], s["failed"], s["workers"]) == (16, 4, 2)
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column_names == batch.columns(ser.Recognizer.load("fast").classes)
    assert sorted(table.column("source").to_pylist()) == sorted(files)
    assert json.loads(table.schema.metadata[b"ser"])["model"] == "fast"
    # A rerun finds everything done: no new part file, nothing asked of the cluster.
    s = batch.score_archive(files, tmp_path / "r.parquet", model="fast", address=cluster.address)
    assert (s["written"], s["skipped"]) == (0, 16)
    assert len(list((tmp_path / "r.parquet").glob("part-*.parquet"))) == 1
    s = _bounded(batch.score_archive, files, tmp_path / "r.csv", model="fast", address=cluster.address)
    import csv

    with open(tmp_path / "r.csv") as fh:
        csv_rows = {r["source"]: r for r in csv.DictReader(fh)}
    by_source = {r["source"]: r for r in table.to_pylist()}
    assert set(csv_rows) == set(by_source)
    for source, r in by_source.items():
        assert csv_rows[source]["label"] == (r["label"] or "")
        assert (csv_rows[source]["error"] or None) == r["error"]


def _ray_worker_pids(name: str) -> list[int]:
    """Processes titled ``ray::…name…`` that descend from this test process (the fixture's nodes)."""
    me, found = os.getpid(), []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            pid = int(proc.name)
            parent = pid
            while parent > 1:
                parent = int((Path("/proc") / str(parent) / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == me:
                    break
        except (OSError, ValueError, IndexError):
            continue
        if title.startswith("ray::") and name in title and parent == me:
            found.append(pid)
    return found


def test_killed_worker_is_retried_without_lost_or_duplicated_rows(cluster, ravdess_clips, tmp_path):
    """The default model on 24 clips, two actors; one is killed (SIGKILL) mid-job."""
    files = [str(p) for p in ravdess_clips[:24]]
    out = tmp_path / "r.jsonl"
    result: dict = {}

    def job():
        result["summary"] = batch.score_archive(files, out, model="default", address=cluster.address, chunk=2)

    t = threading.Thread(target=job, daemon=True)
    t.start()
    killed = None
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline and t.is_alive():
        pids = _ray_worker_pids("Scorer")
        if len(pids) == 2 and out.exists() and out.read_text().count("\n") >= 2:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.2)
    t.join(max(1.0, deadline - time.monotonic()))
    assert not t.is_alive(), "job did not finish in time"
    assert killed is not None, "the job ended before a worker could be killed"
    rows = _jsonl(out)
    assert sorted(r["source"] for r in rows) == sorted(files)  # none lost, none twice
    assert not any(r["error"] for r in rows)
    rec = ser.Recognizer.load("default")
    for r, p in zip(sorted(rows, key=lambda r: r["source"]), rec.predict_files(sorted(files), jobs=1)):
        e = p.to_dict()
        assert r["label"] == e["label"] and _max_score_diff(r, e) <= 1e-6


def test_adaptation_per_folder_equals_local_groups(cluster, ravdess_clips, tmp_path):
    """--adapt: each folder (actor) scored whole by one worker with its own statistics, as predict_files(groups=)."""
    files = ravdess_clips[:8] + [f for f in ravdess_clips if f.parent.name == "Actor_02"][:8]
    out = tmp_path / "r.jsonl"
    code = _bounded(main, ["batch", *map(str, files), "-o", str(out), "--adapt", "--ray", cluster.address, "-q"])
    assert code == 0
    rows = {r["source"]: r for r in _jsonl(out)}
    rec = ser.Recognizer.load("default")
    local = rec.predict_files(files, groups=[str(f.parent) for f in files])
    assert len(rows) == len(set(files))
    for f, p in zip(files, local):
        assert rows[str(f)]["label"] == p.label and _max_score_diff(rows[str(f)], p.to_dict()) <= 1e-6


def test_evaluate_and_grid_on_ray_equal_the_local_path(cluster, corpus, tmp_path):
    """Features, si6 folds and grid candidates as Ray tasks: the same numbers as on one machine."""
    pytest.importorskip("tensorflow")
    from ser.config import preset
    from ser.dataset import load_dataset
    from ser.evaluation import evaluate
    from ser.training import grid_search

    clips = load_dataset(corpus)
    config = preset("tiny").override({"train.epochs": 3})
    grid = {"train.learning_rate": [0.003, 0.01]}

    def on_ray(fn, **kwargs):
        with batch.connect(cluster.address):
            return fn(executor=batch.ray_executor(), **kwargs)

    # The synthetic corpus has 6 of the 24 actors: si6's folds 1 and 2 (partial folds).
    local = evaluate(clips, config, protocol="si6", out_dir=tmp_path / "local", partial_folds=True)
    # Through the command line, as a user runs it.
    assert _bounded(main, ["evaluate", "--data", str(corpus), "--config", "tiny", "--set", "train.epochs=3",
                           "--protocol", "si6", "--partial-folds", "--out", str(tmp_path / "ray"), "--no-cache",
                           "-q", "--ray", cluster.address]) == 0
    remote = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert remote["summary"]["pooled"] == json.loads(json.dumps(local["summary"]["pooled"]))
    for k in (1, 2):
        a = json.loads((tmp_path / "local" / f"fold_{k}" / "result.json").read_text())
        b = json.loads((tmp_path / "ray" / f"fold_{k}" / "result.json").read_text())
        assert a["probs"] == b["probs"] and a["history"]["loss"] == b["history"]["loss"]
    table_local = grid_search(clips, config, grid, inner_folds=2)
    table_ray = _bounded(on_ray, grid_search, clips=clips, config=config, grid=grid, inner_folds=2)
    assert table_ray["rows"] == table_local["rows"]
    assert table_ray["best_params"] == table_local["best_params"]
