"""Trained models in other formats: ONNX (inference without TensorFlow), TFLite and Keras.

Importing TensorFlow costs about four seconds, more than a whole prediction, so a
model folder can also carry ``model.onnx``, which :class:`OnnxRunner` runs with
ONNX Runtime alone. This module imports neither TensorFlow nor Keras at the top:
only the exporters do, inside the functions.

The ONNX graph is written here from the Keras layers with ``onnx.helper`` rather
than with tf2onnx, which lags behind TensorFlow releases. It therefore covers
exactly the layers :mod:`ser.models` and :func:`ser.training.fit` produce
(anything else raises :class:`~ser.errors.ModelError` naming the layer), and every
supported layer is written to compute what Keras computes, so probabilities agree
to float32 round-off.

>>> from ser.export import export_onnx, OnnxRunner       # doctest: +SKIP
>>> export_onnx(recognizer.model, "model/model.onnx")     # doctest: +SKIP
>>> OnnxRunner("model/model.onnx")(x[..., None]).shape   # doctest: +SKIP
(1, 8)
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser.errors import ModelError
from ser.runtime import OnnxRunner  # noqa: F401 - its home before ser.runtime; kept for imports
from ser.utils import atomic_write_bytes, current_umask

log = logging.getLogger(__name__)

#: Names of the ONNX graph's input and output.
INPUT_NAME = "features"
OUTPUT_NAME = "probs"
#: Opset 13 is the first with ``Softmax`` over one axis (Keras semantics) and
#: ``Squeeze``/``Slice`` taking their axes as inputs.
MIN_OPSET = 13

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "OnnxRunner", "export_keras", "export_onnx", "export_tflite"]


# --- ONNX export -----------------------------------------------------------

@dataclass(frozen=True)
class _Tensor:
    """A value in the ONNX graph being written.

    ``nchw`` marks a 4-D value stored channels-first: ONNX ``Conv``/``MaxPool``
    want NCHW, Keras works in NHWC, so image tensors stay NCHW between conv
    blocks and are transposed back only where NHWC order matters (``Flatten``,
    ``Dense``, ``Reshape``...).
    """

    name: str
    nchw: bool = False


class _GraphWriter:
    """Collects ONNX nodes and initializers while the Keras graph is walked."""

    def __init__(self, keras_module: Any) -> None:
        self.keras = keras_module
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = {INPUT_NAME, OUTPUT_NAME}
        # One NHWC <-> NCHW transpose per value, however many consumers need it.
        self._transposed: dict[tuple[str, bool], _Tensor] = {}

    # -- naming, constants, nodes -------------------------------------
    def unique(self, name: str) -> str:
        base, k = name, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.unique(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name=name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        from onnx import helper

        out = self.unique(name)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def numpy(self, value: Any) -> np.ndarray:
        return np.asarray(self.keras.ops.convert_to_numpy(value), dtype=np.float32)

    # -- layouts ---------------------------------------------------------
    def keras_layout(self, t: _Tensor) -> _Tensor:
        """``t`` in Keras' own (NHWC) order."""
        return self._transpose(t, nchw=False)

    def nchw(self, t: _Tensor) -> _Tensor:
        """``t`` (a 4-D image tensor) in ONNX's NCHW order."""
        return self._transpose(t, nchw=True)

    def _transpose(self, t: _Tensor, *, nchw: bool) -> _Tensor:
        if t.nchw == nchw:
            return t
        key = (t.name, nchw)
        if key not in self._transposed:
            perm = [0, 3, 1, 2] if nchw else [0, 2, 3, 1]
            name = self.node("Transpose", [t.name], f"{t.name}/{'to_nchw' if nchw else 'to_nhwc'}", perm=perm)
            self._transposed[key] = _Tensor(name, nchw)
        return self._transposed[key]

    def activation(self, t: _Tensor, activation: Any, scope: str, *, channel_axis: int = -1) -> _Tensor:
        """Apply a Keras activation function; only those our models use."""
        name = getattr(activation, "__name__", str(activation))
        if name == "linear":
            return t
        if name == "relu":
            return _Tensor(self.node("Relu", [t.name], f"{scope}/Relu"), t.nchw)
        if name == "softmax":
            # Keras' softmax is over the last (channel) axis.
            return _Tensor(self.node("Softmax", [t.name], f"{scope}/Softmax", axis=channel_axis), t.nchw)
        raise ModelError(f"layer {scope!r}: activation {name!r} is not supported by the ONNX export "
                         "(supported: linear, relu, softmax)")


