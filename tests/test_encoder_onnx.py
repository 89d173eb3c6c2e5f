"""The encoder as an ONNX graph: parity with the numpy encoder, dynamic shapes, int8, fallback, folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from ser import audio
from ser.config import preset
from ser.encoder_onnx import OnnxWhisperEncoder, build_encoder_graph, graph_variables, quantize_graph
from ser.encoders import WhisperEncoder, read_ctranslate2_variables, whisper_log_mel
from ser.errors import ModelError
from ser.features import stats_pool
from ser.frontend import featurize_many

ROOT = Path(__file__).resolve().parents[1]
WHISPER_DIR = ROOT.parent / "shared" / "models" / "whisper-base"
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"
# Real speech: the four example clips shipped in the repository and two RAVDESS clips of other actors.
CLIPS = sorted((ROOT / "examples").glob("*.flac")) + [RAVDESS / "Actor_17" / "03-01-06-02-01-01-17.flac",
                                                      RAVDESS / "Actor_24" / "03-01-02-02-02-02-24.flac"]
# float32 parity. The pooled features must agree to 1e-3 absolute. The hidden states too, except that
# blocks 4 and 5 carry outlier channels reaching ~400, where one float32 ulp is 3e-5 and a different
# summation order alone moves a 2048-term dot product by ~1e-3: there the numpy encoder itself is
# 1.5e-3 from a float64 run (measured), so those states get 1e-5 of their largest magnitude on top.
ATOL, RTOL_OF_MAX = 1e-3, 1e-5


@pytest.fixture(scope="module")
def variables():
    if not (WHISPER_DIR / "model.bin").is_file():
        pytest.skip(f"Whisper-base CTranslate2 model not found at {WHISPER_DIR}")
    return read_ctranslate2_variables(WHISPER_DIR / "model.bin")


@pytest.fixture(scope="module")
def graph(variables):
    return build_encoder_graph(variables)


@pytest.fixture(scope="module")
def numpy_encoder(variables):
    return WhisperEncoder(variables)


@pytest.fixture(scope="module")
def onnx_encoder(graph):
    return OnnxWhisperEncoder(graph.SerializeToString())


def _mel(path: Path) -> np.ndarray:
    if not path.is_file():
        pytest.skip(f"clip {path} not found")
    return whisper_log_mel(audio.load(path, sr=16000))


def _assert_states_close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and b.dtype == np.float32
    for i, (x, y) in enumerate(zip(a, b)):
        limit = ATOL + RTOL_OF_MAX * float(np.abs(x).max())
        assert np.abs(x - y).max() <= limit, f"hidden state {i}: {np.abs(x - y).max()} > {limit}"


@pytest.mark.parametrize("path", CLIPS, ids=lambda p: p.name)
def test_float32_parity_on_real_clips(path, numpy_encoder, onnx_encoder):
    mel = _mel(path)
    expected, got = numpy_encoder(mel), onnx_encoder(mel)
    _assert_states_close(expected, got)
    assert np.abs(stats_pool(expected[:, 0]) - stats_pool(got[:, 0])).max() <= ATOL
    assert onnx_encoder.backend == "onnxruntime" and onnx_encoder.precision == "float32"


def test_dynamic_batch_and_length(numpy_encoder, onnx_encoder):
    mel = _mel(CLIPS[0])
    for frames in (2, 50, 120):
        batch = np.stack([mel[:, :frames], mel[:, :frames] * 0.5])
        got = onnx_encoder(batch)
        assert got.shape == (7, 2, frames // 2, 512)
        _assert_states_close(numpy_encoder(batch), got)


def test_frontend_takes_it(numpy_encoder, onnx_encoder):
    config = preset("robust")
    ys = [audio.load(p, sr=16000) for p in CLIPS[:2]]
    expected = featurize_many(ys, config, encoder=numpy_encoder)
    got = featurize_many(ys, config, encoder=onnx_encoder)
    assert all(np.abs(e - g).max() <= ATOL for e, g in zip(expected, got))


def test_input_checks_match_numpy(onnx_encoder):
    for bad, match in [(np.zeros((3, 80, 10), np.float32)[:, :79], "mel must have shape"),
                       (np.zeros((80, 7), np.float32), "even number of frames"),
                       (np.zeros((80, 3002), np.float32), "between 2 and 3000"),
                       (np.full((80, 10), np.nan, np.float32), "NaN")]:
        with pytest.raises(ValueError, match=match):
            onnx_encoder(bad)


def test_fallback_to_numpy_where_an_op_is_missing(graph, numpy_encoder):
    broken = type(graph)()
    broken.CopyFrom(graph)
    # An op ONNX Runtime has no kernel for stands in for one an older runtime lacks.
    gelu = next(n for n in broken.graph.node if n.op_type == "Erf")
    gelu.op_type = "ErfThatDoesNotExist"
    enc = OnnxWhisperEncoder(broken.SerializeToString())
    assert enc.backend == "numpy" and "fallback" in enc.describe()
    mel = _mel(CLIPS[0])
    np.testing.assert_array_equal(enc(mel), numpy_encoder(mel))


def test_graph_variables_round_trip(graph, variables):
    back = graph_variables(graph)
    for name, value in variables.items():
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            np.testing.assert_array_equal(back[name], np.asarray(value, np.float32), err_msg=name)
    assert int(back["encoder/num_heads"]) == int(variables["encoder/num_heads"])


@pytest.fixture(scope="module")
def int8_graph(graph):
    return quantize_graph(graph, "int8-linear")


def test_int8_graph_runs_close_to_float32(int8_graph, onnx_encoder):
    enc = OnnxWhisperEncoder(int8_graph.SerializeToString(), precision="int8")
    assert enc.precision == "int8" and "ONNX Runtime int8" in enc.describe()
    mel = _mel(CLIPS[1])
    a, b = stats_pool(onnx_encoder(mel)[:, 0]), stats_pool(enc(mel)[:, 0])
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.98  # 0.984 is the lowest of 100 RAVDESS clips (benchmarks/encoder_onnx.py)


def test_int8_graph_weights_dequantize_to_the_originals(int8_graph, variables):
    back = graph_variables(int8_graph)
    for name in ("encoder/layer_0/ffn/linear_0/weight", "encoder/layer_5/self_attention/linear_0/weight"):
        w = np.asarray(variables[name], np.float32)
        # int8 per output channel (rows of the (out, in) weight): within half a step of that row's scale.
        step = np.abs(w).max(axis=1, keepdims=True) / 127
        assert back[name].shape == w.shape and np.all(np.abs(back[name] - w) <= step / 2 + 1e-7), name
    assert int(back["encoder/num_heads"]) == int(variables["encoder/num_heads"])


def test_int8_graph_runs_dequantized_in_float32(int8_graph):
    mel = _mel(CLIPS[2])
    as_int8 = OnnxWhisperEncoder(int8_graph.SerializeToString(), precision="int8")
    as_float = OnnxWhisperEncoder(int8_graph.SerializeToString(), precision="float32")
    assert (as_float.graph_precision, as_float.precision, as_float.backend) == ("int8", "float32", "onnxruntime")
    assert "float32 (the int8 graph dequantized)" in as_float.describe()
    # The same weights in numpy: the dequantized graph is that computation, to float32 parity.
    _assert_states_close(WhisperEncoder(graph_variables(int8_graph))(mel), as_float(mel))
    # ... and close to the int8 run it replaces (only the activations' rounding differs).
    a, b = stats_pool(as_int8(mel)[:, 0]), stats_pool(as_float(mel)[:, 0])
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.98


def test_run_precision_follows_the_cpu_and_the_environment(int8_graph, monkeypatch):
    import ser.encoder_onnx as eo
    from ser.errors import ConfigError

    monkeypatch.delenv(eo.PRECISION_ENV, raising=False)
    monkeypatch.setattr(eo, "int8_instructions", lambda: ())
    assert eo.run_precision() == ("float32", "this CPU has no int8 matrix instructions (VNNI, AMX, dot product)")
    enc = OnnxWhisperEncoder(int8_graph.SerializeToString())
    assert enc.precision == "float32" and "no int8 matrix instructions" in enc.describe()
    monkeypatch.setattr(eo, "int8_instructions", lambda: ("AVX512-VNNI",))
    assert eo.run_precision() == ("int8", "this CPU has AVX512-VNNI")
    monkeypatch.setenv(eo.PRECISION_ENV, "float32")
    assert eo.run_precision()[0] == "float32"
    monkeypatch.setenv(eo.PRECISION_ENV, "int4")
    with pytest.raises(ConfigError, match="SER_ENCODER_PRECISION='int4'"):
        eo.run_precision()


def test_int8_instructions_of_this_cpu():
    from ser.doctor import cpu_features
    from ser.encoder_onnx import INT8_INSTRUCTIONS, int8_instructions

    assert set(int8_instructions()) == set(INT8_INSTRUCTIONS) & set(cpu_features())


def test_int8_graph_falls_back_to_its_own_weights(int8_graph, caplog):
    quantized = type(int8_graph)()
    quantized.CopyFrom(int8_graph)
    node = next(n for n in quantized.graph.node if n.op_type == "MatMulInteger")
    node.op_type = "MatMulIntegerThatDoesNotExist"
    enc = OnnxWhisperEncoder(quantized.SerializeToString(), precision="int8")
    assert enc.backend == "numpy" and "using the numpy encoder instead" in caplog.text
    mel = _mel(CLIPS[0])
    np.testing.assert_array_equal(enc(mel), WhisperEncoder(graph_variables(int8_graph))(mel))


def test_not_an_encoder_graph(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="x.onnx"):
        OnnxWhisperEncoder(path)
    with pytest.raises(ModelError, match="cannot read"):
        OnnxWhisperEncoder(tmp_path / "missing.onnx")


# --------------------------------------------------------------------------- model folders


def _folder_with_graph(tmp: Path, graph_bytes: bytes, encoder_graph: str) -> Path:
    """The bundled default model with ``encoder.onnx`` in place of ``encoder.npz``, re-checksummed."""
    import json
    import shutil

    from ser.modelfolder import DEFAULT_MODEL, ENCODER_FILE, ENCODER_GRAPH_FILE, write_checksums

    folder = tmp / "model"
    shutil.copytree(DEFAULT_MODEL, folder, ignore=shutil.ignore_patterns(ENCODER_FILE))
    (folder / ENCODER_GRAPH_FILE).write_bytes(graph_bytes)
    config = json.loads((folder / "config.json").read_text())
    config["features"]["encoder_graph"] = encoder_graph
    (folder / "config.json").write_text(json.dumps(config))
    write_checksums(folder)
    return folder


@pytest.fixture(scope="module")
def graph_folder(graph, tmp_path_factory):
    return _folder_with_graph(tmp_path_factory.mktemp("graph"), graph.SerializeToString(), "float32")


def test_model_folder_runs_its_encoder_graph(graph_folder, numpy_encoder):
    from ser.inference import Recognizer

    rec = Recognizer.load(graph_folder)
    assert rec.encoder.backend == "onnxruntime" and rec.encoder.precision == "float32"
    with_numpy = rec.replace(encoder=numpy_encoder)  # the same heads on the numpy encoder
    got, expected = rec.predict_file(CLIPS[0]), with_numpy.predict_file(CLIPS[0])
    assert got.label == expected.label
    assert max(abs(got.scores[k] - expected.scores[k]) for k in got.scores) < 1e-4


def test_bundled_default_runs_its_int8_graph(monkeypatch):
    """The default model's int8 graph, and the same graph dequantized where int8 is slow: same labels."""
    from ser.encoder_onnx import PRECISION_ENV
    from ser.errors import ConfigError
    from ser.inference import Recognizer

    bundled = Recognizer.load()
    assert bundled.config.features.encoder_graph == "int8-linear" and bundled.encoder.graph_precision == "int8"
    monkeypatch.setenv(PRECISION_ENV, "fp16")
    with pytest.raises(ConfigError, match=r"^\$SER_ENCODER_PRECISION='fp16': expected auto, int8 or float32$"):
        Recognizer.load()
    monkeypatch.setenv(PRECISION_ENV, "float32")
    dequantized = Recognizer.load()
    assert dequantized.encoder.precision == "float32" and "dequantized" in dequantized.encoder.describe()
    for clip in CLIPS:
        a, b = bundled.predict_file(clip), dequantized.predict_file(clip)
        assert a.label == b.label, clip.name
        assert max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < 0.1, clip.name


