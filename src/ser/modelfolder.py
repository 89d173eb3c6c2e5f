"""Model folders: where a trained model lives on disk, how it is read, verified and written.

A model folder carries everything needed to use it::

    model.onnx      the network for ONNX Runtime (predictions without TensorFlow)
    model.keras     (trained runs) the same network for Keras: fine-tuning, Keras/TFLite export;
                    bundled models ship without it
    config.json     the full Config: inference rebuilds audio and features from it
    labels.json     output classes in order
    metrics.json    evaluation results known when it was saved
    history.json    training curves (and curves.png)
    README.md       model card (data, protocol, metrics, license)
    encoder.npz     (encoder-feature models) the Whisper-base encoder, arrays only (38 MB float16,
                    or 19 MB int8 when trained with int8 weights)
    encoder.onnx    (instead of encoder.npz, when config features.encoder_graph is not "none") the
                    encoder as an ONNX graph at that precision, run by ONNX Runtime (ser.encoder_onnx)
    adapted.onnx    (optional) the speaker-adapted head, trained on features standardised per
    adapted.keras   speaker, and speakers.npz, the training speakers' prior and enrolment
    speakers.npz    correction (see ser.speakers); used only when speaker information is given
    SHA256SUMS      checksums of the files above; a mismatch refuses the load

:func:`read_model_folder` verifies the checksums first and reads only listed files;
no code from a folder is ever executed. :func:`write_model_folder` builds the folder
aside and renames it into place, so a folder is either complete or absent.
Models shipped with the package live in ``ser/pretrained/<name>``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import reprlib
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from ser.config import Config
from ser.errors import ConfigError, ModelError
from ser.utils import atomic_write_text, current_umask, sha256_file

log = logging.getLogger(__name__)

#: Folder of the models shipped inside the package (one sub-folder per model name).
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
#: The trained model used when no model is named.
DEFAULT_MODEL = PRETRAINED_DIR / "default"
#: Files every model folder has, besides its network (``model.onnx`` and/or ``model.keras``).
MODEL_FILES = ("config.json", "labels.json")
KERAS_FILE = "model.keras"
#: The same network as an ONNX graph, run by ONNX Runtime (see ser.export).
ONNX_FILE = "model.onnx"
#: The speech encoder a whisper-feature model carries (see ser.encoders.save_encoder).
ENCODER_FILE = "encoder.npz"
#: The same encoder as an ONNX graph (see ser.encoder_onnx); its precision is config features.encoder_graph.
ENCODER_GRAPH_FILE = "encoder.onnx"
CHECKSUMS = "SHA256SUMS"
#: The speaker-adapted head and its statistics (see ser.speakers).
ADAPTED_KERAS, ADAPTED_ONNX, SPEAKER_NORM = "adapted.keras", "adapted.onnx", "speakers.npz"
def bundled_models() -> list[str]:
    """Names of the models shipped inside the package (``default``, ``fast``...), sorted."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CHECKSUMS).is_file())


def resolve_model(path: str | os.PathLike | None = None) -> Path:
    """The model folder meant by ``path``: a folder, a bundled model's name, or ``None`` (the default).

    An existing folder always wins; a bare name (no path separator) that is not
    a folder names a bundled model, e.g. ``"fast"`` → ``ser/pretrained/fast``.

    Raises
    ------
    ModelError
        Neither an existing folder nor a bundled model (the message lists the bundled ones).
    """
    if path is None:
        return DEFAULT_MODEL
    folder = Path(path)
    if folder.is_dir():
        return folder
    name = os.fspath(path)
    if name and os.sep not in name and (os.altsep is None or os.altsep not in name) and name not in (".", ".."):
        bundled = bundled_models()
        if name in bundled:
            return PRETRAINED_DIR / name
        raise ModelError(f"{name}: no such model folder, nor a bundled model (bundled: {', '.join(bundled)})")
    raise ModelError(f"{folder}: model folder not found")


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a ``SHA256SUMS`` that lists a model's files (not verified)."""
    sums = Path(path) / CHECKSUMS
    try:
        names = {line.partition("  ")[2].strip() for line in sums.read_text(errors="replace").splitlines()}
    except OSError:
        return False
    return all(name in names for name in MODEL_FILES) and bool({ONNX_FILE, KERAS_FILE} & names)


