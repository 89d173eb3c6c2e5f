"""The Whisper-base encoder as an ONNX graph, run by ONNX Runtime (float32 or dynamic int8).

numpy never uses the CPU's int8 matrix instructions (AVX512-VNNI, AMX); ONNX Runtime does. This
module writes the encoder of :class:`ser.encoders.WhisperEncoder` as an ONNX graph with
``onnx.helper``, from the same ``encoder/...`` variables, node for node the same computation:

* conv1 (k 3, pad 1) → GELU → conv2 (k 3, stride 2, pad 1) → GELU → + positions ``[:frames // 2]``;
* per block ``h += attn(LN(h)); h += ffn(LN(h))`` (fused q/k/v, full attention, exact-erf GELU);
* a final LayerNorm replacing the last state, as :meth:`WhisperEncoder.__call__` does.

Input ``mel`` ``(batch, n_mels, frames)``; output ``hidden_states`` ``(n_layers, batch, frames // 2,
dim)``, batch and frames dynamic. :func:`quantize_graph` makes the int8 variants with ONNX Runtime's
``quantize_dynamic`` (per-channel weights; only matrix products with constant weights, so the
attention scores and softmax stay float32). :class:`OnnxWhisperEncoder` runs a graph with the call
interface of :class:`WhisperEncoder`, and falls back to the numpy encoder where ONNX Runtime cannot
load or run it (an op it lacks).

Int8 pays only where the CPU has int8 matrix instructions (x86 VNNI or AMX, Arm's dot product or
I8MM). Elsewhere (:func:`run_precision`) an int8 graph runs as the same graph in float32, its weights
dequantized (:func:`dequantize_graph`): the rounded weights the model was trained with, float32
activations. ``$SER_ENCODER_PRECISION`` (``auto``, ``int8``, ``float32``) overrides the choice.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ser.encoders import LAYER_NORM_EPS, WHISPER_MAX_FRAMES, WhisperEncoder, check_mel
from ser.errors import ModelError

log = logging.getLogger(__name__)

__all__ = [
    "INT8_VARIANTS",
    "OnnxWhisperEncoder",
    "build_encoder_graph",
    "dequantize_graph",
    "graph_variables",
    "int8_instructions",
    "quantize_graph",
    "run_precision",
    "save_encoder_graph",
]

#: ONNX opset of the graph: 17 has LayerNormalization; GELU is written with Erf (fused by ORT).
OPSET = 17
INPUT, OUTPUT = "mel", "hidden_states"
#: Suffix of a linear weight stored transposed, ``(in, out)``, so MatMul needs no Transpose node.
_T = ":T"

#: The dynamic int8 variants measured in benchmarks/encoder_onnx.py: which float32 parts they keep.
#: "int8": every matrix product with constant weights (linear layers and both convolutions);
#: "int8-linear": the linear layers only, the convolutional front end in float32;
#: "int8-mlp": only the MLP (ffn) layers, attention projections and convolutions in float32.
#: "int8-ffn-in": the linear layers except each MLP's output projection, whose input (the GELU output,
#: with outliers in blocks 4-5) loses most to per-tensor uint8 activations.
INT8_VARIANTS = ("int8", "int8-linear", "int8-mlp", "int8-ffn-in")
#: CPU features (:data:`ser.doctor.CPU_FEATURES` names) that make ONNX Runtime's int8 matrix products
#: faster than float32 ones; without any of them an int8 graph runs dequantized, in float32.
INT8_INSTRUCTIONS = ("AVX512-VNNI", "AVX-VNNI", "AMX-INT8", "NEON-DOTPROD", "I8MM")
#: Environment variable overriding :func:`run_precision`: ``auto`` (default), ``int8`` or ``float32``.
PRECISION_ENV = "SER_ENCODER_PRECISION"
#: Metadata key: the most mel frames the graph takes (twice its position table).
MAX_FRAMES_KEY = "ser.max_frames"
#: The ops of quantized matrix products: a graph holding one is an int8 graph.
_INTEGER_OPS = ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul")


# --------------------------------------------------------------------------- graph


class _Builder:
    """Collects nodes and initializers with unique names (one instance per graph)."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def const(self, name: str, value) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], *, name: str | None = None, **attrs) -> str:
        from onnx import helper

        self._n += 1
        out = f"{name or op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def gelu(self, x: str, scope: str) -> str:
        # Exact GELU, 0.5 x (1 + erf(x / sqrt 2)); ORT's optimizer fuses this pattern into one Gelu.
        t = self.op("Erf", [self.op("Mul", [x, self.scalar("inv_sqrt2", 1 / math.sqrt(2))])])
        t = self.op("Add", [t, self.scalar("one", 1.0)])
        return self.op("Mul", [self.op("Mul", [x, t]), self.scalar("half", 0.5)], name=f"{scope}/gelu")

    def scalar(self, name: str, value: float) -> str:
        """A float32 scalar initializer, added once however often it is used."""
        if not any(init.name == name for init in self.inits):
            self.const(name, np.float32(value))
        return name

    def ints(self, name: str, value) -> str:
        """An int64 initializer (shapes, indices, axes), added once."""
        if not any(init.name == name for init in self.inits):
            self.const(name, np.asarray(value, dtype=np.int64))
        return name

    def axes0(self) -> str:
        return self.ints("axes0", [0])


