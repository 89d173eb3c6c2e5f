"""ONNX / TFLite / Keras export: same probabilities as the Keras model, and ONNX inference without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ser.config import preset
from ser.errors import ModelError
from ser.export import OnnxRunner, export_keras, export_onnx, export_tflite

keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

TOL = 1e-4


def _randomize(model, seed: int):
    """Give every weight non-trivial values (positive variances), so the parity tests test something.

    Normalization keeps its adapted statistics (from deliberately off-centre data):
    Keras caches them at adapt time, and set_weights would leave that cache stale.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _randomize(layer, seed + 1)
        elif isinstance(layer, keras.layers.BatchNormalization):
            g, b, mu, var = layer.get_weights()
            layer.set_weights([rng.normal(1, 0.3, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.5, mu.shape), rng.uniform(0.2, 3.0, var.shape)])
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            fan_in = int(np.prod(layer.kernel.shape[:-1]))
            layer.set_weights([rng.normal(0, 1.5 / np.sqrt(fan_in), w.shape) for w in layer.get_weights()])
    return model


def _cnn(seed: int = 0, *, norm: bool = True, shape=(32, 63), kernel_size: int = 3):
    config = preset("tiny").override({"model.input_normalization": norm, "model.kernel_size": kernel_size})
    x_train = np.random.default_rng(seed).normal(2.0, 3.0, (24, *shape)).astype(np.float32)
    from ser.models import build_model

    return _randomize(build_model(config, input_shape=shape, x_train=x_train), seed)


def _mlp(seed: int = 0, *, layers: str = "weighted"):
    config = preset("accurate").override({"model.layers": layers})
    rng = np.random.default_rng(seed)
    # Per-(layer, dim) offsets and scales, like real encoder features.
    x_train = (rng.normal(0, 2, (1, 7, 1024)) + rng.uniform(0.5, 3, (1, 7, 1024)) * rng.normal(size=(16, 7, 1024)))
    from ser.models import build_model

    model = build_model(config, input_shape=(7, 1024), x_train=x_train.astype(np.float32))
    return _randomize(model, seed)


def _ensemble(members):
    # Exactly as ser.training.fit combines its members.
    for k, m in enumerate(members):
        m.name = f"member{k}"
    inputs = keras.Input(shape=members[0].input_shape[1:], name="features")
    outputs = keras.layers.Average(name="ensemble_mean")([m(inputs) for m in members])
    return keras.Model(inputs, outputs, name="ser_ensemble")


