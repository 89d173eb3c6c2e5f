"""A whole model as one ONNX graph from the 16 kHz waveform to the emotion scores.

``ser export --format onnx`` writes the network alone: its input is ``ser``'s features (the
encoder's pooled hidden states, or an MFCC matrix), which nobody outside ``ser`` can compute.
:func:`export_onnx_audio` writes everything :meth:`ser.inference.Recognizer.predict` does after
decoding, as ONNX operators, so ONNX Runtime alone turns a waveform into scores:

1. the model's conditioning (``audio.trim_db`` silence trimming, ``audio.peak_normalize``);
2. the cut to ``audio.duration`` seconds (spectral models: cut or zero-padded to it);
3. the features: Whisper's log-mel spectrogram, the Whisper-base encoder (the graph of
   :mod:`ser.encoder_onnx`) and mean + standard deviation of every hidden state over time; or the
   MFCC / log-mel matrix and its per-clip normalisation;
4. the network of ``model.onnx`` (an ensemble averages its members' probabilities, as ``ser`` does).

The STFT is a framing ``Gather`` and two matrix products with the DFT's cosine and sine tables
(window folded in), in float64 as :func:`ser.encoders.whisper_log_mel` computes it, with operators
every ONNX runtime has (ONNX's own ``STFT`` operator would do too; these keep the arithmetic and
its rounding under our control). Everything after the spectrogram is float32, as in ``ser``. Input ``waveform``: float32 ``(n_samples,)``, mono, 16 kHz
(the model's rate). Output ``scores``: float32 ``(n_classes,)``, probabilities in the order of the
metadata's ``labels``.

What stays outside the graph: decoding and resampling (``soundfile``, ``soxr``), and ``ser``'s input
checks (``predict`` refuses clips under 0.1 s, over 60 s, silent, or a pure tone; the graph scores them).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ser.encoder_onnx import INPUT as ENCODER_INPUT
from ser.encoder_onnx import OPSET, OUTPUT as ENCODER_OUTPUT
from ser.encoder_onnx import _Builder
from ser.errors import ModelError

__all__ = ["INPUT", "OUTPUT", "export_onnx_audio"]

#: Names of the graph's input and output.
INPUT, OUTPUT = "waveform", "scores"
#: ``ser.audio.trim_silence``'s frames (librosa's ``effects.trim`` defaults).
_TRIM_FRAME, _TRIM_HOP = 2048, 512


def export_onnx_audio(recognizer, path: str | os.PathLike) -> Path:
    """Write ``recognizer`` as one ONNX graph from the waveform at its sample rate to class probabilities.

    Parameters
    ----------
    recognizer : ser.inference.Recognizer
        A model whose network runs on ONNX Runtime (a folder with ``model.onnx``, as the bundled
        ones), with Whisper features (``features.kind="whisper"``) or MFCC / log-mel features.
    path : str or path-like
        The ``.onnx`` file to write (atomically).

    Returns
    -------
    pathlib.Path
        ``path``. Input ``waveform`` float32 ``(n_samples,)``; output ``scores`` float32
        ``(n_classes,)``; metadata ``labels`` (JSON list), ``sample_rate``, ``model``, ``ser_version``.

    Raises
    ------
    ModelError
        The model has no ``model.onnx`` (export it with ``ser export --format onnx`` first, or train
        it with ``ser train``), or its encoder weights cannot be found.
    """
    import onnx
    from onnx import TensorProto, helper

    import ser
    from ser.utils import atomic_write_bytes

    config = recognizer.config
    head = _head_model(recognizer)
    b = _Builder()
    y = _condition(b, INPUT, config.audio)
    size = int(round(config.audio.duration * config.audio.sample_rate))
    nodes, inits = [], []
    # Each domain at the highest version a part uses (an int8 encoder graph may add com.microsoft).
    opsets = {"": OPSET}
    if config.features.kind == "whisper":
        y = b.op("Slice", [y, b.ints("zero_i", [0]), b.ints("size", [size]), b.axes0()], name="cut")
        b.nodes.append(helper.make_node("Identity", [_whisper_log_mel(b, y)], [f"enc/{ENCODER_INPUT}"], name="mel"))
        encoder = onnx.compose.add_prefix(_encoder_model(recognizer), "enc/")
        for o in encoder.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
        nodes += encoder.graph.node
        inits += encoder.graph.initializer
        features = _stats_pool(b, f"enc/{ENCODER_OUTPUT}")
    else:
        features = _spectral(b, _fix_length(b, y, size), config)
    b.nodes.append(helper.make_node("Identity", [features], [f"head/{head.graph.input[0].name}"], name="features"))
    probs = f"head/{head.graph.output[0].name}"
    squeeze = helper.make_node("Squeeze", [probs, b.axes0()], [OUTPUT], name=OUTPUT)
    head = onnx.compose.add_prefix(head, "head/")
    graph = helper.make_graph(
        [*b.nodes[: _front_end(b)], *nodes, *b.nodes[_front_end(b):], *head.graph.node, squeeze], "ser_audio",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["samples"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [len(config.classes)])],
        [*b.inits, *inits, *head.graph.initializer])
    for o in head.opset_import:
        if o.domain in ("", "ai.onnx") and o.version != OPSET:
            # The front end is written in opset 17's forms (ReduceMean's axes as an attribute).
            raise ModelError(f"{recognizer.path}: model.onnx is opset {o.version}; the onnx-audio export needs "
                             f"opset {OPSET} (ser export --format onnx writes it)")
        opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              producer_name="ser",
                              producer_version=ser.__version__,
                              doc_string=f"ser model {config.name}: 16 kHz mono waveform -> emotion probabilities")
    model.ir_version = 8
    meta = {"labels": json.dumps(list(config.classes)), "sample_rate": str(config.audio.sample_rate),
            "model": config.name, "ser_version": ser.__version__}
    helper.set_model_props(model, meta)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types; any means a bug here
        raise ModelError(f"{path}: the waveform-to-scores graph is invalid ({exc})") from exc
    return atomic_write_bytes(path, model.SerializeToString())


def _front_end(b: _Builder) -> int:
    """How many of ``b``'s nodes come before the encoder: up to the node that writes its input."""
    return next((i + 1 for i, n in enumerate(b.nodes) if n.output[0] == f"enc/{ENCODER_INPUT}"), 0)