def check_output_folder(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Check that a model folder may be written at ``path``; returns it as an absolute path.

    Called before training starts (so a long run never ends in a refusal) and again
    when saving. A model folder replaces only an earlier model folder, and only
    with ``force``; a file, or a folder holding anything else, is never touched.

    Raises
    ------
    ModelError
        One line naming ``path`` and what is in the way.
    """
    path = Path(os.path.abspath(path))
    if path == path.parent:
        raise ModelError(f"{path}: cannot write a model folder over the file system root")
    if not os.path.lexists(path):
        return path
    if path.is_symlink() or not path.is_dir():
        raise ModelError(f"{path}: exists and is not a folder; choose another --out (nothing was changed)")
    if is_model_folder(path):
        if not force:
            raise ModelError(f"{path}: a model folder is already there; use --force to replace it")
        if path == Path.cwd() or Path.cwd().is_relative_to(path):
            raise ModelError(f"{path}: is the current folder; write the model elsewhere")
        return path
    try:
        empty = next(path.iterdir(), None) is None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the folder ({exc.strerror or exc})") from None
    if not empty:
        raise ModelError(f"{path}: folder exists and is not a model folder; choose a new or empty folder "
                         "(nothing was changed)")
    return path


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename the finished folder ``tmp`` to ``path``, replacing an empty folder or an earlier model."""
    if not os.path.lexists(path):
        os.replace(tmp, path)
        return
    if not is_model_folder(path):  # an empty folder (check_output_folder let nothing else through)
        path.rmdir()
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the hidden work folders of earlier saves to ``path`` whose process is gone (killed)."""
    for entry in path.parent.glob(f".{path.name}.*-*"):
        kind, _, rest = entry.name[len(path.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        # An ".old" folder is the previous model only while its rename back never happened: keep it then.
        if kind == "old" and not is_model_folder(path):
            continue
        shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _uncompiled_copy(model):
    """A copy without optimizer state (a third of the size, same weights) for saving.

    An ensemble's members are copied one by one: copying the outer model alone
    would bring back each member's compile state (and its optimizer variables).
    Only for writing to disk: Keras' Normalization keeps stale statistics in
    memory after ``set_weights`` (the saved variables are right).
    """
    import keras

    from ser.models import ensemble_model

    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if members:
        return ensemble_model([_uncompiled_copy(member) for member in members])
    bare = keras.Model.from_config(model.get_config())
    bare.set_weights(model.get_weights())
    return bare


def write_checksums(folder: str | os.PathLike) -> Path:
    """Write ``SHA256SUMS`` (``sha256  name`` lines) for every file in ``folder``."""
    folder = Path(folder)
    lines = [f"{sha256_file(p)}  {p.name}" for p in sorted(folder.iterdir())
             if p.is_file() and p.name != CHECKSUMS and not p.name.startswith(".")]
    return atomic_write_text(folder / CHECKSUMS, "\n".join(lines) + "\n")


def verify_checksums(folder: str | os.PathLike) -> dict[str, str]:
    """Refuse a model folder whose files are missing or differ from ``SHA256SUMS``.

    Returns
    -------
    dict
        ``file name -> hex digest`` of every listed (and now verified) file.

    Raises
    ------
    ModelError
        A missing or malformed ``SHA256SUMS`` (naming its bad line), or the first
        missing or altered file.
    """
    folder = Path(folder)
    listed = _read_sums(folder)
    for name in MODEL_FILES:
        if name not in listed:
            raise ModelError(f"{folder}: {name} is not listed in {CHECKSUMS}")
    if not {ONNX_FILE, KERAS_FILE} & set(listed):
        raise ModelError(f"{folder}: neither {ONNX_FILE} nor {KERAS_FILE} is listed in {CHECKSUMS}")
    for name, digest in listed.items():
        file = folder / name
        if not file.is_file():
            raise ModelError(f"{file}: missing from the model folder")
        try:
            actual = sha256_file(file)
        except OSError as exc:
            raise ModelError(f"{file}: cannot read ({exc.strerror or exc})") from None
        if actual != digest:
            raise ModelError(f"{file}: checksum mismatch; the file was modified or damaged")
    return listed


#: A SHA256SUMS line as sha256sum writes it: 64 hex digits, a space, then a space
#: (text mode) or "*" (binary mode), then the file name.
_SUMS_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")
#: Short one-line reprs of untrusted values for error messages (a huge or deeply nested
#: JSON value would otherwise make a huge message, or overflow the stack).
_EXCERPT = reprlib.Repr()
_EXCERPT.maxlevel, _EXCERPT.maxstring, _EXCERPT.maxother = 3, 60, 60


def _excerpt(value) -> str:
    return _EXCERPT.repr(value)


def _read_sums(folder: Path) -> dict[str, str]:
    """``file name -> hex digest`` from ``folder/SHA256SUMS``, every line checked.

    Raises
    ------
    ModelError
        No such file, bytes that are not UTF-8, no entries, or a malformed line: no
        digest, a digest other than 64 hex digits, a name that is not a plain file
        in the folder (``/``, ``..``, absolute), a duplicate, an empty line. The
        message names the file, the line's number and its text.
    """
    sums = folder / CHECKSUMS
    if not sums.is_file():
        raise ModelError(f"{folder}: no {CHECKSUMS} file; not a ser model folder")
    lines = _read_text(sums).split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if not lines:
        raise ModelError(f"{sums}: empty; not a ser model folder")
    listed: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        try:
            name, digest = _sums_entry(line.removesuffix("\r"), listed)  # "\r": written on Windows
        except ValueError as exc:
            raise ModelError(f"{sums}: line {number}: {exc} (read {_excerpt(line)})") from None
        listed[name] = digest
    return listed


def _sums_entry(line: str, listed: Mapping[str, str]) -> tuple[str, str]:
    """``(name, digest)`` of one SHA256SUMS line; a ValueError says what is wrong with it."""
    if not line.strip():
        raise ValueError("empty line")
    match = _SUMS_LINE.fullmatch(line)
    if match is None:
        raise ValueError("expected '<64 hex digits>  <file name>'")
    digest, name = match.group(1).lower(), match.group(2)
    # Only files directly in the folder: a name that climbs out of it (../x, /etc/x) or
    # into a sub-folder would make the checksums vouch for files the folder does not hold.
    if (name in (".", "..") or "/" in name or "\\" in name or not name.isprintable()
            or name != name.strip()):
        raise ValueError(f"{_excerpt(name)} is not a plain file name in the folder")
    if name == CHECKSUMS:
        raise ValueError("the file lists itself")
    if name in listed:
        raise ValueError(f"{name} listed twice")
    return name, digest


def _read_text(path: Path) -> str:
    """The UTF-8 text of ``path``; a ModelError for a file that cannot be read or decoded."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})") from None


