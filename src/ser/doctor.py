"""``ser doctor``: the environment a bug report needs, in well under a second.

:func:`report` gathers the ser and Python versions, the platform, the CPU and the
instruction sets the runtimes can use, the versions of the libraries ser relies on,
the bundled models (checksums verified), the Whisper encoder folder, the feature
cache, the speaker profiles and the environment variables that change behaviour.
:func:`format_report` turns it into aligned text; ``ser doctor --json`` prints the
dictionary itself.

Every probe runs on its own and turns its failure into a value
(``"unavailable: <reason>"``), so one broken library never hides the rest of the
report. TensorFlow, Keras and librosa are never imported (importing TensorFlow takes
seconds): their versions come from the installed distributions' metadata.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The distribution ser is installed as (``pip install speech-emotion-recognition``).
DISTRIBUTION = "speech-emotion-recognition"

#: Packages whose versions are reported: report key → distribution names to try, in order.
#: TensorFlow and ONNX Runtime ship under several names (``tensorflow-cpu`` is what
#: ser installs on x86-64); the first one installed is reported.
PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "scipy": ("scipy",),
    "soundfile": ("soundfile",),
    "soxr": ("soxr",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel"),
    "keras": ("keras",),
    "librosa": ("librosa",),
    "scikit-learn": ("scikit-learn",),
    "matplotlib": ("matplotlib",),
    "audiomentations": ("audiomentations",),
    "onnx": ("onnx",),
    "tqdm": ("tqdm",),
    "threadpoolctl": ("threadpoolctl",),
    "ctranslate2": ("ctranslate2",),
    "hypothesis": ("hypothesis",),
}
#: Predicting with a bundled model needs these; the others serve training, export, plots and tests.
REQUIRED = ("numpy", "scipy", "soundfile", "soxr", "onnxruntime")

#: Instruction sets the runtimes (ONNX Runtime's MLAS kernels, TensorFlow's oneDNN, OpenBLAS) pick
#: kernels by: display name, its flag in /proc/cpuinfo, its key in numpy's CPU feature table
#: (the fallback off Linux; numpy does not detect AVX-VNNI or AMX).
CPU_FEATURES: tuple[tuple[str, str, str | None], ...] = (
    ("SSE4.2", "sse4_2", "SSE42"),
    ("AVX", "avx", "AVX"),
    ("AVX2", "avx2", "AVX2"),
    ("FMA", "fma", "FMA3"),
    ("F16C", "f16c", "F16C"),
    ("AVX512F", "avx512f", "AVX512F"),
    ("AVX512BW", "avx512bw", "AVX512BW"),
    ("AVX512VL", "avx512vl", "AVX512VL"),
    ("AVX512-VNNI", "avx512_vnni", "AVX512VNNI"),
    ("AVX-VNNI", "avx_vnni", None),
    ("AVX512-BF16", "avx512_bf16", "AVX512BF16"),
    ("AVX512-FP16", "avx512_fp16", "AVX512FP16"),
    ("AMX-TILE", "amx_tile", None),
    ("AMX-INT8", "amx_int8", None),
    ("AMX-BF16", "amx_bf16", None),
    ("NEON", "asimd", "ASIMD"),
    ("NEON-DOTPROD", "asimddp", "ASIMDDP"),
    ("I8MM", "i8mm", None),
    ("SVE", "sve", "SVE"),
    ("SVE2", "sve2", None),
)

#: Environment variables that change what ser (or a library under it) does; always listed.
#: (The CLI sets TF_CPP_MIN_LOG_LEVEL=2 unless -v, so ser doctor shows what TensorFlow would see.)
ENV_VARS = (
    "SER_CACHE_DIR", "SER_SPEAKERS_DIR", "SER_WHISPER_DIR",
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
    "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
    "KERAS_BACKEND", "CUDA_VISIBLE_DEVICES",
)
#: Further variables listed when set: ser's own and the thread libraries' tuning knobs. (Not all of
#: TF_*: other tools use that prefix, e.g. Terraform's TF_CLI_CONFIG_FILE.)
ENV_PREFIXES = ("SER_", "OMP_", "OPENBLAS_", "MKL_", "KMP_", "ORT_")

#: Files larger than this in the Whisper folder are only checked for presence unless ``full``
#: (its model.bin is 145 MB, about 0.3 s to hash; the feature cache trusts its SHA256SUMS line too).
LARGE_FILE = 32 * 1024 * 1024

NOT_INSTALLED = "not installed"


def _probe(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or ``"unavailable: <reason>"`` if it raises anything at all."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - a report must survive any broken library
        return f"unavailable: {type(exc).__name__}: {exc}"


def _short(digest: str | None) -> str | None:
    return digest[:12] if digest else None


# --- probes -----------------------------------------------------------------

def _ser() -> dict:
    import ser

    out = {"version": ser.__version__, "path": str(Path(ser.__file__).resolve().parent), "installed": None}
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return out  # run from a source checkout (PYTHONPATH=src) without pip install
    out["installed"] = dist.version
    # An editable install names its checkout; it may not be the code imported (PYTHONPATH wins).
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct.get("dir_info", {}).get("editable"):
        out["editable"] = direct.get("url")
    return out


def _python() -> dict:
    return {"version": platform.python_version(), "implementation": platform.python_implementation(),
            "executable": sys.executable, "venv": sys.prefix != sys.base_prefix}


def _platform() -> dict:
    libc, libc_version = platform.libc_ver()
    return {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
            "platform": platform.platform(), "libc": f"{libc} {libc_version}".strip() or None}


def _cpuinfo() -> dict[str, str]:
    """First processor's ``key: value`` lines of /proc/cpuinfo (empty off Linux)."""
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return info
    for line in text.splitlines():
        if not line.strip():
            if "flags" in info or "Features" in info:
                break  # every processor repeats the same lines
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def _cpu_model(info: dict[str, str]) -> str:
    model = info.get("model name") or info.get("Model") or info.get("Hardware")
    if not model and platform.system() == "Darwin":
        import subprocess

        proc = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                              timeout=5)
        model = proc.stdout.strip()
    if not model and "CPU part" in info:  # Arm Linux names the core by its ids
        model = f"implementer {info.get('CPU implementer', '?')}, part {info['CPU part']}"
    return model or platform.processor() or "unknown"