def _head_model(recognizer):
    import onnx

    folder = recognizer.path
    runner = recognizer.runner
    source = getattr(runner, "path", None) or (folder / "model.onnx" if folder is not None else None)
    if source is None or not Path(source).is_file():
        raise ModelError(f"{folder or 'model'}: no model.onnx to export (ser export --format onnx writes one)")
    return onnx.load(source)


def _encoder_model(recognizer):
    """The encoder graph of the weights ``recognizer``'s features come from."""
    import onnx

    from ser.encoder_onnx import build_encoder_graph, encoder_graph_bytes
    from ser.encoders import WhisperEncoder, _dequantize, _read_model_bin, default_whisper_dir, quantize_int8
    from ser.modelfolder import ENCODER_FILE, ENCODER_GRAPH_FILE

    f = recognizer.config.features
    folder = recognizer.path
    if folder is not None and (folder / ENCODER_GRAPH_FILE).is_file():
        return onnx.load(folder / ENCODER_GRAPH_FILE)
    if folder is not None and (folder / ENCODER_FILE).is_file():
        with np.load(folder / ENCODER_FILE, allow_pickle=False) as data:
            return build_encoder_graph(_dequantize({k: data[k] for k in data.files}))
    if recognizer.encoder is not None:
        raise ModelError(f"{folder or 'model'}: its encoder is in memory only; save the model folder first")
    if f.encoder_graph != "none":
        return onnx.load_from_string(encoder_graph_bytes(precision=f.encoder_graph))
    variables = _read_model_bin(default_whisper_dir() / "model.bin", "encoder/")[2]
    WhisperEncoder(variables)  # the shape checks, with their messages
    return build_encoder_graph(_dequantize(quantize_int8(variables)) if f.encoder_precision == "int8" else variables)


# --------------------------------------------------------------------------- waveform


def _frames(b: _Builder, y: str, n: str, *, length: int, hop: int) -> str:
    """``(n, length)`` frames of the 1-D ``y``, frame ``i`` from sample ``i * hop`` (``n``: int64 ``[1]``)."""
    starts = b.op("Mul", [b.op("Range", [b.ints("zero_s", 0), b.op("Squeeze", [n, b.axes0()]), b.ints("one_s", 1)]),
                          b.ints(f"hop_{hop}", hop)])
    offsets = b.ints(f"offsets_{length}", np.arange(length)[None, :])
    index = b.op("Add", [b.op("Unsqueeze", [starts, b.ints("axes1", [1])]), offsets])
    return b.op("Gather", [y, index], axis=0, name="frames")


def _length(b: _Builder, y: str) -> str:
    return b.op("Shape", [y], name="length")