def _read_json(path: Path):
    """The JSON value in ``path``; a one-line ModelError for bytes that are not UTF-8 JSON."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError: JSONDecodeError, or an integer past Python's 4300-digit limit;
        # RecursionError: lists or objects nested thousands deep.
        raise ModelError(f"{path}: not valid JSON ({exc})") from None


def _read_config(folder: Path) -> Config:
    """The validated ``folder/config.json``; a ModelError naming the file for any problem."""
    path = folder / "config.json"
    try:
        return Config.load(path)
    except ConfigError as exc:
        # Config.load names the file when it cannot read it, but not for a bad field.
        message = _one_line(str(exc))
        raise ModelError(message if message.startswith(f"{path}:") else f"{path}: {message}") from None


def _read_labels(folder: Path) -> list[str]:
    """The class names in ``folder/labels.json`` (a JSON list of strings)."""
    path = folder / "labels.json"
    labels = _read_json(path)
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ModelError(f"{path}: expected a JSON list of class names, got {_excerpt(labels)}")
    return labels


def _read_metrics(folder: Path) -> dict:
    """The recorded metrics in ``folder/metrics.json`` (a JSON object)."""
    path = folder / "metrics.json"
    metrics = _read_json(path)
    if not isinstance(metrics, dict):
        raise ModelError(f"{path}: expected a JSON object of metrics, got {_excerpt(metrics)}")
    return metrics


def _uses(folder: Path, listed: Mapping[str, str], name: str) -> bool:
    """Whether the load reads the optional ``folder/name``: only when listed, so verified.

    A file present but not listed is refused rather than ignored or used unverified.
    """
    if name in listed:
        return True
    if (folder / name).exists():
        raise ModelError(f"{folder / name}: not listed in {CHECKSUMS}; refusing to use an unverified file")
    return False


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _load_part(path: Path, load, **kwargs):
    """``load(path, **kwargs)``, any failure raised as a one-line ModelError naming ``path``."""
    try:
        return load(path, **kwargs)
    except ModelError as exc:
        message = _one_line(str(exc))
    except Exception as exc:  # noqa: BLE001 - numpy, zipfile, ONNX Runtime and Keras raise many types
        message = _one_line(f"cannot load ({type(exc).__name__}: {exc})")
    raise ModelError(message if str(path) in message else f"{path}: {message}")


def _check_keras_archive(path: Path) -> None:
    """Refuse a ``.keras`` file that is not a zip holding a Keras config and weights.

    Cheap (the zip directory only): for the files read on first use, not at load time.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except Exception as exc:  # noqa: BLE001 - BadZipFile, but also EOFError, ValueError... on crafted bytes
        raise ModelError(_one_line(f"{path}: not a Keras archive ({type(exc).__name__}: {exc})")) from None
    if not {"config.json", "model.weights.h5"} <= names:
        raise ModelError(f"{path}: not a Keras archive (no config.json and model.weights.h5 in the zip)")