def cpu_features() -> list[str]:
    """The :data:`CPU_FEATURES` (display names) this CPU has, from /proc/cpuinfo or numpy.

    Examples
    --------
    >>> "AVX2" in cpu_features()   # doctest: +SKIP
    True
    """
    return _cpu_features(_cpuinfo())[0]


def _cpu_features(info: dict[str, str]) -> tuple[list[str], str]:
    flags = info.get("flags") or info.get("Features")
    if flags is not None:
        present = set(flags.split())
        return [name for name, flag, _ in CPU_FEATURES if flag in present], "/proc/cpuinfo"
    # No /proc/cpuinfo (macOS, Windows): numpy's own run-time detection.
    from numpy._core._multiarray_umath import __cpu_features__ as detected

    return [name for name, _, key in CPU_FEATURES if key and detected.get(key)], "numpy"


def _cpu() -> dict:
    info = _cpuinfo()
    out: dict[str, Any] = {"model": _probe(_cpu_model, info), "cores": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        out["usable_cores"] = len(os.sched_getaffinity(0))  # what a container or taskset leaves us
    features = _probe(_cpu_features, info)
    if isinstance(features, tuple):
        out["features"], out["features_source"] = features
    else:
        out["features"] = features
    out["int8_encoder"] = _probe(_int8_encoder)
    return out


def _int8_encoder() -> str:
    """How an int8 encoder graph (the bundled default's) runs here: ``ser.encoder_onnx.run_precision``."""
    from ser.encoder_onnx import run_precision

    precision, why = run_precision()
    return f"runs {precision}" + (" (dequantized)" if precision == "float32" else "") + f": {why}"


def _version(names: tuple[str, ...]) -> str:
    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return version if name == names[0] else f"{version} ({name})"
    return NOT_INSTALLED


def _packages() -> dict:
    return {key: _probe(_version, names) for key, names in PACKAGES.items()}


def _libsndfile() -> str:
    import soundfile

    return soundfile.__libsndfile_version__


def _onnxruntime_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def _blas() -> list[dict]:
    # Only libraries already loaded are listed: numpy's BLAS (ser imports numpy anyway).
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "num_threads", "threading_layer", "architecture")
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info()]