def _condition(b: _Builder, y: str, audio) -> str:
    """:func:`ser.frontend.condition_audio`: silence trimming, then peak normalisation, as configured."""
    if audio.trim_db:
        y = _trim(b, y, top_db=float(audio.trim_db), min_samples=math.ceil(audio.min_duration * audio.sample_rate))
    if audio.peak_normalize:
        peak = b.op("ReduceMax", [b.op("Abs", [y])], keepdims=1)
        y = b.op("Div", [y, b.op("Max", [peak, b.scalar("peak_floor", 1e-8)])], name="normalised")
    return y


def _trim(b: _Builder, y: str, *, top_db: float, min_samples: int) -> str:
    """:func:`ser.audio.trim_silence`, kept only if at least ``min_samples`` remain (else ``y`` whole)."""
    length = _length(b, y)
    half = _TRIM_FRAME // 2
    padded = b.op("Pad", [y, b.ints("trim_pads", [half, half])], mode="constant")
    n = b.op("Add", [b.op("Div", [length, b.ints("trim_hop", [_TRIM_HOP])]), b.ints("one_i", [1])])
    frames = _frames(b, padded, n, length=_TRIM_FRAME, hop=_TRIM_HOP)
    power = b.op("ReduceMean", [b.op("Mul", [frames, frames])], axes=[1], keepdims=0)
    floor = b.scalar("db_floor", 1e-10)
    db = b.op("Sub", [_db(b, b.op("Max", [power, floor])),
                      _db(b, b.op("Max", [b.op("ReduceMax", [power], keepdims=1), floor]))])
    loud = b.op("Cast", [b.op("Greater", [db, b.scalar("minus_top_db", -top_db)])], to=1)
    first = b.op("ArgMax", [loud], axis=0, keepdims=1, select_last_index=0)
    last = b.op("ArgMax", [loud], axis=0, keepdims=1, select_last_index=1)
    hop = b.ints("trim_hop", [_TRIM_HOP])
    start = b.op("Mul", [first, hop])
    end = b.op("Min", [length, b.op("Mul", [b.op("Add", [last, b.ints("one_i", [1])]), hop])])
    # Nothing loud, or too little left: ser keeps the clip whole.
    keep = b.op("And", [b.op("Greater", [b.op("ReduceMax", [loud], keepdims=1), b.scalar("zero", 0.0)]),
                        b.op("GreaterOrEqual", [b.op("Sub", [end, start]), b.ints("min_samples", [min_samples])])])
    start = b.op("Where", [keep, start, b.ints("zero_i", [0])])
    end = b.op("Where", [keep, end, length])
    return b.op("Slice", [y, start, end, b.axes0()], name="trimmed")


def _db(b: _Builder, x: str, *, scale: float = 10.0) -> str:
    """``scale * log10(x)``."""
    return b.op("Mul", [b.op("Log", [x]), b.scalar(f"db_{scale:g}", scale / math.log(10))])


def _fix_length(b: _Builder, y: str, size: int) -> str:
    """:func:`ser.audio.fix_length`: cut or zero-pad to ``size`` samples."""
    missing = b.op("Max", [b.op("Sub", [b.ints("size", [size]), _length(b, y)]), b.ints("zero_i", [0])])
    padded = b.op("Pad", [y, b.op("Concat", [b.ints("zero_i", [0]), missing], axis=0)], mode="constant")
    return b.op("Slice", [padded, b.ints("zero_i", [0]), b.ints("size", [size]), b.axes0()], name="fixed")