def _inputs(model, n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(1.0, 3.0, (n, *model.input_shape[1:])).astype(np.float32)


def _check_parity(model, path: Path) -> float:
    export_onnx(model, path)
    runner = OnnxRunner(path, threads=1)
    worst = 0.0
    for n in (1, 5):  # dynamic batch
        x = _inputs(model, n, seed=n)
        expected = keras.ops.convert_to_numpy(model(x, training=False))
        got = runner(x)
        assert got.shape == expected.shape and got.dtype == np.float64
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
        worst = max(worst, float(np.abs(got - expected).max()))
    assert worst < TOL, f"max abs difference {worst:.2e}"
    return worst


@pytest.mark.parametrize(("norm", "shape", "kernel_size"), [
    (True, (32, 63), 3),
    (False, (32, 63), 3),
    (True, (31, 45), 4),  # odd sizes: pooling floors; an even kernel pads one more at the end
])
def test_onnx_matches_keras_cnn2d(tmp_path, norm, shape, kernel_size):
    _check_parity(_cnn(norm=norm, shape=shape, kernel_size=kernel_size), tmp_path / "model.onnx")


@pytest.mark.parametrize("layers", ["weighted", "last"])
def test_onnx_matches_keras_mlp(tmp_path, layers):
    _check_parity(_mlp(layers=layers), tmp_path / "model.onnx")


def test_onnx_matches_keras_ensemble(tmp_path):
    model = _ensemble([_cnn(0), _cnn(10)])
    _check_parity(model, tmp_path / "model.onnx")
    # Both branches are in the graph, under their own names.
    names = {n.name.split("/")[0] for n in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert {"member0", "member1"} <= names


def test_onnx_matches_keras_mlp_ensemble(tmp_path):
    _check_parity(_ensemble([_mlp(0), _mlp(5, layers="last")]), tmp_path / "model.onnx")


def test_onnx_of_rebuilt_copy_matches(tmp_path):
    # Recognizer.save rebuilds the model (from_config + set_weights), which leaves
    # Keras' cached Normalization statistics stale; the export reads the variables.
    model = _cnn(3)
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    export_onnx(copy, tmp_path / "model.onnx")
    x = _inputs(model, 4)
    got = OnnxRunner(tmp_path / "model.onnx")(x)
    assert np.abs(got - keras.ops.convert_to_numpy(model(x))).max() < TOL


def test_onnx_normalization_epsilon(tmp_path):
    # A constant feature row (variance 0): Keras divides by max(sqrt(var), epsilon()).
    x_train = np.random.default_rng(0).normal(size=(10, 3, 4, 1)).astype(np.float32)
    x_train[:, 0] = 0.5
    inputs = keras.Input((3, 4, 1), name="features")
    norm = keras.layers.Normalization(axis=1)
    norm.adapt(x_train)
    x = keras.layers.Flatten()(norm(inputs))
    dense = keras.layers.Dense(12, use_bias=False, kernel_initializer="identity")
    model = keras.Model(inputs, dense(x))
    export_onnx(model, tmp_path / "model.onnx")
    x = x_train[:2] + np.float32(1e-6)
    expected = keras.ops.convert_to_numpy(model(x))
    assert np.abs(expected).max() > 1.0  # the 1e-6 offset on the constant row, divided by 1e-7
    np.testing.assert_allclose(OnnxRunner(tmp_path / "model.onnx")(x), expected, rtol=1e-5, atol=1e-5)


def test_onnx_graph_interface(tmp_path):
    path = export_onnx(_cnn(norm=False), tmp_path / "sub" / "model.onnx", opset=13)
    assert path == tmp_path / "sub" / "model.onnx"
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    (inp,), (out,) = proto.graph.input, proto.graph.output

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    assert (inp.name, dims(inp)) == ("features", ["N", 32, 63, 1])
    assert (out.name, dims(out)) == ("probs", ["N", 8])
    assert proto.opset_import[0].version == 13
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["model.onnx"]  # no temp files left


def test_onnx_rejects_unsupported_layer(tmp_path):
    inputs = keras.Input((8, 5, 1), name="features")
    x = keras.layers.Reshape((8, 5))(inputs)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    with pytest.raises(ModelError, match="LayerNormalization"):
        export_onnx(model, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_onnx_rejects_unsupported_activation_and_opset(tmp_path):
    inputs = keras.Input((4, 3, 1), name="features")
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="tanh", name="out")(x))
    with pytest.raises(ModelError, match="'out'.*tanh"):
        export_onnx(model, tmp_path / "model.onnx")
    with pytest.raises(ModelError, match="opset=12"):
        export_onnx(_cnn(norm=False), tmp_path / "model.onnx", opset=12)


def test_runner_checks_input(tmp_path):
    path = export_onnx(_cnn(norm=False), tmp_path / "model.onnx")
    runner = OnnxRunner(path)
    assert runner.input_shape == (None, 32, 63, 1) and runner.n_classes == 8
    with pytest.raises(ValueError, match=r"shape \(2, 32, 63\)"):
        runner(np.zeros((2, 32, 63), np.float32))
    with pytest.raises(ValueError, match="threads=0"):
        OnnxRunner(path, threads=0)
    with pytest.raises(ModelError, match="not found"):
        OnnxRunner(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        OnnxRunner(tmp_path / "bad.onnx")


def test_runner_does_not_import_tensorflow(tmp_path):
    model = _cnn(norm=True)
    path = export_onnx(model, tmp_path / "model.onnx")
    x = _inputs(model, 2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", keras.ops.convert_to_numpy(model(x)))
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import ser.export
        runner = ser.export.OnnxRunner({str(path)!r})
        got = runner(np.load({str(tmp_path / 'x.npy')!r}))
        assert np.abs(got - np.load({str(tmp_path / 'expected.npy')!r})).max() < {TOL}
        loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'onnx'))
        assert not loaded, loaded
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr


def _tflite_probs(path: Path, x: np.ndarray) -> np.ndarray:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # deprecated in TF 2.20+, still there
    interpreter = Interpreter(model_path=str(path))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
@pytest.mark.parametrize("route", ["keras", "saved_model"])
def test_tflite_matches_keras(tmp_path, monkeypatch, route):
    tf = pytest.importorskip("tensorflow")
    model = _cnn(norm=True)
    if route == "saved_model":
        # Force the fallback route (used where from_keras_model fails on Keras 3).
        def fail(*args, **kwargs):
            raise RuntimeError("from_keras_model disabled by the test")

        monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model", fail)
    try:
        path = export_tflite(model, tmp_path / "model.tflite")
    except ModelError as exc:
        pytest.skip(f"TFLite conversion unsupported here: {exc}")
    x = _inputs(model, 3)
    assert np.abs(_tflite_probs(path, x) - keras.ops.convert_to_numpy(model(x))).max() < TOL


def test_export_keras_roundtrip(tmp_path):
    model = _cnn(norm=True)
    path = export_keras(model, tmp_path / "model.keras")
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
    again = keras.models.load_model(path, compile=False, safe_mode=True)
    x = _inputs(model, 2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)
    with pytest.raises(ValueError, match="'.keras'"):
        export_keras(model, tmp_path / "model.h5")