def _check_network(path: Path, input_shape, output_shape, config: Config) -> None:
    """Refuse a network whose input or output does not fit ``config``'s features and classes."""
    from ser.features import feature_shape

    expected = feature_shape(config.audio, config.features)
    if not isinstance(input_shape, tuple) or len(input_shape) != 4:
        raise ModelError(f"{path}: takes inputs of shape {input_shape}, expected (batch, *{expected}, 1)")
    if None not in input_shape[1:3] and tuple(input_shape[1:3]) != expected:
        raise ModelError(f"{path}: takes features of shape {tuple(input_shape[1:3])}, but config.json "
                         f"gives {expected}")
    n_classes = output_shape[-1] if isinstance(output_shape, tuple) and output_shape else None
    if n_classes is not None and n_classes != len(config.classes):
        raise ModelError(f"{path}: outputs {n_classes} classes, but labels.json has {len(config.classes)}")


def _open_onnx(path: Path, config: Config):
    """An ONNX Runtime session (one thread) on ``path``, checked against ``config``."""
    from ser.runtime import OnnxRunner

    # One thread: the graph (a small CNN or MLP head) is a small part of the work, and
    # in predict_files it runs beside the decoding workers, which already fill the
    # cores (on 480 clips with the fast model: 0.61-0.71 s instead of 0.81-0.83 s).
    runner = _load_part(path, OnnxRunner, threads=1)
    _check_network(path, runner.input_shape, (runner.n_classes,), config)
    return runner


