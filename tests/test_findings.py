"""The findings of the new-user trial (issue 14), each fixed and checked on real RAVDESS clips.

- ``ser evaluate --model M --data D`` warns (one line) and marks the report when D trained M;
- training records its validation score and warns when it is near chance;
- warnings are said once, in one line (silent starts, tf.function retracing, TensorFlow's start-up lines);
- the README documents the embedding API, typical durations and a quick subset.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ser.cli import build_parser, main
from ser.dataset import load_dataset
from ser.evaluation import overlap_warning, training_overlap
from ser.training import near_chance

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def link(ravdess: Path, dest: Path, names: list[str]) -> Path:
    """A corpus folder of links to the named real RAVDESS clips."""
    for name in names:
        actor = name.split(".")[0].split("-")[-1]
        (dest / f"Actor_{actor}").mkdir(parents=True, exist_ok=True)
        (dest / f"Actor_{actor}" / name).symlink_to(ravdess / f"Actor_{actor}" / name)
    return dest


def clips_of(actor: int, emotions=range(1, 9)) -> list[str]:
    return [f"03-01-{e:02d}-01-01-01-{actor:02d}.flac" for e in emotions]


def lines_with(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A `fast` model trained by `ser train` on 2 real actors, with a learning rate too small to learn anything."""
    from conftest import RAVDESS

    if not RAVDESS.is_dir():
        pytest.skip("shared RAVDESS copy not found at ../shared/data/ravdess")
    root = tmp_path_factory.mktemp("findings")
    data = link(RAVDESS, root / "train", clips_of(1) + clips_of(2))
    model = root / "model"
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger().addHandler(handler)
    try:
        code = main(["train", "-q", "--data", str(data), "--config", "fast", "--set", "train.epochs=1",
                     "--set", "train.validation_speakers=1", "--set", "train.learning_rate=1e-9",
                     "--out", str(model), "--cache", str(root / "cache")])
    finally:
        logging.getLogger().removeHandler(handler)
    assert code == 0
    return {"root": root, "data": data, "model": model, "records": [r.getMessage() for r in records]}


# --- the model folder records its training data; evaluate --model says when the test data trained it ---

def test_evaluate_model_warns_when_the_test_data_trained_it(trained, ravdess, capsys, caplog, tmp_path):
    metrics = json.loads((trained["model"] / "metrics.json").read_text())
    record = metrics["training_data"]
    assert record["speakers"] == ["ravdess:1", "ravdess:2"] and record["clips"] == 16 and len(record["files"]) == 16
    # The training actors: one warning line, the printed figures and the report marked.
    caplog.set_level(logging.WARNING)
    code = main(["evaluate", "-q", "--model", str(trained["model"]), "--data", str(trained["data"]),
                 "--out", str(tmp_path / "seen")])
    out = capsys.readouterr().out
    warned = lines_with(caplog, "training data")
    assert code == 0 and len(warned) == 1 and "\n" not in warned[0]
    assert "16 of 16 test files and 2 of 2 test speakers (ravdess:1, ravdess:2)" in warned[0]
    assert "NOT held out" in out
    report = json.loads((tmp_path / "seen" / "report.json").read_text())
    assert report["held_out"] is False and report["training_overlap"]["files"] == 16
    assert "held out: **no**" in (tmp_path / "seen" / "report.md").read_text()
    # A new actor: no warning, held out.
    caplog.clear()
    other = link(ravdess, tmp_path / "other", clips_of(3))
    code = main(["evaluate", "-q", "--model", str(trained["model"]), "--data", str(other),
                 "--out", str(tmp_path / "new")])
    assert code == 0 and not lines_with(caplog, "training data") and "NOT held out" not in capsys.readouterr().out
    assert json.loads((tmp_path / "new" / "report.json").read_text())["held_out"] is True
    # A copy of a training file under another name and speaker is still recognised by its content.
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copyfile(ravdess / "Actor_01" / clips_of(1)[4], copy / "mine.flac")
    (copy / "m.csv").write_text("path,label,speaker\nmine.flac,angry,alice\n")
    overlap = training_overlap(metrics, load_dataset(copy / "m.csv"))
    assert overlap == {"files": 1, "test_files": 1, "speakers": [], "test_speakers": 1, "held_out": False}
    assert overlap_warning(overlap).startswith("1 of 1 test files and 0 of 1 test speakers were in")
    assert training_overlap({}, load_dataset(copy / "m.csv")) is None  # a folder that does not say: unknown


def test_bundled_models_record_their_training_actors(ravdess, tmp_path):
    from ser.inference import Recognizer
    from ser.modelfolder import verify_checksums

    clips = load_dataset(link(ravdess, tmp_path, clips_of(7)))
    for name in ("default", "fast"):
        folder = ROOT / "src" / "ser" / "pretrained" / name
        verify_checksums(folder)  # metrics.json changed: SHA256SUMS regenerated with it
        record = json.loads((folder / "metrics.json").read_text())["training_data"]
        assert record["speakers"] == [f"ravdess:{a}" for a in range(1, 25)] and record["clips"] == 1440
        overlap = training_overlap({"training_data": record}, clips)
        assert overlap["files"] == 8 and overlap["speakers"] == ["ravdess:7"] and not overlap["held_out"]
    assert Recognizer.load("fast").metadata["training_data"]["clips"] == 1440