def _model(folder: Path) -> dict:
    from ser.modelfolder import CHECKSUMS, ONNX_FILE, verify_checksums

    out: dict[str, Any] = {"path": str(folder)}
    try:
        verify_checksums(folder)
        out["checksums"] = "ok"
    except Exception as exc:  # noqa: BLE001 - ModelError, and OSError for an unreadable file
        out["checksums"] = f"FAILED: {exc}"
    out["ok"] = out["checksums"] == "ok"
    # The digest of SHA256SUMS names every file of the model at once: a short fingerprint.
    out["fingerprint"] = _probe(lambda: _short(hashlib.sha256((folder / CHECKSUMS).read_bytes()).hexdigest()))

    def config() -> dict:
        settings = json.loads((folder / "config.json").read_text())
        labels = folder / "labels.json"
        classes = json.loads(labels.read_text()) if labels.is_file() else settings.get("classes")
        return {"name": settings.get("name"), "features": settings.get("features", {}).get("kind"),
                "classes": classes}

    out["config"] = _probe(config)
    out["runtime"] = "onnx" if (folder / ONNX_FILE).is_file() else "keras (needs TensorFlow)"
    return out


def _models() -> dict:
    from ser import modelfolder

    # Read at call time so a test (or a future relocation) of PRETRAINED_DIR is seen.
    return {name: _model(modelfolder.PRETRAINED_DIR / name) for name in modelfolder.bundled_models()}


def _read_sums(path: Path) -> dict[str, str]:
    listed = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.strip().partition("  ")
        if name:
            listed[name.strip().lstrip("*")] = digest.strip().lower()  # "*": sha256sum's binary mode
    return listed


def _whisper(full: bool) -> dict:
    from ser.encoders import default_whisper_dir
    from ser.utils import sha256_file

    folder = default_whisper_dir()
    out: dict[str, Any] = {"path": str(folder), "exists": folder.is_dir()}
    if not out["exists"]:
        out["note"] = "needed only to train whisper-feature models (set SER_WHISPER_DIR)"
        return out
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        out["checksums"] = "no SHA256SUMS file"
        return out
    listed = _read_sums(sums)
    # What the feature cache keys whisper features by (ser.cache._encoder_digest): the listed digest.
    out["fingerprint"] = _short(listed.get("model.bin"))
    failed, unhashed = [], []
    for name, digest in listed.items():
        file = folder / name
        if not file.is_file():
            failed.append(f"{name} missing")
        elif not full and file.stat().st_size > LARGE_FILE:
            unhashed.append(name)
        elif sha256_file(file) != digest:
            failed.append(f"{name} checksum mismatch")
    if failed:
        out["checksums"] = "FAILED: " + ", ".join(failed)
    elif unhashed:
        out["checksums"] = f"ok ({', '.join(unhashed)} present, not hashed; --full hashes it)"
    else:
        out["checksums"] = "ok"
    return out


def _tree(folder: Path, suffix: str) -> dict:
    """Files under ``folder``: their total size, and how many end with ``suffix`` (the entries)."""
    out: dict[str, Any] = {"path": str(folder), "exists": folder.is_dir()}
    if not out["exists"]:
        return out
    size = entries = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed while we walk (another ser process)
            entries += name.endswith(suffix) and not name.startswith(".")  # ".x.npy.tmp": a write in progress
    out.update(bytes=size, entries=entries)
    return out


def _feature_cache() -> dict:
    from ser.cache import default_cache_dir

    return _tree(default_cache_dir(), ".npy")


def _environment() -> dict:
    names = [*ENV_VARS, *sorted(k for k in os.environ if k.startswith(ENV_PREFIXES) and k not in ENV_VARS)]
    return {name: os.environ.get(name) for name in names}


def _speaker_profiles() -> dict:
    from ser.speakers import default_profiles_dir

    folder = default_profiles_dir()
    # Counted, not loaded: ser speakers list reads each one.
    return {"path": str(folder), "exists": folder.is_dir(),
            "profiles": len(list(folder.glob("*.npz"))) if folder.is_dir() else 0}