def _open_keras(path: Path, config: Config):
    """The Keras model in ``path`` (safe mode), checked against ``config``."""
    _check_keras_archive(path)
    from ser.runtime import load_keras

    model = _load_part(path, load_keras)
    _check_network(path, getattr(model, "input_shape", None), getattr(model, "output_shape", None), config)
    return model


def _read_adapted(folder: Path, listed: Mapping[str, str], config: Config, *, onnx: bool):
    """``(adapted head path, SpeakerNorm)`` of the folder, or ``(None, None)`` without speakers.npz.

    The head itself loads on first use (see :attr:`ser.inference.Recognizer.adapted`), but its
    files are checked now: both must be listed (save copies both), the Keras one
    must be an archive, and the ONNX one, when it is the one used, must open
    (about 20 ms for the default model's head, against 0.7 s for its whole load).
    """
    if not _uses(folder, listed, SPEAKER_NORM):
        return None, None
    from ser.speakers import SpeakerNorm

    speaker_norm = _load_part(folder / SPEAKER_NORM, SpeakerNorm.load)
    has_onnx, has_keras = (_uses(folder, listed, name) for name in (ADAPTED_ONNX, ADAPTED_KERAS))
    if has_keras:
        _check_keras_archive(folder / ADAPTED_KERAS)
    if onnx and has_onnx:
        _open_onnx(folder / ADAPTED_ONNX, config)
        return folder / ADAPTED_ONNX, speaker_norm
    if not has_keras:
        raise ModelError(f"{folder / ADAPTED_KERAS}: missing; {SPEAKER_NORM} comes with the adapted head")
    return folder / ADAPTED_KERAS, speaker_norm


def _features_line(config: Config) -> str:
    from ser.encoders import WHISPER_HIDDEN_STATES

    f, a = config.features, config.audio
    extras = (f", silence trimmed at {a.trim_db:g} dB" if a.trim_db else "") + (", peak-normalised"
                                                                                if a.peak_normalize else "")
    if f.kind == "whisper":
        runs = (f"{f.encoder_precision} weights" if f.encoder_graph == "none"
                else f"an ONNX graph on ONNX Runtime, {f.encoder_graph}" + (
                    "; dequantized to float32 on CPUs without int8 matrix instructions"
                    if f.encoder_graph != "float32" else ""))
        return (f"- features: frozen Whisper-base encoder ({runs}), all {WHISPER_HIDDEN_STATES} "
                f"hidden states, "
                f"mean + std over the clip's own length (up to {a.duration:g} s){extras}")
    size = f"{f.n_mfcc} coefficients" if f.kind == "mfcc" else f"{f.n_mels} bands"
    return (f"- features: {f.kind} ({size}), n_fft {f.n_fft}, hop {f.hop_length}, normalisation {f.normalize}"
            f"{extras}")


def _model_line(config: Config) -> str:
    m, t = config.model, config.train
    ensemble = f", ensemble of {t.ensemble}" if t.ensemble > 1 else ""
    if m.architecture == "mlp":
        layers = "learned weighted sum of layers" if m.layers == "weighted" else "last layer"
        adapted = ("; plus a speaker-adapted head of the same form on features standardised per speaker "
                   "(used with an enrolled speaker or --adapt)" if config.speakers.adapted_head else "")
        return f"- model: {layers} → dense {m.dense_units} → softmax{ensemble}{adapted}"
    return f"- model: cnn2d, filters {list(m.filters)}, dense {m.dense_units}{ensemble}"


ADAPTATION_NOTE = ("Rows other than si6 and seed-split are the speaker-adapted head under the adaptation protocols "
                   "(benchmarks/adaptation.py): the speaker's statistics from an enrolment (si6-enrol), k unlabelled "
                   "clips (si6-adapt-k), all of them (si6-adapt-all), none (si6-prior), or their clips through one "
                   "random channel (channel-shift).")