# --- training records its validation score and warns near chance ----------------------------------

def test_training_records_validation_and_warns_near_chance(trained):
    metrics = json.loads((trained["model"] / "metrics.json").read_text())
    validation = metrics["validation"]
    assert validation["clips"] == 8 and len(validation["speakers"]) == 1 and validation["chance_uar"] == 0.125
    assert metrics["training"]["validation_uar"] == pytest.approx(validation["uar"], abs=1e-4)
    assert validation["near_chance"] is True
    warned = [m for m in trained["records"] if "near chance" in m]
    assert len(warned) == 1 and "validation UAR" in warned[0] and "held-out speakers" in warned[0]
    # The line: two standard errors above chance on that many clips.
    assert near_chance(0.30, 0.125, 120) is False and near_chance(0.17, 0.125, 120) is True
    assert near_chance(0.30, 0.125, 8) is True  # 8 clips say little


# --- warnings said once ------------------------------------------------------------------------------

def test_a_batch_says_a_repeated_warning_once(ravdess, tmp_path, caplog):
    """RAVDESS clips start with about a second of silence: a 1 s recipe used to say so once per file."""
    silent_start = ["03-01-02-01-01-02-01.flac", "03-01-07-01-02-01-01.flac", "03-01-08-01-01-01-01.flac",
                    "03-01-08-01-01-02-01.flac", "03-01-08-01-02-02-01.flac"]
    data = link(ravdess, tmp_path / "data", silent_start + clips_of(1, (1, 3, 5)))
    caplog.set_level(logging.WARNING)
    code = main(["train", "-q", "--data", str(data), "--config", "tiny", "--set", "train.epochs=1",
                 "--out", str(tmp_path / "m"), "--cache", str(tmp_path / "cache")])
    said = lines_with(caplog, "are silent")
    assert code == 0 and len(said) == 1, said
    more = re.search(r"the first 1\.0 s are silent \(and (\d+) more like it\)$", said[0])
    assert more and int(more.group(1)) >= 4


def test_many_models_predict_without_retracing_warnings(caplog):
    """One fold's model after another (6 in si6) made model.predict warn about tf.function retracing."""
    from ser.config import preset
    from ser.models import build_model
    from ser.training import predict_proba

    config = preset("tiny")
    x = np.random.default_rng(0).standard_normal((40, 32, 63)).astype(np.float32)
    caplog.set_level(logging.WARNING)
    for _ in range(7):
        probs = predict_proba(build_model(config, input_shape=x.shape[1:], x_train=x), x)
        assert probs.shape == (40, 8) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert not lines_with(caplog, "retracing")


def test_python_api_trains_without_tensorflow_startup_lines(tmp_path):
    """TensorFlow's absl/oneDNN/CPU-feature lines reached stderr from the Python API (the CLI hid them)."""
    script = ("import numpy as np\n"
              "from ser.config import preset\n"
              "from ser.training import fit, predict_proba\n"
              "x = np.random.default_rng(0).standard_normal((32, 32, 63)).astype(np.float32)\n"
              "y = np.arange(32) % 8\n"
              "model, _ = fit(preset('tiny').override({'train.epochs': 1}), x, y, np.array(['a'] * 32),"
              " np.arange(32))\n"
              "print(predict_proba(model, x).shape)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(32, 8)"
    assert not re.search(r"oneDNN|absl|cpu_feature_guard|I0000|E0000|W0000", done.stderr), done.stderr[-2000:]


# --- README: embeddings, durations, a quick subset ---------------------------------------------------

def section(title: str) -> str:
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", README, flags=re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def test_readme_documents_the_embedding_api(tmp_path):
    from ser.inference import Recognizer

    assert "embedding" in Recognizer.features.__doc__.lower()
    text = section("Embeddings")
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert code, "the Embeddings section has a Python example"
    namespace: dict = {}
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)  # the example reads examples/
        exec(code[0], namespace)  # noqa: S102 - the README's own example
    finally:
        os.chdir(cwd)
    assert namespace["x"].shape == (7, 1024) and namespace["vector"].shape == (512,)


def test_readme_gives_durations_and_a_quick_subset_that_parse():
    text = section("Typical durations (2-core CPU)")
    assert re.search(r"\| `ser evaluate .*--protocol si6.*\| .*min", text)
    quick = section("A quick test on a few actors")
    commands = re.findall(r"^(?:\.venv/bin/)?ser (.+)$", quick, flags=re.M)
    assert len(commands) >= 2 and any("--partial-folds" in c for c in commands)
    parser = build_parser()
    for command in commands:
        parser.parse_args(command.split())  # every README command is a valid command line