def _get(variables: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    key = f"encoder/{name}"
    if key not in variables:
        raise ModelError(f"Whisper encoder variable {key!r} is missing")
    return np.asarray(variables[key])


def build_encoder_graph(variables: Mapping[str, np.ndarray]):
    """The encoder of ``variables`` as an ONNX model (float32, dynamic batch and frames).

    Parameters
    ----------
    variables : Mapping of str to numpy.ndarray
        The ``encoder/...`` variables, as for :class:`ser.encoders.WhisperEncoder` (from
        :func:`ser.encoders.read_ctranslate2_variables` or a dequantized ``encoder.npz``).

    Returns
    -------
    onnx.ModelProto
        Input ``mel`` ``(batch, n_mels, frames)`` float32; output ``hidden_states``
        ``(n_layers, batch, frames // 2, dim)`` float32.
    """
    from onnx import TensorProto, helper

    WhisperEncoder(variables)  # the same shape checks as the numpy encoder, with its messages
    b = _Builder()
    f32 = lambda name: _get(variables, name).astype(np.float32)
    n_heads = int(_get(variables, "num_heads"))
    dim = f32("conv1/weight").shape[0]

    h = b.op("Conv", [INPUT, b.const("encoder/conv1/weight", f32("conv1/weight")),
                      b.const("encoder/conv1/bias", f32("conv1/bias"))], pads=[1, 1], kernel_shape=[3])
    h = b.gelu(h, "conv1")
    h = b.op("Conv", [h, b.const("encoder/conv2/weight", f32("conv2/weight")),
                      b.const("encoder/conv2/bias", f32("conv2/bias"))], pads=[1, 1], strides=[2], kernel_shape=[3])
    h = b.op("Transpose", [b.gelu(h, "conv2")], perm=[0, 2, 1])  # (batch, steps, dim)
    h = b.op("Add", [h, _positions(b, h, f32("position_encodings/encodings"))], name="embedding")
    states = [h]
    i = 0
    while f"encoder/layer_{i}/ffn/linear_0/weight" in variables:
        h = _block(b, h, variables, f"layer_{i}", n_heads, dim)
        states.append(h)
        i += 1
    states[-1] = _layer_norm(b, h, variables, "layer_norm")
    out = b.op("Concat", [b.op("Unsqueeze", [s, b.axes0()]) for s in states], axis=0)
    b.nodes.append(helper.make_node("Identity", [out], [OUTPUT], name=OUTPUT))

    n_mels = f32("conv1/weight").shape[1]
    graph = helper.make_graph(
        b.nodes, "whisper_encoder",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", n_mels, "frames"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [len(states), "batch", "steps", dim])],
        b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ser")
    model.ir_version = 8  # readable by every ONNX Runtime since 1.11
    # What the runner checks input against, readable from an ONNX Runtime session without parsing.
    helper.set_model_props(model, {MAX_FRAMES_KEY: str(2 * f32("position_encodings/encodings").shape[0])})
    return model


def _positions(b: _Builder, h: str, table: np.ndarray) -> str:
    """``table[:steps]`` with ``steps`` read from ``h`` ``(batch, steps, dim)`` at run time."""
    steps = b.op("Slice", [b.op("Shape", [h]), b.ints("one_i", [1]), b.ints("two_i", [2])])
    return b.op("Slice", [b.const("encoder/position_encodings/encodings", table),
                          b.ints("zero_i", [0]), steps, b.ints("axes0", [0])])


def _layer_norm(b: _Builder, x: str, variables, name: str) -> str:
    gamma = b.const(f"encoder/{name}/gamma", _get(variables, f"{name}/gamma").astype(np.float32))
    beta = b.const(f"encoder/{name}/beta", _get(variables, f"{name}/beta").astype(np.float32))
    return b.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=LAYER_NORM_EPS, name=f"{name}/ln")


def _linear(b: _Builder, x: str, variables, name: str) -> str:
    w = _get(variables, f"{name}/weight").astype(np.float32).T.copy()
    y = b.op("MatMul", [x, b.const(f"encoder/{name}/weight{_T}", w)], name=f"{name}/matmul")
    return b.op("Add", [y, b.const(f"encoder/{name}/bias", _get(variables, f"{name}/bias").astype(np.float32))])


def _block(b: _Builder, h: str, variables, scope: str, n_heads: int, dim: int) -> str:
    """One pre-LN transformer block: ``h + attn(LN(h))``, then ``+ ffn(LN(...))``."""
    head_dim = dim // n_heads
    qkv = _linear(b, _layer_norm(b, h, variables, f"{scope}/self_attention/layer_norm"), variables,
                  f"{scope}/self_attention/linear_0")
    # (batch, steps, 3 * dim) -> (3, batch, heads, steps, head_dim), as the numpy encoder's reshape.
    qkv = b.op("Reshape", [qkv, b.ints("qkv_shape", [0, 0, 3, n_heads, head_dim])])
    qkv = b.op("Transpose", [qkv], perm=[2, 0, 3, 1, 4])
    q, k, v = (b.op("Gather", [qkv, b.ints(f"idx{j}", j)], axis=0) for j in range(3))
    q = b.op("Mul", [q, b.scalar(f"attn_scale_{head_dim}", 1.0 / np.sqrt(head_dim))])
    scores = b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])], name=f"{scope}/scores")
    probs = b.op("Softmax", [scores], axis=-1)
    context = b.op("Transpose", [b.op("MatMul", [probs, v], name=f"{scope}/context")], perm=[0, 2, 1, 3])
    context = b.op("Reshape", [context, b.ints("merge_shape", [0, 0, dim])])
    h = b.op("Add", [h, _linear(b, context, variables, f"{scope}/self_attention/linear_1")], name=f"{scope}/res1")
    hidden = _linear(b, _layer_norm(b, h, variables, f"{scope}/ffn/layer_norm"), variables, f"{scope}/ffn/linear_0")
    hidden = _linear(b, b.gelu(hidden, f"{scope}/ffn"), variables, f"{scope}/ffn/linear_1")
    return b.op("Add", [h, hidden], name=f"{scope}/res2")