def export_onnx(model: Any, path: str | os.PathLike, *, opset: int = 17) -> Path:
    """Write a Keras model built by :mod:`ser.models` (or an ensemble of them) as ONNX.

    The graph is written layer by layer from the model's functional graph, so
    ensembles (nested member models averaged by ``keras.layers.Average``) keep
    their branches. Inference-mode semantics: dropout is the identity and batch
    normalisation uses its moving statistics.

    Parameters
    ----------
    model : keras.Model
        A functional model with one input of shape ``(None, F, T, 1)`` and one
        output of shape ``(None, n_classes)``.
    path : str or path-like
        Where to write the ``.onnx`` file (atomically: written aside, then renamed).
    opset : int
        ONNX opset of the default domain, at least 13 and at most what the
        installed ``onnx`` knows.

    Returns
    -------
    pathlib.Path
        ``path``. The graph's input is ``features`` (float32, shape ``[N, F, T, 1]``,
        dynamic ``N``) and its output ``probs`` (float32, ``[N, n_classes]``).

    Raises
    ------
    ModelError
        A layer, activation or layer option the export does not support (the
        message names it), or a model that is not a one-input, one-output
        functional model.
    """
    import keras
    import onnx
    from onnx import TensorProto, helper

    if not isinstance(opset, int) or not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ModelError(f"opset={opset!r}: expected an integer from {MIN_OPSET} to "
                         f"{onnx.defs.onnx_opset_version()}")
    _check_functional(model, keras)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"model {model.name!r}: expected one input and one output, got "
                         f"{len(model.inputs)} and {len(model.outputs)}")

    writer = _GraphWriter(keras)
    (out,) = _convert_model(writer, model, [_Tensor(INPUT_NAME)], scope="", top=True)
    out = writer.keras_layout(out)
    writer.nodes.append(helper.make_node("Identity", [out.name], [OUTPUT_NAME], name=OUTPUT_NAME))

    def value_info(name: str, shape: tuple) -> Any:
        # None in a Keras shape is a dynamic dimension: the batch (N) or any other.
        dims = [("N" if i == 0 else f"d{i}") if d is None else int(d) for i, d in enumerate(shape)]
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    graph = helper.make_graph(writer.nodes, model.name or "ser", [value_info(INPUT_NAME, model.inputs[0].shape)],
                              [value_info(OUTPUT_NAME, model.outputs[0].shape)], initializer=writer.initializers)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="ser", doc_string=f"ser model {model.name}")
    # The lowest IR version the opset allows, so older ONNX Runtime releases load the file too.
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types; any means a bug here
        raise ModelError(f"model {model.name!r}: the exported ONNX graph is invalid ({exc})") from exc
    return atomic_write_bytes(path, proto.SerializeToString())


def _check_functional(model: Any, keras: Any) -> None:
    # Subclassed models have no layer graph to walk; Sequential ones are walked in order.
    if not isinstance(model, keras.Model) or not (isinstance(model, keras.Sequential)
                                                  or hasattr(model, "_operations")):
        raise ModelError(f"model of type {type(model).__name__}: expected a functional or Sequential keras.Model")