def test_model_folder_save_keeps_the_graph(graph_folder, tmp_path):
    from ser.inference import Recognizer
    from ser.modelfolder import ENCODER_FILE, ENCODER_GRAPH_FILE

    out = Recognizer.load(graph_folder).save(tmp_path / "copy")
    assert (out / ENCODER_GRAPH_FILE).read_bytes() == (graph_folder / ENCODER_GRAPH_FILE).read_bytes()
    assert not (out / ENCODER_FILE).exists()
    assert "ONNX graph on ONNX Runtime, float32" in (out / "README.md").read_text()


def test_model_folder_refuses_a_graph_of_another_precision(graph, tmp_path):
    from ser.modelfolder import read_model_folder

    for wanted, match in [("int8-ffn-in", "a float32 graph, but config.json says"), ("none", "was not trained with")]:
        folder = _folder_with_graph(tmp_path / wanted, graph.SerializeToString(), wanted)
        with pytest.raises(ModelError, match=match):
            read_model_folder(folder)


def test_model_folder_names_the_graphs_own_precision(int8_graph, tmp_path, monkeypatch):
    """An int8 graph run dequantized is still an int8 graph: the refusal says what the file holds."""
    from ser.encoder_onnx import PRECISION_ENV
    from ser.modelfolder import read_model_folder

    monkeypatch.setenv(PRECISION_ENV, "float32")
    folder = _folder_with_graph(tmp_path, int8_graph.SerializeToString(), "float32")
    with pytest.raises(ModelError, match="a int8 graph, but config.json says features.encoder_graph='float32'"):
        read_model_folder(folder)