def model_card(config: Config, metadata: dict) -> str:
    """A short Markdown model card from the config and recorded metrics."""
    lines = [f"# ser model `{config.name}`", "",
             "Speech emotion recognition: one of " + ", ".join(config.classes) + ".", "",
             "## Input and features", "",
             f"- audio resampled to {config.audio.sample_rate} Hz mono, first {config.audio.duration:g} s"
             + (" (zero-padded if shorter)" if config.features.kind != "whisper" else ""),
             _features_line(config), _model_line(config), ""]
    training = metadata.get("training", {})
    if training:
        lines += ["## Training", ""] + [f"- {k}: {v}" for k, v in training.items()] + [""]
    evaluations = metadata.get("evaluation", {})
    if evaluations:
        lines += ["## Evaluation (same recipe, held-out data)", ""]
        if any(name.startswith("si6-") or name == "channel-shift" for name in evaluations):
            lines += [ADAPTATION_NOTE, ""]
        lines += ["| protocol | accuracy | UAR | macro-F1 | source |", "|---|---|---|---|---|"]
        for name, ev in evaluations.items():
            lines.append(f"| {name} | {ev['accuracy']:.3f} | {ev['uar']:.3f} | {ev['macro_f1']:.3f} | "
                         f"{ev.get('source', '')} |")
        lines.append("")
    lines += ["## Data and license", "",
              metadata.get("data_license", "Trained on data whose license the trainer must state."), ""]
    return "\n".join(lines)


def open_keras(folder: Path | None, config: Config):
    """The Keras network of a model folder (for fine-tuning and Keras/TFLite export).

    Raises
    ------
    ModelError
        No folder, or no ``model.keras`` in it (bundled models ship ONNX only).
    """
    if folder is None or not (folder / KERAS_FILE).is_file():
        raise ModelError(f"{folder or 'this model'}: has no {KERAS_FILE} (bundled models ship ONNX only; "
                         "train a model to get its Keras network)")
    return _open_keras(folder / KERAS_FILE, config)


def open_head(path: Path, config: Config):
    """A runner for the network file ``path`` (``.onnx`` on ONNX Runtime, else Keras), checked against ``config``."""
    if path.suffix == ".onnx":
        return _open_onnx(path, config)
    from ser.runtime import KerasRunner

    return KerasRunner(_open_keras(path, config))


def read_model_folder(path: str | os.PathLike | None = None, *, runtime: str = "auto") -> dict:
    """Read and verify a model folder: the keyword arguments of :class:`ser.inference.Recognizer`.

    Checksums in ``SHA256SUMS`` are verified first, and only listed files are
    read; the Keras file is loaded in safe mode and the ONNX file is a plain
    graph, so no code from the folder is ever executed. Files read later (the
    Keras model under ONNX Runtime, the speaker-adapted head) are checked now.

    Parameters
    ----------
    path : path-like, optional
        Model folder or bundled model name (see :func:`resolve_model`).
    runtime : {"auto", "onnx", "keras"}
        ``"auto"``: ONNX Runtime when the folder has ``model.onnx``, else Keras.

    Raises
    ------
    ModelError
        One line naming the file: missing folder or file, unknown bundled name,
        malformed ``SHA256SUMS``, checksum mismatch, a file used but not listed,
        malformed JSON (config, labels, metrics), an unreadable network or array
        file, or a network that does not fit the config's features or classes.
    """
    if runtime not in ("auto", "onnx", "keras"):
        raise ValueError(f"runtime={runtime!r}: expected 'auto', 'onnx' or 'keras'")
    folder = resolve_model(path)
    # Every file read below is listed in SHA256SUMS and verified first (see _uses).
    listed = verify_checksums(folder)
    config = _read_config(folder)
    labels = _read_labels(folder)
    if labels != list(config.classes):
        raise ModelError(f"{folder / 'labels.json'}: classes {_excerpt(labels)} differ from config "
                         f"{list(config.classes)}")
    metadata = _read_metrics(folder) if _uses(folder, listed, "metrics.json") else {}
    has_keras = _uses(folder, listed, KERAS_FILE)
    use_onnx = runtime != "keras" and _uses(folder, listed, ONNX_FILE)
    if runtime == "onnx" and not use_onnx:
        raise ModelError(f"{folder / ONNX_FILE}: ONNX model not found (runtime='onnx')")
    if runtime == "keras" and not has_keras:
        raise ModelError(f"{folder / KERAS_FILE}: not in this folder (bundled models ship ONNX only); "
                         "use runtime='onnx'")
    # The cheap checks first: a damaged folder fails before TensorFlow or the encoder load.
    adapted, speaker_norm = _read_adapted(folder, listed, config, onnx=use_onnx)
    model = runner = None
    if use_onnx:
        runner = _open_onnx(folder / ONNX_FILE, config)
        if has_keras:  # read on first use (fine-tuning, export): refuse one that is no archive now
            _check_keras_archive(folder / KERAS_FILE)
    else:
        model = _open_keras(folder / KERAS_FILE, config)
    encoder = _read_encoder(folder, listed, config)
    return dict(model=model, config=config, metadata=metadata, path=folder, encoder=encoder, runner=runner,
                adapted=adapted, speaker_norm=speaker_norm)