def graph_variables(model) -> dict[str, np.ndarray]:
    """The ``encoder/...`` variables of a graph from :func:`build_encoder_graph` or :func:`quantize_graph`.

    An int8 graph's weights come back dequantized, ``(q - zero_point) * scale`` per output channel:
    the values its int8 matrix products multiply by.

    Raises
    ------
    ModelError
        If the graph is not such a graph (a weight or the number of heads is missing).
    """
    from onnx import numpy_helper

    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer
              if init.name.startswith("encoder/")}
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if name.endswith(("_scale", "_zero_point")):
            continue
        if name.endswith("_quantized"):
            name = name[: -len("_quantized")]
            # Transposed linear weights (in, out) have their channels last, convolutions (out, in, k) first.
            shape = [1] * value.ndim
            shape[-1 if name.endswith(_T) else 0] = -1
            zero = arrays[f"{name}_zero_point"].astype(np.float32).reshape(shape)
            value = (value.astype(np.float32) - zero) * arrays[f"{name}_scale"].reshape(shape)
        if name.endswith(_T):
            name, value = name[: -len(_T)], value.T
        out[name] = value
    if "encoder/layer_0/ffn/linear_0/weight" not in out:
        raise ModelError("the encoder graph has no weights to fall back on (not a ser encoder graph?)")
    shape = next((numpy_helper.to_array(i) for i in model.graph.initializer if i.name == "qkv_shape"), None)
    if shape is None:
        raise ModelError("the encoder graph does not record its number of heads")
    out["encoder/num_heads"] = np.int16(shape[3])
    return out