def _convert_model(w: _GraphWriter, model: Any, args: list[_Tensor], scope: str, *,
                   top: bool = False) -> list[_Tensor]:
    """Write ``model`` applied to ``args``; returns its outputs.

    Values are found by walking back from the outputs through each tensor's
    producing node (``_keras_history``), so branches and nested models are
    followed as Keras connected them, whatever order ``model.layers`` lists.
    """
    keras = w.keras
    # Nested models get their own name scope: ensemble members repeat the same layer names.
    scope = scope if top else f"{scope}{model.name}/"
    if isinstance(model, keras.Sequential):
        (t,) = args
        for layer in model.layers:
            (t,) = _convert_layer(w, layer, [t], scope)
        return [t]
    if len(args) != len(model.inputs):
        raise ModelError(f"model {model.name!r}: called with {len(args)} inputs, expects {len(model.inputs)}")
    values: dict[int, _Tensor] = {id(k): a for k, a in zip(model.inputs, args)}

    def value(kt: Any) -> _Tensor:
        if id(kt) in values:
            return values[id(kt)]
        op, node_index, tensor_index = kt._keras_history
        node = op._inbound_nodes[node_index]
        inputs = [value(t) for t in node.input_tensors]
        outputs = _convert_layer(w, op, inputs, scope)
        for t, out in zip(node.output_tensors, outputs):
            values[id(t)] = out
        return outputs[tensor_index]

    return [value(t) for t in model.outputs]


def _convert_layer(w: _GraphWriter, layer: Any, inputs: list[_Tensor], scope: str) -> list[_Tensor]:
    """Write one Keras layer (or nested model); returns its outputs."""
    L = w.keras.layers
    s = f"{scope}{layer.name}"
    if isinstance(layer, w.keras.Model):
        _check_functional(layer, w.keras)
        return _convert_model(w, layer, inputs, scope)
    if isinstance(layer, L.InputLayer):
        return inputs
    if isinstance(layer, L.Average):
        # Elementwise, so any common layout will do: keep NCHW if every branch is.
        nchw = all(t.nchw for t in inputs)
        names = [(w.nchw(t) if nchw else w.keras_layout(t)).name for t in inputs]
        # Sum then divide, the arithmetic Keras uses, rather than ONNX Mean.
        total = w.node("Sum", names, f"{s}/Sum")
        n = w.const(f"{s}/n", np.array(len(inputs), dtype=np.float32))
        return [_Tensor(w.node("Div", [total, n], f"{s}/Div"), nchw)]
    if len(inputs) != 1:
        raise ModelError(f"layer {s!r} ({type(layer).__name__}): called on {len(inputs)} inputs, expected 1")
    (x,) = inputs
    if isinstance(layer, L.Dropout):
        return [x]  # identity at inference
    if isinstance(layer, L.Normalization):
        return [_normalization(w, layer, w.keras_layout(x), s)]
    if isinstance(layer, L.Conv2D):
        return [_conv2d(w, layer, x, s)]
    if isinstance(layer, L.BatchNormalization):
        return [_batch_norm(w, layer, x, s)]
    if isinstance(layer, L.MaxPooling2D):
        return [_max_pool(w, layer, x, s)]
    if isinstance(layer, L.Flatten):
        _channels_last(layer, s)
        # Keras flattens in NHWC order; the dense weights that follow depend on it.
        return [_Tensor(w.node("Flatten", [w.keras_layout(x).name], f"{s}/Flatten", axis=1))]
    if isinstance(layer, L.Dense):
        return [_dense(w, layer, w.keras_layout(x), s)]
    if isinstance(layer, L.Reshape):
        # 0 copies the (dynamic) batch dimension; target_shape excludes it, may hold one -1.
        shape = w.const(f"{s}/shape", np.array([0, *layer.target_shape], dtype=np.int64))
        return [_Tensor(w.node("Reshape", [w.keras_layout(x).name, shape], f"{s}/Reshape"))]
    if isinstance(layer, L.Permute):
        perm = [0, *(int(d) for d in layer.dims)]
        return [_Tensor(w.node("Transpose", [w.keras_layout(x).name], f"{s}/Transpose", perm=perm))]
    if isinstance(layer, L.Cropping1D):
        begin, end = (int(c) for c in layer.cropping)
        starts = w.const(f"{s}/starts", np.array([begin], dtype=np.int64))
        # A negative end counts from the back; no cropping at the end means "to the end".
        ends = w.const(f"{s}/ends", np.array([-end if end else np.iinfo(np.int64).max], dtype=np.int64))
        axes = w.const(f"{s}/axes", np.array([1], dtype=np.int64))
        return [_Tensor(w.node("Slice", [w.keras_layout(x).name, starts, ends, axes], f"{s}/Slice"))]
    raise ModelError(f"layer {s!r}: layer type {type(layer).__name__} is not supported by the ONNX export")