def _read_encoder(folder: Path, listed: Mapping[str, str], config: Config):
    """The encoder the folder carries (``encoder.onnx`` before ``encoder.npz``), or None."""
    has_npz = _uses(folder, listed, ENCODER_FILE)
    if _uses(folder, listed, ENCODER_GRAPH_FILE):
        return _read_encoder_graph(folder, config, has_npz)
    if not has_npz:
        return None
    from ser.encoders import WhisperEncoder

    return _load_part(folder / ENCODER_FILE, WhisperEncoder.from_npz)


def _read_encoder_graph(folder: Path, config: Config, has_npz: bool):
    """``encoder.onnx`` on ONNX Runtime, its precision checked against ``config``.

    Where ONNX Runtime cannot run the graph, the numpy encoder takes over: the folder's
    ``encoder.npz`` if it has one, else the graph's own weights (an int8 graph's dequantized).
    """
    from ser.encoder_onnx import OnnxWhisperEncoder, run_precision

    path = folder / ENCODER_GRAPH_FILE
    wanted = config.features.encoder_graph
    if wanted == "none":
        raise ModelError(f"{path}: config.json says features.encoder_graph='none'; refusing an encoder it "
                         "was not trained with")
    if wanted != "float32":
        run_precision()  # a bad $SER_ENCODER_PRECISION is reported as the setting's error, not the folder's
    fallback = None
    if has_npz:
        from ser.encoders import WhisperEncoder

        fallback = lambda: WhisperEncoder.from_npz(folder / ENCODER_FILE)
    encoder = _load_part(path, OnnxWhisperEncoder, fallback=fallback)
    if encoder.graph_precision != ("float32" if wanted == "float32" else "int8"):
        raise ModelError(f"{path}: a {encoder.graph_precision} graph, but config.json says "
                         f"features.encoder_graph={wanted!r}")
    return encoder