# --------------------------------------------------------------------------- int8


def dequantize_graph(model):
    """The float32 graph of an int8 graph's dequantized weights (:func:`graph_variables`).

    It computes what the int8 graph computes with float32 activations instead of per-call uint8 ones:
    what to run where int8 matrix products are slow (:func:`run_precision`).
    """
    return build_encoder_graph(graph_variables(model))


@functools.lru_cache(maxsize=1)
def int8_instructions() -> tuple[str, ...]:
    """This CPU's :data:`INT8_INSTRUCTIONS` (empty if it has none, or if they cannot be read)."""
    from ser.doctor import cpu_features

    try:
        present = set(cpu_features())
    except Exception:  # noqa: BLE001 - an unreadable CPU description must not stop a prediction
        return ()
    return tuple(name for name in INT8_INSTRUCTIONS if name in present)


def run_precision() -> tuple[str, str]:
    """The precision an int8 encoder graph runs at on this machine, and why.

    Returns
    -------
    precision : {"int8", "float32"}
        ``$SER_ENCODER_PRECISION`` if it is ``int8`` or ``float32``; else (``auto``, unset) int8
        where the CPU has :data:`INT8_INSTRUCTIONS`, float32 (:func:`dequantize_graph`) where not.
    reason : str
        Half a sentence for ``ser predict --verbose``.

    Raises
    ------
    ConfigError
        If ``$SER_ENCODER_PRECISION`` holds anything else.
    """
    wanted = os.environ.get(PRECISION_ENV, "").strip().lower() or "auto"
    if wanted in ("int8", "float32"):
        return wanted, f"${PRECISION_ENV}={wanted}"
    if wanted != "auto":
        from ser.errors import ConfigError

        raise ConfigError(f"${PRECISION_ENV}={wanted!r}: expected auto, int8 or float32")
    found = int8_instructions()
    if found:
        return "int8", f"this CPU has {', '.join(found)}"
    return "float32", "this CPU has no int8 matrix instructions (VNNI, AMX, dot product)"