def test_predict_verbose_names_the_encoder(graph_folder, capsys):
    from ser.cli import main

    assert main(["predict", "--verbose", "--model", str(graph_folder), str(CLIPS[0])]) == 0
    assert "Whisper encoder: ONNX Runtime float32" in capsys.readouterr().err


def test_describe_the_numpy_encoders(numpy_encoder):
    from ser.frontend import describe_encoder

    config = preset("robust")
    assert describe_encoder(numpy_encoder, config) == ("Whisper encoder: numpy float32 (float32 weights, "
                                                       "from the model folder's encoder.npz)")
    assert "shared CTranslate2 weights" in describe_encoder(None, config)
    assert "no speech encoder" in describe_encoder(None, preset("fast"))


def test_config_refuses_a_graph_over_rounded_weights():
    from ser.errors import ConfigError

    assert preset("robust").override({"features.encoder_graph": "int8-linear"}).features.encoder_graph == "int8-linear"
    with pytest.raises(ConfigError, match="encoder_graph='int8'.*encoder_precision='float32'"):
        preset("robust").override({"features.encoder_graph": "int8", "features.encoder_precision": "int8"})
    with pytest.raises(ConfigError, match="features.encoder_graph"):
        preset("robust").override({"features.encoder_graph": "int4"})


def test_loading_a_graph_does_not_import_onnx(int8_graph, tmp_path):
    """`import onnx` costs 0.7 s of a cold `ser predict`; ONNX Runtime alone reads the graph."""
    import subprocess
    import sys

    path = tmp_path / "encoder.onnx"
    path.write_bytes(int8_graph.SerializeToString())
    code = ("import sys; from ser.encoder_onnx import OnnxWhisperEncoder; "
            f"e = OnnxWhisperEncoder({str(path)!r}, precision='int8'); "
            "assert (e.n_mels, e.n_layers, e.dim, e._max_frames) == (80, 7, 512, 3000), e.__dict__; "
            "assert 'onnx' not in sys.modules, 'onnx imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