def write_model_folder(recognizer, path: str | os.PathLike, *, history: dict | None = None,
                       card: str | None = None, force: bool = False) -> Path:
    """Write ``recognizer``'s model folder atomically (built aside, then renamed into place).

    Parameters
    ----------
    recognizer : ser.inference.Recognizer
        What to write.
    path : path-like
        The model folder to write. It must not exist, or be an empty folder, or
        (with ``force``) an existing model folder, which is replaced as a whole.
    history : dict, optional
        Training curves (``history.json`` and ``curves.png``).
    card : str, optional
        Model card text (default: :func:`model_card`).
    force : bool
        Replace an existing model folder.

    Returns
    -------
    Path
        The folder, absolute.

    Raises
    ------
    ModelError
        ``path`` is a file, a folder that is not a model folder, or a model
        folder without ``force`` (checked before anything is written).
    """
    path = check_output_folder(path, force=force)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        # The pid in the name tells a later save whether the folder's writer is still alive.
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-"))
    except OSError as exc:
        raise ModelError(f"{path}: cannot write the model folder ({exc.strerror or exc})") from None
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private
        _write_files(recognizer, tmp, history=history, card=card)
        _move_into_place(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ModelError(f"{path}: cannot write the model folder ({exc.strerror or exc})") from None
        raise
    return path


def _copy_or_write(source: Path | None, names: tuple[str, ...], tmp: Path, network) -> None:
    """The network files ``names`` (Keras, ONNX): copied byte for byte from ``source``, else written."""
    if source is not None and all((source / name).is_file() for name in names if name.endswith(".onnx")):
        # Read from a folder and never changed: keep its files byte for byte (re-serialising
        # would change them, and every clone would carry both); a bundled folder has no Keras file.
        for name in names:
            if (source / name).is_file():
                shutil.copyfile(source / name, tmp / name)
        return
    from ser.export import export_onnx

    keras_name, onnx_name = names
    _uncompiled_copy(network).save(tmp / keras_name)
    export_onnx(network, tmp / onnx_name)


def _write_encoder_graph(source: Path | None, tmp: Path, precision: str) -> None:
    """``encoder.onnx``: copied from the folder read, else built from the shared weights."""
    if source is not None and (source / ENCODER_GRAPH_FILE).exists():
        shutil.copyfile(source / ENCODER_GRAPH_FILE, tmp / ENCODER_GRAPH_FILE)
        return
    from ser.encoder_onnx import save_encoder_graph

    save_encoder_graph(tmp / ENCODER_GRAPH_FILE, precision=precision)


def _write_files(rec, tmp: Path, *, history: dict | None, card: str | None) -> None:
    """Every file of ``rec``'s model folder, written into the (new, private) folder ``tmp``."""
    untouched = rec._model is None and rec.path is not None
    _copy_or_write(rec.path if untouched else None, (KERAS_FILE, ONNX_FILE), tmp, rec._model)
    if rec.speaker_norm is not None:
        from_folder = rec._adapted_source is not None
        head = None if from_folder else rec._adapted
        _copy_or_write(rec.path if from_folder else None, (ADAPTED_KERAS, ADAPTED_ONNX), tmp,
                       getattr(head, "model", head))
        rec.speaker_norm.save(tmp / SPEAKER_NORM)
    config = rec.config
    config.save(tmp / "config.json")
    if config.features.kind == "whisper":
        # Carry the encoder, so the folder works without the CTranslate2 weights.
        if config.features.encoder_graph != "none":
            _write_encoder_graph(rec.path, tmp, config.features.encoder_graph)
        elif rec.path is not None and (rec.path / ENCODER_FILE).exists():
            shutil.copyfile(rec.path / ENCODER_FILE, tmp / ENCODER_FILE)
        else:
            from ser.encoders import save_encoder

            save_encoder(tmp / ENCODER_FILE, precision=config.features.encoder_precision)
    atomic_write_text(tmp / "labels.json", json.dumps(list(config.classes)) + "\n")
    atomic_write_text(tmp / "metrics.json", json.dumps(rec.metadata, indent=2) + "\n")
    if history is not None:
        atomic_write_text(tmp / "history.json", json.dumps(history) + "\n")
        try:
            from ser.evaluation import plot_history

            plot_history(history, tmp / "curves.png", title=config.name)
        except ImportError:
            log.info("matplotlib is not installed: no curves.png")
    atomic_write_text(tmp / "README.md", card or model_card(config, rec.metadata))
    write_checksums(tmp)