def quantize_graph(model, variant: str = "int8"):
    """A dynamic int8 copy of a float32 encoder graph (ONNX Runtime's ``quantize_dynamic``).

    Parameters
    ----------
    model : onnx.ModelProto
        From :func:`build_encoder_graph`.
    variant : {"int8", "int8-linear", "int8-mlp"}
        Which parts become int8 (see :data:`INT8_VARIANTS`). Weights are int8 with one scale per
        output channel; activations are quantized per call (uint8, per tensor).

    Returns
    -------
    onnx.ModelProto
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if variant not in INT8_VARIANTS:
        raise ValueError(f"variant={variant!r}: expected one of {', '.join(INT8_VARIANTS)}")
    ops = ["MatMul", "Conv"] if variant == "int8" else ["MatMul"]
    kept = {"int8-mlp": "self_attention/", "int8-ffn-in": "ffn/linear_1/"}.get(variant)
    exclude = [n.name for n in model.graph.node if kept and kept in n.name]
    # quantize_dynamic works on files only.
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "f32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        with _quiet_root_logger():
            quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                             nodes_to_exclude=exclude)
        return onnx.load(dst)


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantizer logs a line per tensor on the root logger; only errors matter here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def save_encoder_graph(path: str | os.PathLike, *, source: str | os.PathLike | None = None,
                       precision: str = "float32") -> Path:
    """Write :func:`encoder_graph_bytes` to ``path`` (atomically)."""
    from ser.utils import atomic_write_bytes

    return atomic_write_bytes(path, encoder_graph_bytes(source=source, precision=precision))


def encoder_graph_bytes(*, source: str | os.PathLike | None = None, precision: str = "float32") -> bytes:
    """The encoder of a CTranslate2 Whisper folder as a serialized ONNX graph.

    Parameters
    ----------
    source : path-like, optional
        CTranslate2 folder (default: :func:`ser.encoders.default_whisper_dir`), checksum-verified.
    precision : {"float32", "int8", "int8-linear", "int8-mlp", "int8-ffn-in"}
        float32 (the published float16 values), or a variant of :func:`quantize_graph`.

    Returns
    -------
    bytes
        The graph for :class:`OnnxWhisperEncoder` (83 MB float32, 23-44 MB int8).
    """
    from ser.encoders import _check_sha256, _read_model_bin, default_whisper_dir

    if precision != "float32" and precision not in INT8_VARIANTS:
        raise ValueError(f"precision={precision!r}: expected 'float32' or one of {', '.join(INT8_VARIANTS)}")
    folder = Path(source) if source is not None else default_whisper_dir()
    _check_sha256(folder, "model.bin")
    _, _, variables = _read_model_bin(folder / "model.bin", "encoder/")
    model = build_encoder_graph(variables)
    if precision != "float32":
        model = quantize_graph(model, precision)
    return model.SerializeToString()


# --------------------------------------------------------------------------- runner


class OnnxWhisperEncoder:
    """An encoder graph on ONNX Runtime, with the call interface of :class:`ser.encoders.WhisperEncoder`.

    Parameters
    ----------
    model : path-like or bytes
        An ONNX file (or its bytes) from :func:`save_encoder_graph`.
    threads : int, default 1
        ONNX Runtime threads per call. One: feature extraction already runs one clip per worker
        thread (:func:`ser.frontend.parallel_map`).
    fallback : callable, optional
        Returns the :class:`WhisperEncoder` to use where ONNX Runtime cannot load or run the graph
        (an op it lacks, e.g. an old version without the int8 kernels). Default: the numpy encoder
        built from the graph's own weights (an int8 graph's dequantized).
    precision : {"int8", "float32"}, optional
        How to run an int8 graph; default :func:`run_precision` (int8 where the CPU has int8 matrix
        instructions). A float32 graph always runs in float32.

    Attributes
    ----------
    graph_precision : str
        ``"float32"`` or ``"int8"``: the graph's (whether it holds integer matrix products).
    precision : str
        What runs: ``"int8"``, or ``"float32"`` (a float32 graph, or an int8 one dequantized).
    backend : str
        ``"onnxruntime"``, or ``"numpy"`` once the fallback has taken over.
    """

    def __init__(self, model: str | os.PathLike | bytes, *, threads: int = 1,
                 fallback: Callable[[], WhisperEncoder] | None = None, precision: str | None = None) -> None:
        if precision not in (None, "int8", "float32"):
            raise ValueError(f"precision={precision!r}: expected 'int8', 'float32' or None")
        raw = model if isinstance(model, bytes) else _read_bytes(Path(model))
        self._name = "<bytes>" if isinstance(model, bytes) else str(model)
        # Op types are stored verbatim in the protobuf. Reading them from the bytes spares the fast
        # path `import onnx` (0.7 s, most of a cold `ser predict`); it parses only where needed.
        integer = any(op.encode() in raw for op in _INTEGER_OPS)
        self.graph_precision = self.precision = "int8" if integer else "float32"
        self._why = ""
        if integer:
            run, self._why = run_precision() if precision is None else (precision, f"precision={precision!r}")
            if run == "float32":
                raw = dequantize_graph(_parse(raw, self._name)).SerializeToString()
                self.precision = "float32"
        self._fallback_loader = fallback or (lambda: WhisperEncoder(graph_variables(_parse(raw, self._name))))
        self._numpy: WhisperEncoder | None = None
        self._session = None
        try:
            self._session = _session(raw, threads)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors (NOT_IMPLEMENTED ...)
            signature = _proto_signature(_parse(raw, self._name))  # junk bytes fail here, not in the fallback
            self._use_fallback(f"ONNX Runtime cannot load it ({_first_line(exc)})")
        else:
            signature = _session_signature(self._session)
        if signature is None:
            raise ModelError(f"{self._name}: not an encoder graph (expects input {INPUT!r}, output {OUTPUT!r})")
        self._n_mels, self._n_layers, self._dim, self._max_frames = signature

    @property
    def backend(self) -> str:
        return "numpy" if self._numpy is not None else "onnxruntime"

    @property
    def n_layers(self) -> int:
        """Number of hidden states returned (7 for Whisper-base)."""
        return self._n_layers

    @property
    def dim(self) -> int:
        """Width of every hidden state (512 for Whisper-base)."""
        return self._dim

    @property
    def n_mels(self) -> int:
        """Mel bins the encoder expects (80 for Whisper-base)."""
        return self._n_mels

    def describe(self) -> str:
        """One line for logs: which encoder runs, at which precision."""
        if self._numpy is not None:
            return f"Whisper encoder: numpy float32 (fallback from {self._name})"
        if self.graph_precision == "int8":
            how = "int8" if self.precision == "int8" else "float32 (the int8 graph dequantized)"
            return f"Whisper encoder: ONNX Runtime {how} ({self._name}; {self._why})"
        return f"Whisper encoder: ONNX Runtime {self.precision} ({self._name})"

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        """Every hidden state, ``(n_layers, batch, frames // 2, dim)``: see :meth:`WhisperEncoder.__call__`.

        Raises
        ------
        ValueError
            If ``mel`` has the wrong shape, an odd or too large frame count, or non-finite values.
        """
        if self._numpy is not None:
            return self._numpy(mel)
        x = check_mel(mel, n_mels=self._n_mels, max_frames=self._max_frames)
        try:
            return self._session.run([OUTPUT], {INPUT: x})[0]
        except Exception as exc:  # noqa: BLE001 - a kernel missing at run time (NOT_IMPLEMENTED)
            self._use_fallback(f"ONNX Runtime failed to run it ({_first_line(exc)})")
            return self._numpy(x)

    def _use_fallback(self, why: str) -> None:
        log.warning("%s: %s; using the numpy encoder instead", self._name, why)
        self._numpy = self._fallback_loader()
        self._session = None


def _parse(raw: bytes, name: str):
    import onnx

    try:
        return onnx.load_from_string(raw)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise ModelError(f"{name}: not an ONNX encoder graph ({_first_line(exc)})") from None


def _session_signature(session) -> tuple[int, int, int, int] | None:
    """``(n_mels, n_layers, dim, max_frames)`` of a loaded graph, or None if it is not an encoder graph."""
    inputs, outputs = session.get_inputs(), [o for o in session.get_outputs() if o.name == OUTPUT]
    if [i.name for i in inputs] != [INPUT] or not outputs:
        return None
    meta = session.get_modelmeta().custom_metadata_map
    # Graphs written before the metadata existed hold Whisper's 1500 positions.
    max_frames = int(meta.get(MAX_FRAMES_KEY, WHISPER_MAX_FRAMES))
    return inputs[0].shape[1], outputs[0].shape[0], outputs[0].shape[3], max_frames


def _proto_signature(proto) -> tuple[int, int, int, int] | None:
    """:func:`_session_signature` from the parsed graph (where ONNX Runtime cannot load it)."""
    outputs = [o for o in proto.graph.output if o.name == OUTPUT]
    if [i.name for i in proto.graph.input] != [INPUT] or not outputs:
        return None
    dims = outputs[0].type.tensor_type.shape.dim
    positions = next(i.dims[0] for i in proto.graph.initializer if i.name == "encoder/position_encodings/encodings")
    return (proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value, dims[0].dim_value, dims[3].dim_value,
            2 * positions)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the encoder graph ({exc.strerror or exc})") from None


def _session(raw: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(raw, sess_options=options, providers=["CPUExecutionProvider"])


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