def report(*, full: bool = False) -> dict:
    """The environment, for bug reports: versions, CPU, models, caches, variables.

    Parameters
    ----------
    full : bool
        Also hash the Whisper encoder folder's large files (``model.bin``, 145 MB).
        Bundled models are always verified in full.

    Returns
    -------
    dict
        JSON-serialisable. Keys: ``ser``, ``python``, ``platform``, ``cpu``, ``packages``
        (version, ``"not installed"``, or with the distribution in brackets when it ships
        under another name, e.g. ``tensorflow-cpu``), ``libsndfile``,
        ``onnxruntime_providers``, ``blas``, ``models`` (bundled model name →
        ``checksums``, ``ok``, ``fingerprint``, ``config``, ``runtime``),
        ``whisper_encoder``, ``feature_cache`` (``bytes``, ``entries``),
        ``speaker_profiles``, ``environment`` (``None`` when unset) and ``problems``
        (one line each). A probe that failed holds ``"unavailable: <reason>"``
        instead of its value; nothing raises.
    """
    result: dict[str, Any] = {
        "ser": _probe(_ser),
        "python": _probe(_python),
        "platform": _probe(_platform),
        "cpu": _probe(_cpu),
        "packages": _probe(_packages),
        "libsndfile": _probe(_libsndfile),
        "onnxruntime_providers": _probe(_onnxruntime_providers),
        "blas": _probe(_blas),
        "models": _probe(_models),
        "whisper_encoder": _probe(_whisper, full),
        "feature_cache": _probe(_feature_cache),
        "speaker_profiles": _probe(_speaker_profiles),
        "environment": _probe(_environment),
    }
    result["problems"] = _problems(result)
    return result


def failed_models(result: dict) -> list[str]:
    """Names of the bundled models whose checksums failed in a :func:`report`."""
    models = result.get("models")
    if not isinstance(models, dict):
        return []
    return [name for name, m in models.items() if isinstance(m, dict) and not m.get("ok")]


def _problems(result: dict) -> list[str]:
    problems = [f"bundled model {name!r}: {result['models'][name]['checksums']} (reinstall ser)"
                for name in failed_models(result)]
    if result["models"] == {}:
        problems.append("no bundled models found (the package was installed without its data files)")
    packages = result["packages"]
    if isinstance(packages, dict):
        problems += [f"{name} is not installed (needed to predict)" for name in REQUIRED
                     if packages.get(name) == NOT_INSTALLED]
    whisper = result["whisper_encoder"]
    if isinstance(whisper, dict) and str(whisper.get("checksums", "")).startswith("FAILED"):
        problems.append(f"Whisper encoder folder {whisper['path']}: {whisper['checksums']}")
    for key, value in result.items():
        if isinstance(value, str) and value.startswith("unavailable:"):
            problems.append(f"{key}: {value}")
    return problems


# --- text -------------------------------------------------------------------

def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _home(path: str) -> str:
    # Shorter, and keeps the user name out of pasted bug reports.
    home = str(Path.home())
    return "~" + path[len(home):] if home != "/" and (path == home or path.startswith(home + os.sep)) else path


def _lines(result: dict) -> list[tuple[str, str]]:
    """(label, value) rows; a section whose probe failed shows its ``unavailable:`` string."""
    rows: list[tuple[str, str]] = []

    def section(key: str, label: str, render: Callable[[Any], None]) -> None:
        value = result.get(key)
        if isinstance(value, str) or value is None:
            rows.append((label, str(value)))
            return
        start = len(rows)
        try:
            render(value)
        except Exception as exc:  # noqa: BLE001 - an odd value (a hand-edited config.json) must not stop the report
            del rows[start:]
            rows.append((label, f"unavailable: {type(exc).__name__}: {exc}"))

    def ser(v):
        rows.append(("ser", f"{v['version']} from {_home(v['path'])}"))
        installed = f"{DISTRIBUTION} {v['installed']}" if v["installed"] else "no (run from a source tree)"
        if v.get("editable"):
            installed += f", editable from {v['editable']}"
        rows.append(("", f"installed: {installed}"))

    def python(v):
        venv = ", venv" if v["venv"] else ""
        rows.append(("python", f"{v['version']} {v['implementation']} ({_home(v['executable'])}{venv})"))

    def plat(v):
        rows.append(("platform", v["platform"] + (f" ({v['libc']})" if v.get("libc") else "")))

    def cpu(v):
        usable = f", {v['usable_cores']} usable" if v.get("usable_cores") not in (None, v["cores"]) else ""
        rows.append(("cpu", f"{v['model']} ({v['cores']} cores{usable})"))
        features = v["features"]
        if isinstance(features, list):
            features = " ".join(features) or "none of " + " ".join(name for name, _, _ in CPU_FEATURES)
            if v.get("features_source") == "numpy":
                features += " (numpy's detection; AMX and AVX-VNNI unknown)"
        rows.append(("cpu features", features))
        rows.append(("int8 encoder", v["int8_encoder"]))

    def packages(v):
        rows.append(("packages", ""))
        rows.extend((f"  {name}", version) for name, version in v.items())

    def blas(v):
        text = "; ".join(f"{p['internal_api']} {p['version']} ({p['num_threads']} threads, "
                         f"{p.get('architecture') or '?'}, {p.get('threading_layer') or '?'})" for p in v)
        rows.append(("blas", text or "none loaded"))

    def models(v):
        rows.append(("models", "none found" if not v else ""))
        for name, m in v.items():
            c = m["config"]
            about = (f"config {c['name']} ({c['features']}), {len(c['classes'])} classes: {' '.join(c['classes'])}"
                     if isinstance(c, dict) and c.get("classes") else str(c))
            rows.append((f"  {name}", f"checksums {m['checksums']}"))
            rows.append(("", f"fingerprint {m['fingerprint']}, runtime {m['runtime']}"))
            rows.append(("", about))

    def whisper(v):
        if not v["exists"]:
            rows.append(("whisper encoder", f"{_home(v['path'])}: not found; {v['note']}"))
            return
        rows.append(("whisper encoder", _home(v["path"])))
        rows.append(("", f"checksums {v['checksums']}"))
        if v.get("fingerprint"):
            rows.append(("", f"fingerprint {v['fingerprint']} (model.bin, as the feature cache keys it)"))

    def cache(v):
        state = (f"{_size(v['bytes'])} in {v['entries']} entries ({v['bytes']} bytes)" if v["exists"]
                 else "not created yet")
        rows.append(("feature cache", f"{_home(v['path'])}: {state}"))

    def speakers(v):
        state = f"{v['profiles']} profiles" if v["exists"] else "not created yet"
        rows.append(("speaker profiles", f"{_home(v['path'])}: {state}"))

    def environment(v):
        set_ = [f"{k}={val}" for k, val in v.items() if val is not None] or ["none of the variables below set"]
        rows.extend(("environment" if i == 0 else "", line) for i, line in enumerate(set_))
        unset = [k for k, val in v.items() if val is None]
        if unset:
            rows.extend(("", line) for line in textwrap.wrap("unset: " + " ".join(unset), 80))

    section("ser", "ser", ser)
    section("python", "python", python)
    section("platform", "platform", plat)
    section("cpu", "cpu", cpu)
    section("packages", "packages", packages)
    section("libsndfile", "libsndfile", lambda v: rows.append(("libsndfile", v)))
    section("onnxruntime_providers", "onnxruntime",
            lambda v: rows.append(("onnxruntime", "providers " + ", ".join(v))))
    section("blas", "blas", blas)
    section("models", "models", models)
    section("whisper_encoder", "whisper encoder", whisper)
    section("feature_cache", "feature cache", cache)
    section("speaker_profiles", "speaker profiles", speakers)
    section("environment", "environment", environment)
    for i, problem in enumerate(result.get("problems") or []):
        rows.append(("problems" if i == 0 else "", problem))
    return rows


def format_report(result: dict) -> str:
    """A :func:`report` as aligned ``label  value`` lines, ready to paste into a bug report."""
    rows = _lines(result)
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label:<{width}}{value}".rstrip() for label, value in rows)