def _channels_last(layer: Any, scope: str) -> None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ModelError(f"layer {scope!r}: data_format={layer.data_format!r} is not supported "
                         "(expected 'channels_last')")


def _normalization(w: _GraphWriter, layer: Any, x: _Tensor, s: str) -> _Tensor:
    if getattr(layer, "invert", False):
        raise ModelError(f"layer {s!r}: Normalization(invert=True) is not supported by the ONNX export")
    if layer.input_mean is None:
        # Adapted statistics. Read the variables (what model.keras stores and a reload
        # gives), not the cached broadcast copies `layer.mean`/`layer.variance`:
        # Keras refreshes those only in adapt() or a load, so after set_weights() they
        # are stale (as in a model rebuilt with from_config + set_weights).
        mean = w.numpy(layer.adapt_mean).reshape(layer._broadcast_shape)
        var = w.numpy(layer.adapt_variance).reshape(layer._broadcast_shape)
        live = w.numpy(layer.mean)
        if live.shape != mean.shape or not np.array_equal(live, mean):
            log.warning("layer %r: its cached mean differs from its variables (set_weights without "
                        "finalize_state?); the export uses the variables, as model.keras does", s)
    else:
        mean, var = w.numpy(layer.mean), w.numpy(layer.variance)
    # Keras: (x - mean) / maximum(sqrt(variance), epsilon()), broadcast with batch axis 1.
    # Done on the constants here in float32, so the graph divides by the same numbers.
    eps = np.float32(w.keras.config.epsilon())
    denom = np.maximum(np.sqrt(var), eps).astype(np.float32)
    centred = w.node("Sub", [x.name, w.const(f"{s}/mean", mean)], f"{s}/Sub")
    return _Tensor(w.node("Div", [centred, w.const(f"{s}/denominator", denom)], f"{s}/Div"))


def _conv2d(w: _GraphWriter, layer: Any, x: _Tensor, s: str) -> _Tensor:
    _channels_last(layer, s)
    if layer.padding not in ("same", "valid"):
        raise ModelError(f"layer {s!r}: padding={layer.padding!r} is not supported by the ONNX export")
    # Keras kernel (kh, kw, in/groups, out) -> ONNX (out, in/groups, kh, kw).
    kernel = w.const(f"{s}/kernel", w.numpy(layer.kernel).transpose(3, 2, 0, 1))
    inputs = [w.nchw(x).name, kernel]
    if layer.use_bias:
        inputs.append(w.const(f"{s}/bias", w.numpy(layer.bias)))
    # SAME_UPPER puts the odd padding pixel at the end, as TensorFlow's "same" does.
    y = w.node("Conv", inputs, f"{s}/Conv", auto_pad="SAME_UPPER" if layer.padding == "same" else "VALID",
               kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
               dilations=list(layer.dilation_rate), group=int(layer.groups))
    return w.activation(_Tensor(y, nchw=True), layer.activation, s, channel_axis=1)


def _batch_norm(w: _GraphWriter, layer: Any, x: _Tensor, s: str) -> _Tensor:
    axis = layer.axis if isinstance(layer.axis, int) else None
    if axis is None:
        raise ModelError(f"layer {s!r}: BatchNormalization over axes {layer.axis} is not supported")
    mean, var = w.numpy(layer.moving_mean), w.numpy(layer.moving_variance)
    gamma = w.numpy(layer.gamma) if layer.scale else np.ones_like(mean)
    beta = w.numpy(layer.beta) if layer.center else np.zeros_like(mean)
    # tf.nn.batch_normalization's own arithmetic, in float32:
    # inv = rsqrt(var + eps) * gamma; y = x * inv + (beta - mean * inv).
    inv = (np.float32(1) / np.sqrt(var + np.float32(layer.epsilon))).astype(np.float32) * gamma
    shift = (beta - mean * inv).astype(np.float32)
    # Broadcast along the normalised axis in whichever layout the value is stored:
    # a constant of shape (C, 1, ..., 1) with as many trailing 1s as axes after it.
    if axis >= 0:
        # Keras keeps the axis as given (default -1); a positive one needs the rank.
        ndim = len((getattr(layer, "_build_shapes_dict", None) or {}).get("input_shape") or ())
        if not 0 <= axis < ndim:
            raise ModelError(f"layer {s!r}: BatchNormalization(axis={axis}) on an input of unknown rank")
        axis -= ndim
    if x.nchw:
        # NHWC axes H, W, C (-3, -2, -1) are NCHW axes -2, -1, -3.
        axis = {-3: -2, -2: -1, -1: -3}.get(axis, axis)
    shape = [-1] + [1] * (-axis - 1)
    scaled = w.node("Mul", [x.name, w.const(f"{s}/scale", inv.reshape(shape))], f"{s}/Mul")
    return _Tensor(w.node("Add", [scaled, w.const(f"{s}/shift", shift.reshape(shape))], f"{s}/Add"), x.nchw)