def _power_spectrum(b: _Builder, y64: str, n: str, *, n_fft: int, hop: int, window: np.ndarray) -> str:
    """``|rfft(frame * window)|^2`` of ``n`` frames of the (already padded) float64 ``y64``: ``(n, 1 + n_fft // 2)``."""
    k = np.arange(n_fft)[:, None] * np.arange(n_fft // 2 + 1)[None, :]
    angle = 2 * np.pi * (k % n_fft) / n_fft
    frames = _frames(b, y64, n, length=n_fft, hop=hop)
    # The window folded into the DFT tables: one product per table.
    re = b.op("MatMul", [frames, b.const(f"dft_cos_{n_fft}", window[:, None] * np.cos(angle))])
    im = b.op("MatMul", [frames, b.const(f"dft_sin_{n_fft}", window[:, None] * -np.sin(angle))])
    return b.op("Add", [b.op("Mul", [re, re]), b.op("Mul", [im, im])], name="power")


def _whisper_log_mel(b: _Builder, y: str) -> str:
    """:func:`ser.encoders.whisper_log_mel` of the float32 ``y``: ``(1, 80, frames)`` float32."""
    from ser.encoders import WHISPER_HOP, WHISPER_N_FFT, _hann_window, _mel_filters

    hop = b.ints("whisper_hop", [WHISPER_HOP])
    n = b.op("Mul", [b.op("Div", [b.op("Div", [_length(b, y), hop]), b.ints("two_i", [2])]), b.ints("two_i", [2])])
    y = b.op("Slice", [y, b.ints("zero_i", [0]), b.op("Mul", [n, hop]), b.axes0()])
    half = WHISPER_N_FFT // 2
    y64 = b.op("Pad", [b.op("Cast", [y], to=11), b.ints("whisper_pads", [half, half])], mode="reflect")
    power = _power_spectrum(b, y64, n, n_fft=WHISPER_N_FFT, hop=WHISPER_HOP, window=np.asarray(_hann_window()))
    mel = b.op("MatMul", [power, b.const("whisper_mel_t", _mel_filters().astype(np.float64).T.copy())])
    log_spec = b.op("Div", [b.op("Log", [b.op("Max", [mel, _f64(b, "floor64", 1e-10)])]), _f64(b, "ln10", math.log(10))])
    log_spec = b.op("Max", [log_spec, b.op("Sub", [b.op("ReduceMax", [log_spec], keepdims=1), _f64(b, "eight", 8.0)])])
    log_spec = b.op("Div", [b.op("Add", [log_spec, _f64(b, "four", 4.0)]), _f64(b, "four", 4.0)])
    mel32 = b.op("Transpose", [b.op("Cast", [log_spec], to=1)], perm=[1, 0])
    return b.op("Unsqueeze", [mel32, b.axes0()])


def _f64(b: _Builder, name: str, value: float) -> str:
    """A float64 scalar initializer, added once."""
    if not any(init.name == name for init in b.inits):
        b.const(name, np.float64(value))
    return name


def _stats_pool(b: _Builder, hidden: str) -> str:
    """:func:`ser.features.stats_pool` of ``(layers, 1, steps, dim)`` hidden states: ``(1, layers, 2 * dim, 1)``."""
    h = b.op("Squeeze", [hidden, b.ints("axes1", [1])])
    mean = b.op("ReduceMean", [h], axes=[1], keepdims=1)
    centred = b.op("Sub", [h, mean])
    std = b.op("Sqrt", [b.op("ReduceMean", [b.op("Mul", [centred, centred])], axes=[1], keepdims=1)])
    pooled = b.op("Concat", [mean, std], axis=-1)  # (layers, 1, 2 * dim)
    return b.op("Unsqueeze", [b.op("Transpose", [pooled], perm=[1, 0, 2]), b.ints("axes3", [3])], name="pooled")


def _spectral(b: _Builder, y: str, config) -> str:
    """:func:`ser.features.extract` (MFCC or log-mel, per-clip normalisation) of the fixed-length ``y``: ``(1, F, T, 1)``."""
    from ser.features import _dct_matrix, _hann, mel_filters

    f, sr = config.features, config.audio.sample_rate
    size = int(round(config.audio.duration * sr))
    half = f.n_fft // 2
    y64 = b.op("Pad", [b.op("Cast", [y], to=11), b.ints("pads", [half, half])], mode="constant")
    n = b.ints("n_frames", [1 + size // f.hop_length])
    power = _power_spectrum(b, y64, n, n_fft=f.n_fft, hop=f.hop_length, window=_hann(f.n_fft).astype(np.float64))
    mel = b.op("MatMul", [b.op("Cast", [power], to=1),
                          b.const("mel_t", np.ascontiguousarray(mel_filters(sr=sr, n_fft=f.n_fft, n_mels=f.n_mels).T))])
    mel = b.op("Max", [mel, b.scalar("db_floor", 1e-10)])
    db = _db(b, mel)
    if f.kind == "logmel":
        db = b.op("Sub", [db, _db(b, b.op("Max", [b.op("ReduceMax", [mel], keepdims=1), b.scalar("db_floor", 1e-10)]))])
    db = b.op("Max", [db, b.op("Sub", [b.op("ReduceMax", [db], keepdims=1), b.scalar("top_80", 80.0)])])
    if f.kind == "mfcc":
        db = b.op("MatMul", [db, b.const("dct", _dct_matrix(f.n_mels, f.n_mfcc))])
    x = b.op("Transpose", [db], perm=[1, 0])
    if f.normalize == "clip":
        centred = b.op("Sub", [x, b.op("ReduceMean", [x], keepdims=1)])
        std = b.op("Sqrt", [b.op("ReduceMean", [b.op("Mul", [centred, centred])], keepdims=1)])
        x = b.op("Div", [centred, b.op("Add", [std, b.scalar("eps", 1e-8)])])
    return b.op("Unsqueeze", [x, b.ints("axes03", [0, 3])], name="spectral")
