"""The ``ser`` command line: each subcommand parses, calls one library function, prints.

Exit codes: 0 success, 1 a handled error (one line; ``-v`` shows the traceback), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from ser import __version__
from ser.errors import ConfigError, OutputError, SERError

log = logging.getLogger("ser")


class UsageError(SERError):
    """Arguments that cannot go together (exit code 2, like argparse's own usage errors)."""


def _config(args: argparse.Namespace):
    from ser.config import parse_overrides, resolve

    config = resolve(args.config)
    overrides = parse_overrides(args.set or [])
    return config.override(overrides) if overrides else config


def _cache(args: argparse.Namespace):
    from ser.cache import FeatureCache, default_cache_dir

    if args.no_cache:
        return FeatureCache(None)
    return FeatureCache(args.cache or default_cache_dir())


def _read_grid(path: str | None) -> dict | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: grid file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON grid ({exc})") from None


def _import_tensorflow_quietly(verbose: bool) -> None:
    """Import TensorFlow with its C++ start-up banner (written straight to fd 2) hidden."""
    if verbose or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_output_file(path: str | os.PathLike, what: str) -> None:
    """Refuse an output path that is a folder, or whose folder is missing, before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give the {what} file to write")
    if not path.parent.is_dir():
        raise OutputError(f"{path.parent}: folder not found (for the {what} file {path.name})")


def _say(line: str) -> None:
    """Print one line to stderr on a line of its own, also while a progress bar is drawn there."""
    tqdm = sys.modules.get("tqdm")  # loaded only when a bar is shown; importing it costs start-up time
    if tqdm is not None:
        tqdm.tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)


def _flush_stdout() -> None:
    """Flush standard output now, so a full disk is one clear error here rather than a traceback at exit."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"standard output: cannot write results ({exc.strerror or exc})") from None


# --- data ----------------------------------------------------------------

def cmd_data_index(args: argparse.Namespace) -> int:
    from ser.dataset import index_corpus, write_manifest

    _check_output_file(args.output, "manifest")
    clips, dropped = index_corpus(args.root, args.corpus)
    write_manifest(clips, args.output)
    print(f"{args.output}: {len(clips)} clips, {len({c.speaker for c in clips})} speakers "
          f"({clips[0].meta.get('corpus', args.corpus)})")
    if dropped:
        print("dropped: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    return 0


def cmd_data_summary(args: argparse.Namespace) -> int:
    from ser.dataset import load_datasets, summarize

    summary = summarize(load_datasets(args.data))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"clips: {summary['clips']}")
    print("classes: " + ", ".join(f"{k} {v}" for k, v in summary["labels"].items()))
    print(f"speakers: {len(summary['speakers'])} (" + ", ".join(f"{k}: {v}" for k, v in summary["speakers"].items())
          + ")")
    if "duration_s" in summary:
        d = summary["duration_s"]
        print(f"duration (s): min {d['min']}, mean {d['mean']}, max {d['max']}, total {d['total']}")
    print("sample rates: " + ", ".join(f"{k} Hz: {v}" for k, v in summary["sample_rates"].items()))
    print("channels: " + ", ".join(f"{k}: {v}" for k, v in summary["channels"].items()))
    if summary.get("unreadable"):
        print(f"unreadable files: {summary['unreadable']}")
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from ser.download import RAVDESS_MD5, RAVDESS_URL, download_ravdess

    md5 = RAVDESS_MD5 if args.md5 is None else (args.md5 or None)  # --md5 '' skips the check
    dest = download_ravdess(args.dest, url=args.url or RAVDESS_URL, md5=md5, progress=not args.quiet)
    print(f"{dest}: RAVDESS speech ready (next: ser data index {dest})")
    return 0


# --- training and evaluation -----------------------------------------------

def cmd_config(args: argparse.Namespace) -> int:
    print(json.dumps(_config(args).to_dict(), indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    _import_tensorflow_quietly(args.verbose)
    import time

    from ser.dataset import load_datasets
    from ser.modelfolder import check_output_folder
    from ser.training import describe_device, train_recognizer

    check_output_folder(args.out, force=args.force)  # before hours of training, not after
    config = _config(args)
    clips = load_datasets(args.data)
    print(f"device: {describe_device()}", file=sys.stderr)
    start = time.perf_counter()
    recognizer, history = train_recognizer(clips, config, cache=_cache(args), jobs=args.jobs,
                                           progress=not args.quiet)
    metadata = {"training": {"data": ", ".join(map(str, args.data)), "clips": len(clips),
                             "speakers": len({c.speaker for c in clips}), "epochs_run": len(history["loss"]),
                             "train_s": round(time.perf_counter() - start, 1)}}
    # train_recognizer recorded training_data (what `ser evaluate --model` checks against) and validation.
    validation = recognizer.metadata.get("validation")
    if validation:
        metadata["training"]["validation_uar"] = round(validation["uar"], 4)
    if args.data_license:
        metadata["data_license"] = args.data_license
    out = recognizer.replace(metadata=recognizer.metadata | metadata).save(args.out, history=history,
                                                                        force=args.force)
    score = (f", validation UAR {validation['uar']:.3f}" + (" (near chance)" if validation["near_chance"] else "")
             if validation else "")
    print(f"{out}: model saved ({len(clips)} clips, {len(history['loss'])} epochs{score})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    _import_tensorflow_quietly(args.verbose)
    from ser.dataset import load_datasets
    from ser.evaluation import confusion_text, evaluate, protocol_label

    clips = load_datasets(args.data)
    if args.model:
        return _score_model(args, clips)
    if not args.protocol or not args.out:
        raise ConfigError("evaluate: give --protocol and --out to cross-validate a recipe, or --model to score one")
    config = _config(args)
    with _ray_executor(args) as executor:
        report = evaluate(clips, config, protocol=args.protocol, out_dir=args.out, folds_k=args.folds,
                          grid=_read_grid(args.grid), inner_folds=args.inner_folds, cache=_cache(args),
                          jobs=args.jobs, progress=not args.quiet, partial_folds=args.partial_folds,
                          executor=executor)
    s = report["summary"]
    print(f"device: {report['device']}")
    print(f"protocol: {protocol_label(report)}")
    for f in s["folds"]:
        print(f"fold {f['fold']} ({', '.join(f['test_speakers']) or 'mixed'}): accuracy {f['accuracy']:.3f}  "
              f"UAR {f['uar']:.3f}  macro-F1 {f['macro_f1']:.3f}")
    if len(s["folds"]) > 1:
        print(f"mean ± std: accuracy {s['mean']['accuracy']:.3f} ± {s['std']['accuracy']:.3f}  "
              f"UAR {s['mean']['uar']:.3f} ± {s['std']['uar']:.3f}  "
              f"macro-F1 {s['mean']['macro_f1']:.3f} ± {s['std']['macro_f1']:.3f}")
    p = s["pooled"]
    spread = f" ± {p['uar_std_over_draws']:.3f} (draws)" if "uar_std_over_draws" in p else ""
    print(f"pooled ({p['n']} clips): accuracy {p['accuracy']:.3f}  UAR {p['uar']:.3f}{spread}  "
          f"macro-F1 {p['macro_f1']:.3f}")
    for key in ("baseline", "clean", "uncorrected"):
        if key in report:
            b = report[key]
            print(f"{b['what']}: accuracy {b['accuracy']:.3f}  UAR {b['uar']:.3f}  macro-F1 {b['macro_f1']:.3f}")
    print(confusion_text(p["confusion"], report["classes"]))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _score_model(args: argparse.Namespace, clips) -> int:
    from ser.evaluation import confusion_text, score_model
    from ser.inference import Recognizer

    report = score_model(Recognizer.load(args.model), clips, out_dir=args.out, progress=not args.quiet)
    print(f"scored over: {', '.join(report['shared_labels'])} ({report['n']} clips)")
    if report["left_out"]["model_only"]:
        print(f"left out (model classes not in the data): {', '.join(report['left_out']['model_only'])}")
    if report["left_out"]["data_only"]:
        print("left out (data labels the model lacks): "
              + ", ".join(f"{k} {v}" for k, v in report["left_out"]["data_only"].items()))
    mark = "  (NOT held out: see the warning)" if report["held_out"] is False else ""
    print(f"accuracy {report['accuracy']:.3f}  UAR {report['uar']:.3f}  macro-F1 {report['macro_f1']:.3f}{mark}")
    print(confusion_text(report["confusion"], report["shared_labels"]))
    for line in report["failed"]:
        print(f"error: {line}", file=sys.stderr)
    return 1 if report["failed"] else 0


def cmd_grid(args: argparse.Namespace) -> int:
    _import_tensorflow_quietly(args.verbose)
    from ser.dataset import load_datasets
    from ser.training import grid_search, write_grid_table

    config = _config(args)
    with _ray_executor(args) as executor:
        table = grid_search(load_datasets(args.data), config, _read_grid(args.grid), inner_folds=args.inner_folds,
                            cache=_cache(args), progress=not args.quiet, executor=executor)
    write_grid_table(table, args.out)
    from ser.config import Config

    Config.from_dict(table["best_config"]).save(Path(args.out) / "best_config.json")
    for row in table["rows"]:
        print(f"{json.dumps(row['params'])}: inner UAR {row['uar_mean']:.3f} ± {row['uar_std']:.3f}")
    print(f"best: {json.dumps(table['best_params'])} -> {Path(args.out) / 'best_config.json'}")
    return 0


def _ray_executor(args: argparse.Namespace):
    """``--ray [ADDRESS]``: a connection and an executor of Ray tasks for the block; without it, None (local)."""
    import contextlib

    if args.ray is None:
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def running():
        from ser.batch import connect, ray_executor

        with connect(args.ray or None):
            yield ray_executor()
    return running()


# --- prediction -------------------------------------------------------------

def _expand_inputs(items: list[str]) -> tuple[list[Path], dict[Path, str]]:
    """Files, folders (recursive), glob patterns, manifests and ``-`` (standard input) → paths to read.

    Also returns the speaker of each manifest row that names one (for ``--adapt``).
    """
    import glob

    from ser.dataset import AUDIO_EXTENSIONS

    if items.count("-") > 1:
        raise UsageError("- (standard input) can be read only once; name it once")
    paths: list[Path] = []
    speakers: dict[Path, str] = {}
    for item in items:
        p = Path(item)
        if item == "-":
            paths.append(p)
        elif p.suffix.lower() == ".csv" and p.is_file():
            from ser.dataset import read_manifest

            clips = read_manifest(p, labels=False, check_files=False)
            paths.extend(c.path for c in clips)
            speakers.update({c.path: c.speaker for c in clips if c.speaker})
        elif p.is_dir():
            paths.extend(_folder_audio(p, AUDIO_EXTENSIONS))
        elif not p.exists() and glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            paths.extend(matches or [p])  # no match: reported as a missing file
        else:
            paths.append(p)  # a missing file is reported by the predictor, one line
    return paths, speakers


def _folder_audio(folder: Path, extensions) -> list[Path]:
    """Audio files under ``folder`` (recursive, sorted); says what else it skipped.

    A link that leads nowhere (broken, or a loop) with an audio extension is kept, so
    the predictor reports it by name; audio or video files of a format libsndfile
    cannot read (``.m4a``, ``.aac``...) are counted on stderr rather than skipped silently.
    """
    found, skipped = [], {}
    for f in sorted(folder.rglob("*")):
        suffix = f.suffix.lower()
        if suffix in extensions and (f.is_file() or (f.is_symlink() and not f.exists())):
            found.append(f)
        elif suffix in UNREADABLE_MEDIA and f.is_file():
            skipped[suffix] = skipped.get(suffix, 0) + 1
    if skipped:
        print(f"note: {folder}: skipped {sum(skipped.values())} files in formats ser cannot read ("
              + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) + "); convert them to WAV or FLAC",
              file=sys.stderr)
    return found


#: Audio and video containers libsndfile does not read: named when a folder holds them.
UNREADABLE_MEDIA = frozenset({".m4a", ".aac", ".mp4", ".m4b", ".wma", ".amr", ".3gp", ".webm", ".mkv", ".mov",
                              ".ac3", ".ape", ".wv", ".caf"})


def _adaptation_groups(paths: list[Path], speakers: dict[Path, str]) -> list[str]:
    """Speaker of each file for ``--adapt``: a manifest's speaker column, else the file's folder."""
    return [speakers.get(p.resolve(), str(p.resolve().parent)) if str(p) != "-" else "-" for p in paths]


def _stdin_to_file(tmp_dir: str) -> Path:
    """Standard input (audio in any libsndfile format) → a temporary file to decode."""
    data = sys.stdin.buffer.read()
    path = Path(tmp_dir) / "stdin"
    path.write_bytes(data)
    return path


def cmd_predict(args: argparse.Namespace) -> int:
    import contextlib
    import tempfile

    from ser.quiet import FEATURE_LOGGERS, warnings_once

    if args.timeline:
        return _timeline(args)
    paths, manifest_speakers = _expand_inputs(args.inputs)
    if not paths:
        raise SERError(f"{', '.join(args.inputs)}: no audio files found")
    sink = _ResultSink.open(args, paths)
    todo = [i for i, p in enumerate(paths) if str(p) == "-" or str(p) not in sink.done]
    recognizer = _load_recognizer(args)
    speaker = groups = None
    if args.speaker:
        speaker = recognizer.profile(args.speaker, folder=args.speakers_dir)
    elif args.adapt:
        groups = _adaptation_groups([paths[i] for i in todo], manifest_speakers)
    failed = 0
    with sink, contextlib.ExitStack() as stack:
        stack.enter_context(warnings_once(*FEATURE_LOGGERS))  # "the first 1.0 s are silent" once, not per file
        # A temporary folder only for standard input, removed however the run ends (short of kill -9).
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ser-stdin-")) if "-" in args.inputs else None
        readable = [_stdin_to_file(tmp) if str(paths[i]) == "-" else paths[i] for i in todo]
        sink.header(recognizer.classes)
        results = recognizer.iter_predict_files(readable, batch_size=args.batch_size, jobs=args.jobs,
                                                progress=not args.quiet and len(todo) > 1, errors="return",
                                                speaker=speaker, groups=groups)
        for i, result in zip(todo, results):
            source = str(paths[i])
            if isinstance(result, SERError):
                failed += 1
                message = str(result)
                if source == "-":  # name standard input, not its temporary copy
                    message = "-: " + message.split(": ", 1)[-1]
                _say(f"error: {message}")
            else:
                sink.write(source, result, recognizer.classes)
    if len(todo) < len(paths):
        print(f"resumed: {len(paths) - len(todo)} of {len(paths)} files were already in {args.output}",
              file=sys.stderr)
    if failed:
        print(f"{failed} of {len(todo)} files failed", file=sys.stderr)
    return 1 if failed else 0


class _ResultSink:
    """Where ``ser predict`` writes its results: standard output, or ``--output FILE``, one line per result.

    Each line is flushed as soon as it is written, so an interrupted run keeps every
    finished result; ``--resume`` reads them back (dropping a last line cut short) and
    appends the rest.
    """

    def __init__(self, stream, fmt: str, width: int, done: set[str], write_header: bool) -> None:
        self.stream, self.fmt, self.width, self.done, self._write_header = stream, fmt, width, done, write_header

    @classmethod
    def open(cls, args: argparse.Namespace, paths: list[Path]) -> _ResultSink:
        fmt = "json" if args.json else "csv" if args.csv else "table"
        width = max(len(str(p)) for p in paths)
        if not args.output:
            if args.resume:
                raise UsageError("--resume needs --output FILE (the results of the interrupted run)")
            return cls(sys.stdout, fmt, width, set(), True)
        out = Path(args.output)
        if fmt == "table":
            fmt = {".csv": "csv", ".jsonl": "json", ".json": "json"}.get(out.suffix.lower(), "")
            if not fmt:
                raise UsageError(f"--output {out}: give --json or --csv (or a .jsonl or .csv name)")
        if out.is_dir():
            raise OutputError(f"{out}: is a folder; --output names a file")
        done: set[str] = set()
        if out.exists() and args.resume:
            done = _finished_sources(out, fmt)
        elif out.exists() and out.stat().st_size and not args.force:
            raise OutputError(f"{out}: already exists; use --resume to continue it or --force to replace it")
        try:
            stream = open(out, "a" if args.resume else "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise OutputError(f"{out}: cannot write ({exc.strerror or exc})") from None
        return cls(stream, fmt, width, done, out.stat().st_size == 0)

    def __enter__(self) -> _ResultSink:
        return self

    def __exit__(self, *exc) -> None:
        if self.stream is not sys.stdout:
            self.stream.close()

    def header(self, classes) -> None:
        if not self._write_header:
            return
        if self.fmt == "csv":
            self._line(",".join(["source", "label", "confidence", "duration", *classes]))
        elif self.fmt == "table":
            self._line("file".ljust(self.width) + "  label      conf  " + " ".join(c[:5].rjust(5) for c in classes))

    def write(self, source: str, result, classes) -> None:
        if self.fmt == "json":
            self._line(json.dumps({**result.to_dict(), "source": source}))
        elif self.fmt == "csv":
            import csv
            import io

            buf = io.StringIO()
            csv.writer(buf, lineterminator="").writerow(
                [source, result.label, f"{result.confidence:.6f}", f"{result.duration:.3f}",
                 *(f"{result.scores[c]:.6f}" for c in classes)])
            self._line(buf.getvalue())
        else:
            self._line(source.ljust(self.width) + f"  {result.label:<9} {result.confidence:5.2f}  "
                       + " ".join(f"{result.scores[c]:5.2f}" for c in classes))

    def _line(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            where = "standard output" if self.stream is sys.stdout else self.stream.name
            raise OutputError(f"{where}: cannot write results ({exc.strerror or exc})") from None


def _finished_sources(path: Path, fmt: str) -> set[str]:
    """Sources already in an earlier ``--output`` file; a last line cut short by a kill is removed."""
    import csv

    data = path.read_bytes()
    keep = data[:data.rfind(b"\n") + 1]  # complete lines only
    done: set[str] = set()
    lines = keep.decode("utf-8", errors="replace").splitlines()
    if fmt == "json":
        for n, line in enumerate(lines, 1):
            try:
                done.add(str(json.loads(line)["source"]))
            except (ValueError, KeyError, TypeError):
                raise OutputError(f"{path}: line {n} is not a result of ser predict --json; cannot resume "
                                  "from it") from None
    else:
        rows = list(csv.reader(lines))
        if rows and rows[0][:2] != ["source", "label"]:
            raise OutputError(f"{path}: not a ser predict --csv file (header {rows[0][:2]}); cannot resume from it")
        done = {row[0] for row in rows[1:] if row}
    if len(keep) < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(len(keep))
    return done


def _load_recognizer(args: argparse.Namespace):
    from ser.inference import Recognizer
    from ser.modelfolder import ONNX_FILE, resolve_model

    folder = resolve_model(args.model)
    if args.runtime == "keras" or not (folder / ONNX_FILE).exists():
        _import_tensorflow_quietly(args.verbose)
    recognizer = Recognizer.load(folder, runtime=args.runtime)
    if args.verbose:
        from ser.frontend import describe_encoder

        # Which encoder (numpy or ONNX Runtime) and precision computes the features: they differ per folder.
        _say(f"{folder}: {describe_encoder(recognizer.encoder, recognizer.config)}")
    return recognizer


def _timeline(args: argparse.Namespace) -> int:
    from ser import timeline as tl

    if args.speaker:
        raise UsageError("--timeline: use --adapt (a recording adapts to its own speaker); --speaker is for clips")
    if args.inputs:
        raise UsageError(f"--timeline takes one recording; also given: {' '.join(args.inputs)}")
    if args.timeline == "-":
        raise UsageError("--timeline -: standard input is not supported for a timeline; give a file")
    if args.output or args.resume:
        raise UsageError("--timeline writes <stem>.json/.csv/.png: use --out STEM, not --output/--resume")
    source = Path(args.timeline)
    stem = Path(args.out) if args.out else source.with_suffix("")
    tl.check_writable(stem)  # before the recording is processed, not after
    recognizer = _load_recognizer(args)
    segments = tl.timeline(source, recognizer, progress=not args.quiet, adapt=args.adapt)
    written = tl.save_timeline(segments, stem, source=str(source), duration=tl.file_duration(source),
                               classes=recognizer.classes)
    if args.json:
        for segment in segments:
            print(json.dumps(segment.to_dict()))
    else:
        for segment in segments:
            print(f"{segment.start:9.2f} {segment.end:9.2f}  {segment.label:<9} {segment.confidence:5.2f}")
    _flush_stdout()
    print(f"{len(segments)} segments -> " + ", ".join(str(p) for p in written.values()), file=sys.stderr)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """``ser batch``: score files on Ray actors into a Parquet folder, JSON lines or CSV (resumed when rerun)."""
    from ser.batch import check_address, remove_output, score_archive

    check_address(args.ray or None)
    paths, manifest_speakers = _expand_inputs(args.inputs)
    if any(str(p) == "-" for p in paths):
        raise UsageError("batch: standard input (-) is not supported; give files, folders, globs or manifests")
    if not paths:
        raise SERError(f"{', '.join(args.inputs)}: no audio files found")
    if args.force:
        remove_output(args.out)
    groups = _adaptation_groups(paths, manifest_speakers) if args.adapt else None
    s = score_archive([str(p) for p in paths], args.out, model=args.model or "default", runtime=args.runtime,
                      groups=groups, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                      gpus_per_worker=args.gpus_per_worker, chunk=args.chunk, batch_size=args.batch_size,
                      address=args.ray or None, progress=not args.quiet)
    workers = f"{s['workers']} worker" + ("s" if s["workers"] != 1 else "")
    print(f"{s['out']}: {s['written']} files scored ({s['failed']} with an error) in {s['wall_s']:.1f} s on "
          f"{workers}" + (f"; {s['skipped']} of {s['total']} were already there" if s["skipped"] else ""),
          file=sys.stderr)
    return 1 if s["failed"] else 0


def cmd_speakers_enrol(args: argparse.Namespace) -> int:
    from ser.speakers import enrol, profile_path

    paths, _ = _expand_inputs(args.inputs)
    if not paths:
        raise SERError(f"{', '.join(args.inputs)}: no audio files found")
    recognizer = _load_recognizer(args)
    profile = enrol(recognizer, args.name, paths, folder=args.speakers_dir)
    print(f"{profile_path(profile.name, args.speakers_dir)}: speaker {profile.name!r} enrolled from "
          f"{profile.stats.n} clips")
    return 0


def cmd_speakers_list(args: argparse.Namespace) -> int:
    """List every profile file, one row each, under its file name (what ``--speaker`` and ``remove`` take).

    A profile whose header names another speaker (a renamed or copied file) is listed under its file
    name with a note; a file that cannot be used (unreadable, malformed, badly named) is listed with its
    error, and the rest are still listed. Exit status: 0 when every profile is usable (or there are none),
    1 when any is not (with a count on stderr), so scripts notice a broken profile folder.
    """
    from ser.speakers import default_profiles_dir, list_profiles

    rows = list_profiles(args.speakers_dir)
    for row in rows:
        # A file name may hold a newline or escapes (the row's error says so): quote it to keep one row per line.
        name = row["name"] if row["name"].isprintable() else repr(row["name"])
        if args.json:
            print(json.dumps(row))
        elif "error" in row:
            print(f"{name:<20} unreadable: {row['error']}")
        else:
            note = f"  ({row['note']})" if "note" in row else ""
            print(f"{name:<20} {row['clips']:>4} clips  {row['created']}  {row['bytes'] / 1024:.0f} KB{note}")
    if not rows and not args.json:
        print(f"no speaker profiles in {args.speakers_dir or default_profiles_dir()}", file=sys.stderr)
    bad = sum("error" in row for row in rows)
    if bad:
        print(f"{bad} of {len(rows)} profiles unreadable", file=sys.stderr)
    return 1 if bad else 0


def cmd_speakers_remove(args: argparse.Namespace) -> int:
    from ser.speakers import remove_profile

    for name in args.names:
        print(f"{remove_profile(name, args.speakers_dir)}: removed")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ser import export
    from ser.inference import Recognizer

    suffix = {"onnx": ".onnx", "onnx-audio": "-audio.onnx", "tflite": ".tflite", "keras": ".keras"}[args.format]
    out = Path(args.out) if args.out else Path(f"{Path(args.model or 'model').name}{suffix}")
    _check_output_file(out, f"{args.format} export")
    if args.format == "onnx-audio":
        # The whole pipeline from the folder's model.onnx and encoder: no TensorFlow.
        from ser.export_audio import export_onnx_audio

        recognizer = Recognizer.load(args.model, runtime="onnx")
        export_onnx_audio(recognizer, out)
        print(f"{out}: onnx-audio export (16 kHz waveform -> scores) of {recognizer.path}")
        return 0
    _import_tensorflow_quietly(args.verbose)
    recognizer = Recognizer.load(args.model, runtime="keras")
    getattr(export, f"export_{args.format}")(recognizer.model, out)
    print(f"{out}: {args.format} export of {recognizer.path}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from ser.doctor import failed_models, format_report, report

    result = report(full=args.full)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    failed = failed_models(result)
    if failed:
        print(f"error: bundled model {', '.join(failed)} failed its checksums; reinstall ser", file=sys.stderr)
    return 1 if failed else 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from ser.serve import Limits, serve
        from ser.serve.server import check_binding
    except ImportError as exc:
        raise SERError(f"ser serve needs the serve extra: pip install 'speech-emotion-recognition[serve]' "
                       f"({exc.name or exc} is missing)") from None
    token = args.token or os.environ.get("SER_TOKEN") or None
    check_binding(args.host, token)  # before any model loads
    limits = Limits(max_upload_mb=args.max_upload_mb, max_files=args.max_files, max_timeline_s=args.max_timeline_s,
                    max_stream_s=args.max_stream_s, max_streams=args.max_streams, max_queue=args.max_queue,
                    max_batch=args.batch_size)
    return serve(host=args.host, port=args.port, models=args.model or ["default", "fast"], token=token,
                 cors=args.cors or (), limits=limits, speakers_dir=args.speakers_dir, runtime=args.runtime,
                 workers=args.workers, access_log=not args.quiet, log_level="debug" if args.verbose else "info")


# --- parser -----------------------------------------------------------------

DATA_HELP = "manifest CSV or corpus folder; repeat to combine several corpora"
RAY_HELP = ("run feature extraction, folds and grid candidates as Ray tasks: on the cluster at ADDRESS (HOST:PORT, "
            "ray://HOST:PORT, auto), or without ADDRESS on $RAY_ADDRESS or a local instance (the ray extra)")
SPEAKERS_DIR_HELP = "folder of speaker profiles (default: $SER_SPEAKERS_DIR or ~/.local/share/ser/speakers)"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def _at_least_two(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer of at least 2")
    return value


def _protocol(text: str) -> str:
    from ser.protocols import parse_protocol

    try:
        return parse_protocol(text).name
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


PROTOCOL_HELP = ("si6 (RAVDESS, all 24 actors), seed-split, group-kfold; speaker adaptation (beside them, never "
                 "instead): si6-enrol, si6-adapt-K (e.g. si6-adapt-20), si6-adapt-all, si6-prior, channel-shift, or "
                 "group-kfold-enrol, group-kfold-adapt-K ... for any corpus with speakers")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ser``."""
    parser = argparse.ArgumentParser(prog="ser", description="Speech emotion recognition: train, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"ser {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks on errors")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="index, summarise or download a corpus")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("index", parents=[common], help="corpus folder -> manifest CSV")
    p.add_argument("root", help="corpus folder (RAVDESS Actor_XX/..., CREMA-D, TESS, SAVEE, EmoDB, EMOVO, "
                   "ASED or TurEV-DB)")
    p.add_argument("--corpus", default="auto", help="auto (from the file names), ravdess, crema-d, tess, savee, "
                   "emodb, emovo, ased or turev")
    p.add_argument("-o", "--output", default="manifest.csv", help="manifest to write (default: manifest.csv)")
    p.set_defaults(func=cmd_data_index)
    p = dsub.add_parser("summary", parents=[common], help="class balance, speakers, durations, sample rates")
    p.add_argument("data", nargs="+", help="manifest CSVs and/or corpus folders")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_summary)
    p = dsub.add_parser("download", parents=[common], help="fetch and extract the official RAVDESS speech archive")
    p.add_argument("dest", help="folder to extract Actor_* into")
    p.add_argument("--url", help="alternative URL (mirror)")
    p.add_argument("--md5", help="expected md5 of the archive ('' to skip the check)")
    p.set_defaults(func=cmd_data_download)

    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--config", default="seed_cnn",
                     help="preset name (seed_cnn, cnn, accurate, robust, fast, tiny) or JSON config file")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a config field, e.g. train.epochs=20")
    run.add_argument("--cache", help="feature cache folder (default: $SER_CACHE_DIR or ~/.cache/ser/features)")
    run.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    run.add_argument("--jobs", type=_positive_int, default=None,
                     help="feature worker threads (default: all cores)")

    p = sub.add_parser("config", parents=[common, run], help="print a preset or config file as JSON")
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("train", parents=[common, run], help="train a model on all clips and save its folder")
    p.add_argument("--data", required=True, action="append", help=DATA_HELP)
    p.add_argument("--out", required=True, help="model folder to write (new, or an empty folder)")
    p.add_argument("--force", action="store_true", help="replace an existing model folder at --out (never "
                   "anything else)")
    p.add_argument("--data-license", help="license text for the model card")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", parents=[common, run],
                       help="cross-validate a recipe under a protocol, or score a trained --model on a corpus")
    p.add_argument("--data", required=True, action="append", help=DATA_HELP)
    p.add_argument("--model", help="score this trained model folder on --data (no training; shared emotions only)")
    p.add_argument("--protocol", type=_protocol, metavar="PROTOCOL", help=PROTOCOL_HELP)
    p.add_argument("--partial-folds", action="store_true",
                   help="let si6 run without all 24 RAVDESS actors (the report says partial)")
    p.add_argument("--folds", type=_at_least_two, default=5, help="k for group-kfold (at least 2)")
    p.add_argument("--grid", help="JSON grid {\"section.field\": [values]} searched inside each fold")
    p.add_argument("--inner-folds", type=_at_least_two, default=3,
                   help="speaker-grouped inner folds of the grid search (at least 2)")
    p.add_argument("--out", help="run folder (reports; finished folds are resumed)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help=RAY_HELP)
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("grid", parents=[common, run], help="grid search on speaker-grouped inner folds")
    p.add_argument("--data", required=True, action="append", help=DATA_HELP)
    p.add_argument("--grid", required=True, help="JSON grid {\"section.field\": [values]}")
    p.add_argument("--inner-folds", type=_at_least_two, default=3, help="speaker-grouped inner folds (at least 2)")
    p.add_argument("--out", required=True, help="folder for grid.md, grid.json and best_config.json")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help=RAY_HELP)
    p.set_defaults(func=cmd_grid)
    p = sub.add_parser("predict", parents=[common], help="recognise the emotion in audio files or folders")
    p.add_argument("inputs", nargs="*", metavar="FILE|DIR|GLOB|-",
                   help="audio files, folders (searched recursively), glob patterns, or - for standard input")
    p.add_argument("--model", help="model folder, or a bundled model's name: default (the encoder model) or fast "
                   "(default: default)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object per line")
    out.add_argument("--csv", action="store_true", help="CSV with a header row")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="clips per model call (default: 32)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="worker threads decoding files (default: all cores; used from 17 files on)")
    p.add_argument("--runtime", default="auto", choices=["auto", "onnx", "keras"],
                   help="auto: ONNX Runtime when the model folder has model.onnx (fast start), else Keras")
    p.add_argument("--timeline", metavar="FILE",
                   help="long recording: emotion of each speech segment (streamed), written as JSON, CSV and PNG")
    p.add_argument("--out", help="with --timeline: output path stem (default: next to the recording)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the results to FILE (JSON lines or CSV, from --json/--csv or the name), each line "
                        "as soon as it is known")
    p.add_argument("--resume", action="store_true",
                   help="with --output: skip the files already in FILE (an interrupted run) and append the rest")
    p.add_argument("--force", action="store_true", help="with --output: replace an existing FILE")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--speaker", metavar="NAME", help="every input is of this enrolled speaker (ser speakers enrol)")
    who.add_argument("--adapt", action="store_true",
                     help="adapt to each speaker without labels: standardise per manifest speaker, else per "
                          "folder (with --timeline: per recording, once enough speech is seen)")
    p.add_argument("--speakers-dir", help=SPEAKERS_DIR_HELP)
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("batch", parents=[common], help="score an archive on a Ray cluster into Parquet, JSON lines "
                       "or CSV (resumable; the ray extra)")
    p.add_argument("inputs", nargs="+", metavar="FILE|DIR|GLOB|MANIFEST.csv",
                   help="audio files, folders (searched recursively), glob patterns, manifests (path[,speaker])")
    p.add_argument("-o", "--out", required=True, metavar="RESULTS.parquet|.jsonl|.csv",
                   help="results: a .parquet folder of part files, JSON lines or CSV; a rerun skips the files "
                        "already in it")
    p.add_argument("--force", action="store_true", help="start over: remove an earlier --out first")
    p.add_argument("--model", help="bundled model (default, fast) or a model folder every node can read")
    p.add_argument("--runtime", default="auto", choices=["auto", "onnx", "keras"], help=argparse.SUPPRESS)
    p.add_argument("--adapt", action="store_true",
                   help="adapt to each speaker without labels: per manifest speaker, else per folder")
    p.add_argument("--ray", metavar="ADDRESS", help="the cluster: HOST:PORT, ray://HOST:PORT or auto "
                   "(default: $RAY_ADDRESS, else a local instance with every core)")
    p.add_argument("--workers", type=_positive_int, help="actors, each holding one model (default: the cluster's "
                   "CPUs / --cpus-per-worker)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs each actor reserves (default: 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs each actor reserves (default: 0)")
    p.add_argument("--chunk", type=_positive_int, help="files per task (default: 16 for encoder models, 256 for "
                   "spectral ones)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="clips per model call (default: 32)")
    p.set_defaults(func=cmd_batch)
    speakers = sub.add_parser("speakers", help="enrol, list or remove speaker profiles")
    ssub = speakers.add_subparsers(dest="speakers_command", required=True)
    p = ssub.add_parser("enrol", parents=[common], help="enrol a speaker from a few calm recordings")
    p.add_argument("name", help="speaker name (letters, digits, '.', '_', '-')")
    p.add_argument("inputs", nargs="+", metavar="FILE|DIR|GLOB", help="recordings of the speaker reading calmly")
    p.add_argument("--model", help="model folder (default: the bundled model)")
    p.add_argument("--runtime", default="auto", choices=["auto", "onnx", "keras"], help=argparse.SUPPRESS)
    p.add_argument("--speakers-dir", help=SPEAKERS_DIR_HELP)
    p.set_defaults(func=cmd_speakers_enrol)
    p = ssub.add_parser("list", parents=[common], help="list the enrolled speakers")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--speakers-dir", help=SPEAKERS_DIR_HELP)
    p.set_defaults(func=cmd_speakers_list)
    p = ssub.add_parser("remove", parents=[common], help="delete speaker profiles")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--speakers-dir", help=SPEAKERS_DIR_HELP)
    p.set_defaults(func=cmd_speakers_remove)
    p = sub.add_parser("export", parents=[common], help="export a model for other runtimes")
    p.add_argument("model", nargs="?", help="model folder (default: the bundled model)")
    p.add_argument("--format", required=True, choices=["onnx", "onnx-audio", "tflite", "keras"],
                   help="onnx: the network (input: ser's features); onnx-audio: one graph from the 16 kHz "
                        "waveform to the scores, for ONNX Runtime alone")
    p.add_argument("--out", help="file to write (default: <model name>.<format>)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("serve", parents=[common], help="HTTP service and web page (needs the serve extra)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; any other needs a token)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--model", action="append", metavar="NAME|DIR",
                   help="model to serve, repeatable; the first is the default (default: default and fast)")
    p.add_argument("--token", help="bearer token every /v1/ request must carry (default: $SER_TOKEN)")
    p.add_argument("--cors", action="append", metavar="ORIGIN", help="allow this origin's pages to call the API")
    p.add_argument("--speakers-dir", help=SPEAKERS_DIR_HELP)
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest request body (default: 25)")
    p.add_argument("--max-files", type=_positive_int, default=64, help="files per request (default: 64)")
    p.add_argument("--max-timeline-s", type=float, default=7200.0, help="longest timeline recording (default: 7200)")
    p.add_argument("--max-stream-s", type=float, default=3600.0, help="longest live stream (default: 3600)")
    p.add_argument("--max-streams", type=_positive_int, default=8, help="live streams at once (default: 8)")
    p.add_argument("--max-queue", type=_positive_int, default=64,
                   help="requests waiting per model before 503 + Retry-After (default: 64)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="clips per model call (default: 32)")
    p.add_argument("--workers", type=_positive_int, default=1, help="prediction threads per model (default: 1)")
    p.add_argument("--runtime", default="auto", choices=["auto", "onnx", "keras"], help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("doctor", parents=[common], help="versions, CPU, models and caches, for bug reports")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--full", action="store_true", help="also hash the Whisper encoder's weights (145 MB)")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    if any("\0" in a for a in (sys.argv[1:] if argv is None else argv)):
        # Only possible from Python (a shell cannot pass one); no file name can hold it.
        parser.error("an argument contains a NUL character")
    args = parser.parse_args(argv)
    if args.command == "predict" and not args.inputs and not args.timeline:
        parser.error("predict: give audio files, folders, glob patterns or - (or --timeline FILE)")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if not args.quiet else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    try:
        code = args.func(args)
        _flush_stdout()
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as command-line tools do.
        _silence_stdout()
        return 141
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"ser: error: {exc}", file=sys.stderr)
        return 2
    except SERError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A file-system failure no check foresaw (a full disk, a permission): one line, never a traceback.
        if args.verbose:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None or args.verbose:
            raise
        print(f'error: {exc.name.split(".")[0]} is not installed; `ser {args.command}` needs '
              f'pip install "speech-emotion-recognition[{extra}]"', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


#: Optional dependencies → the extra that installs them (pyproject.toml).
_EXTRAS = {"tensorflow": "train", "keras": "train", "onnx": "train", "sklearn": "train", "audiomentations": "train",
           "matplotlib": "plot", "ray": "ray", "pyarrow": "ray"}


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so Python's own flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (e.g. captured by a test): nothing to silence
        pass