def _max_pool(w: _GraphWriter, layer: Any, x: _Tensor, s: str) -> _Tensor:
    _channels_last(layer, s)
    if layer.padding not in ("same", "valid"):
        raise ModelError(f"layer {s!r}: padding={layer.padding!r} is not supported by the ONNX export")
    # "valid" floors the output size, as ONNX MaxPool does without padding.
    y = w.node("MaxPool", [w.nchw(x).name], f"{s}/MaxPool", kernel_shape=list(layer.pool_size),
               strides=list(layer.strides), auto_pad="SAME_UPPER" if layer.padding == "same" else "VALID")
    return _Tensor(y, nchw=True)


def _dense(w: _GraphWriter, layer: Any, x: _Tensor, s: str) -> _Tensor:
    if getattr(layer, "quantization_mode", None):
        raise ModelError(f"layer {s!r}: quantized Dense ({layer.quantization_mode}) is not supported")
    # MatMul broadcasts over leading axes, so Dense on the last axis of a 3-D
    # tensor (the learned layer weights) needs nothing special.
    y = w.node("MatMul", [x.name, w.const(f"{s}/kernel", w.numpy(layer.kernel))], f"{s}/MatMul")
    if layer.use_bias:
        y = w.node("Add", [y, w.const(f"{s}/bias", w.numpy(layer.bias))], f"{s}/Add")
    return w.activation(_Tensor(y), layer.activation, s)


# --- other formats ---------------------------------------------------------

def export_tflite(model: Any, path: str | os.PathLike) -> Path:
    """Write a Keras model as a float32 TensorFlow Lite flatbuffer.

    Tries ``TFLiteConverter.from_keras_model`` first; where that fails (it can
    with Keras 3), converts through a SavedModel exported by ``model.export``.

    Parameters
    ----------
    model : keras.Model
        The model to convert (inference mode: dropout off, moving statistics).
    path : str or path-like
        Where to write the ``.tflite`` file (atomically).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ModelError
        Both conversion routes failed; the message gives both reasons.
    """
    import tensorflow as tf

    try:
        with _converter_quiet():
            data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception as first:  # noqa: BLE001 - the converter raises many types
        log.info("from_keras_model failed (%s); converting through a SavedModel", first)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                model.export(tmp, format="tf_saved_model", verbose=False)
                with _converter_quiet():
                    data = tf.lite.TFLiteConverter.from_saved_model(tmp).convert()
            except Exception as second:  # noqa: BLE001
                raise ModelError(f"model {model.name!r}: TFLite conversion failed "
                                 f"(from_keras_model: {first}; from_saved_model: {second})") from None
    return atomic_write_bytes(path, data)


def export_keras(model: Any, path: str | os.PathLike) -> Path:
    """Save a Keras model (``model.save``) atomically.

    Parameters
    ----------
    model : keras.Model
        The model to save.
    path : str or path-like
        Target file; must end in ``.keras`` (Keras' own rule).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"path={str(path)!r}: expected a file name ending in '.keras'")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras insists on the .keras suffix, so the temporary file keeps it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _converter_quiet():
    """The TFLite converter prints its whole model (about 40 lines) to stdout and fd 2: hide both."""
    import contextlib
    import io

    from ser.quiet import stderr_silenced

    stack = contextlib.ExitStack()
    stack.enter_context(stderr_silenced())
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack
