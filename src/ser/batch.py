"""Ray jobs: score an archive of any size, and run training's work on a cluster.

Two things live here, both on `Ray <https://docs.ray.io>`_ (the ``ray`` extra):

* :func:`score_archive` (``ser batch``): files → a pool of Ray Data actors, each
  holding one loaded :class:`~ser.inference.Recognizer` that decodes, featurises and
  scores a chunk of files at a time (one stage: for the default model the speech
  encoder is both the feature extractor and most of the cost, so it lives in the actor)
  → rows written by this process to Parquet (a folder of part files), JSON lines or CSV.
  Bad files become rows with an error; a rerun skips the files already in the output;
  a worker that dies has its chunk retried (Ray Data restarts the actor) and no row is
  written twice, because only this process writes, and it writes each source once.
* :func:`ray_executor`: an executor with the signature of
  :func:`ser.frontend.local_executor` that runs the same functions as Ray tasks, for
  feature extraction (:func:`ser.frontend.compute_features`), the folds of
  :func:`ser.training.cross_validate` and the candidates of
  :func:`ser.training.grid_search`. The functions, seeds and inputs are the same as on
  the local path, so the numbers are too.

Nothing here is imported by ``import ser``; Ray is imported when a job starts.

Files are read by path on the worker that scores them: every node must see the
same paths (a shared file system, or object storage mounted at the same place).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ser.errors import ConfigError, OutputError, SERError

log = logging.getLogger(__name__)

#: Output formats by file name: a ``.parquet`` folder of part files, JSON lines, CSV.
FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}
#: Files a worker scores per Ray Data row (a group, with adaptation, is one row however large), by
#: feature kind: about 1.5 s of work per chunk on one core for the encoder (98 ms a clip measured under
#: load), about 0.7 s for the spectral CNN (3 ms): small enough to balance the workers at the end of a
#: job and to show the first rows soon, large enough that Ray Data's cost per task stays small.
CHUNK_FILES = {"whisper": 16, "spectral": 256}
#: A Parquet part file is written when this many rows are waiting, or :data:`FLUSH_S` after the last one.
PART_ROWS = 4096
FLUSH_S = 10.0


# --- connecting -----------------------------------------------------------------

def check_address(address: str | None) -> str | None:
    """``address`` if it can name a Ray cluster (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``, ``local``).

    ``--ray`` takes an optional value; a folder or file name given right after it
    would otherwise be taken for an address.
    """
    if address is None or address in ("auto", "local") or ":" in address:
        return address
    raise ConfigError(f"--ray {address}: expected a cluster address (HOST:PORT, ray://HOST:PORT or auto); "
                      "to give inputs after --ray, write --ray=ADDRESS or put --ray last")


@contextlib.contextmanager
def connect(address: str | None = None, *, quiet: bool = True) -> Iterator[Any]:
    """Connect to a Ray cluster for the length of a ``with`` block; yields the ``ray`` module.

    Parameters
    ----------
    address : str, optional
        ``HOST:PORT`` of a running cluster's head, ``ray://HOST:PORT`` (Ray Client),
        ``"auto"`` (a cluster started with ``ray start`` on this machine), or ``None``
        for Ray's default: ``$RAY_ADDRESS`` when set, else a new local instance with
        every core, on the loopback interface only, stopped at the end of the block.
    quiet : bool
        Hide Ray's start-up messages and its workers' log lines.

    If Ray is already initialised in this process (a notebook, a test), that
    connection is used and left open.
    """
    address = check_address(address)
    if address is None and not os.environ.get("RAY_ADDRESS") and "ray" not in sys.modules:
        # A local instance serves this machine only: keep it on 127.0.0.1 rather than the
        # network address Ray picks for clusters (its mode for single machines).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if quiet:
        for name in ("ray", "ray.data"):  # Ray's notices (start-up, token, execution finished) hidden
            logging.getLogger(name).setLevel(logging.ERROR)
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING if quiet else logging.INFO,
                              "log_to_driver": not quiet}
    if address not in (None, "local"):
        kwargs["address"] = address
    else:
        kwargs["include_dashboard"] = False
    ray.init(**kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


# --- training's work as Ray tasks -------------------------------------------------

def _run_chunk(fn: Callable, items: list, shared: dict) -> list:
    """Worker side of :func:`ray_executor`: ``fn`` over a chunk, BLAS on one thread like ``parallel_map``."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return [fn(item, **shared) for item in items]


def ray_executor(*, chunk: int | None = None, num_cpus: float = 1) -> Callable[..., Iterator]:
    """An executor that runs ``fn(item, **shared)`` for each item as Ray tasks, results in input order.

    Parameters
    ----------
    chunk : int, optional
        Items per task. Default: about four tasks per cluster CPU, at most
        64 items each (folds and grid candidates: one per task;
        files: in chunks, whose per-task overhead is then small).
    num_cpus : float
        CPUs each task reserves.

    Returns
    -------
    callable
        ``executor(fn, items, **shared)`` → iterator of results in input order. Each
        value of ``shared`` (large arrays) is put in the object store once and given
        to every task. Needs a connection (:func:`connect`).
    """
    def execute(fn: Callable, items: Sequence, **shared) -> Iterator:
        import ray

        if not items:
            return
        size = chunk
        if size is None:
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            size = min(64, max(1, -(-len(items) // (4 * cpus))))
        remote = ray.remote(num_cpus=num_cpus, max_retries=3)(_run_chunk)
        shared_ref = ray.put(shared)
        refs = [remote.remote(fn, list(items[i:i + size]), shared_ref) for i in range(0, len(items), size)]
        finished = 0
        try:
            for ref in refs:
                yield from ray.get(ref)
                finished += 1
        finally:
            for ref in refs[finished + 1:]:  # stopped early (an error, Ctrl-C): drop the work not yet started
                ray.cancel(ref)
    return execute


# --- ser batch: listing, resuming ---------------------------------------------------

def output_format(path: str | os.PathLike) -> str:
    """``parquet``, ``jsonl`` or ``csv`` from the output's name."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {path}: expected a name ending in .parquet (a folder of part files), "
                          ".jsonl or .csv")
    return fmt


def columns(classes: Sequence[str]) -> list[str]:
    """The columns of a results table: source, label, confidence, duration, one per class, error."""
    return ["source", "label", "confidence", "duration", *classes, "error"]


def finished_sources(path: str | os.PathLike, classes: Sequence[str], *, model: str | None = None) -> set[str]:
    """Sources already in an output of an earlier run (resume); a last JSON/CSV line cut short is removed.

    Raises
    ------
    OutputError
        The output is not a ``ser batch`` result for these classes (or, for Parquet, this model).
    """
    path = Path(path)
    fmt = output_format(path)
    if fmt == "parquet":
        return _parquet_sources(path, classes, model)
    if not path.exists():
        return set()
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; a {fmt} output is a file")
    data = path.read_bytes()
    keep = data[:data.rfind(b"\n") + 1]  # complete lines only: a kill can leave half a line
    lines = keep.decode("utf-8", errors="replace").splitlines()
    done: set[str] = set()
    if fmt == "jsonl":
        for n, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
                done.add(str(row["source"]))
            except (ValueError, KeyError, TypeError):
                raise OutputError(f"{path}: line {n} is not a ser batch result; cannot resume from it") from None
            if row.get("scores") is not None and list(row["scores"]) != list(classes):
                raise OutputError(f"{path}: written for the classes {list(row['scores'])}, not this model's")
    else:
        import csv

        rows = list(csv.reader(lines))
        if rows and rows[0] != columns(classes):
            raise OutputError(f"{path}: its header {rows[0][:6]}... is not this model's ser batch CSV; "
                              "cannot resume from it")
        done = {row[0] for row in rows[1:] if row}
    if len(keep) < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(len(keep))
    return done


def _parquet_sources(folder: Path, classes: Sequence[str], model: str | None) -> set[str]:
    import pyarrow.parquet as pq

    if not folder.exists():
        return set()
    if not folder.is_dir():
        raise OutputError(f"{folder}: is a file; a .parquet output is a folder of part files")
    done: set[str] = set()
    for part in sorted(folder.glob("part-*.parquet")):
        try:
            table = pq.read_table(part)
        except Exception as exc:  # noqa: BLE001 - parts are renamed into place whole; anything else is foreign
            raise OutputError(f"{part}: unreadable ({exc}); cannot resume from it") from None
        meta = json.loads((table.schema.metadata or {}).get(b"ser", b"{}"))
        if table.column_names != columns(classes):
            raise OutputError(f"{part}: its columns are not this model's; cannot resume from it")
        if model is not None and meta.get("model") not in (None, model):
            raise OutputError(f"{folder}: written with model {meta.get('model')}, not {model}; "
                              "use another --out or --force")
        done.update(table.column("source").to_pylist())
    return done


def plan(sources: Sequence[str], paths: Sequence[str], *, groups: Sequence[str] | None = None,
         done: set[str] = frozenset(), chunk: int = 64) -> list[dict]:
    """The Ray Data rows of a job: chunks of files not yet done, or (adapting) whole groups with any file not done.

    Each source is scored once (a repeated source keeps its first path). A group is
    scored whole even when only some of its files are missing (its statistics come
    from all of its files, as in the interrupted run); only the missing rows are written.
    """
    seen: set[str] = set()
    order: list[int] = []
    for i, s in enumerate(sources):
        if s not in seen:
            seen.add(s)
            order.append(i)
    if groups is None:
        todo = [i for i in order if sources[i] not in done]
        return [{"sources": [sources[i] for i in todo[k:k + chunk]], "paths": [paths[i] for i in todo[k:k + chunk]],
                 "group": ""} for k in range(0, len(todo), chunk)]
    members: dict[str, list[int]] = {}
    for i in order:
        members.setdefault(str(groups[i]), []).append(i)
    return [{"sources": [sources[i] for i in idx], "paths": [paths[i] for i in idx], "group": g}
            for g, idx in members.items() if any(sources[i] not in done for i in idx)]


# --- ser batch: the actor -----------------------------------------------------------

class Scorer:
    """A Ray Data actor: one loaded :class:`~ser.inference.Recognizer`, scoring chunks of files.

    ``__call__`` takes a batch of plan rows (``sources``, ``paths``, ``group``) and
    returns one result row per file, in the columns of :func:`columns`. A file that
    fails is a row with its error; so is any unexpected exception (named with its
    type), so one odd file never fails a job.
    """

    def __init__(self, model: str, runtime: str = "auto", batch_size: int = 32) -> None:
        from ser.inference import Recognizer

        self.recognizer = Recognizer.load(model, runtime=runtime)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        rows: list[dict] = []
        for sources, paths, group in zip(batch["sources"], batch["paths"], batch["group"]):
            rows.extend(self.score(list(sources), list(paths), str(group) or None))
        classes = self.recognizer.classes
        return {c: [r[c] for r in rows] for c in columns(classes)}

    def score(self, sources: list[str], paths: list[str], group: str | None) -> list[dict]:
        """Result rows for one chunk (or one whole group, with ``group``)."""
        rec = self.recognizer
        groups = [group] * len(paths) if group is not None else None
        try:
            results = rec.predict_files(paths, batch_size=self.batch_size, errors="return", jobs=1, groups=groups)
        except SERError:
            raise  # the model cannot adapt (no adapted head): a job-level error, not a file's
        except Exception:  # an unforeseen failure: find the file, keep the others
            log.exception("chunk failed; scoring its files one by one")
            results = [self._one(p, group) for p in paths]
        return [row(s, r, rec.classes) for s, r in zip(sources, results)]

    def _one(self, path: str, group: str | None):
        try:
            if group is not None:  # a group's statistics need the whole group; this file alone is its group
                return self.recognizer.predict_files([path], errors="return", jobs=1, groups=[group])[0]
            return self.recognizer.predict_file(path)
        except SERError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001
            return SERError(f"{path}: {type(exc).__name__}: {exc}")


def row(source: str, result, classes: Sequence[str]) -> dict:
    """One output row: a prediction's values (rounded as ``ser predict --json``), or the error."""
    if isinstance(result, BaseException):
        return {"source": source, "label": None, "confidence": None, "duration": None,
                **{c: None for c in classes}, "error": str(result)}
    d = result.to_dict()
    return {"source": source, "label": d["label"], "confidence": d["confidence"], "duration": d["duration"],
            **{c: d["scores"][c] for c in classes}, "error": None}


# --- ser batch: writers -----------------------------------------------------------

class _Writer:
    """Writes result rows in this process only; each source at most once."""

    def __init__(self, path: Path, classes: Sequence[str], done: set[str], model: str) -> None:
        self.path, self.classes, self.done, self.model = path, list(classes), set(done), model
        self.written = 0
        self.failed = 0
        self.first: tuple[float, int] | None = None  # (time.perf_counter(), rows) of the first rows written

    def add(self, rows: Iterable[dict]) -> int:
        fresh = []
        for r in rows:
            if r["source"] in self.done:
                continue  # already in the output (a resumed group's other files, or a repeated delivery)
            self.done.add(r["source"])
            fresh.append(r)
        self.failed += sum(r["error"] is not None for r in fresh)
        self.written += len(fresh)
        if fresh and self.first is None:
            self.first = (time.perf_counter(), len(fresh))
        if fresh:
            self._write(fresh)
        return len(fresh)

    def _write(self, rows: list[dict]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _LineWriter(_Writer):
    """JSON lines or CSV: one line per row, flushed per batch (a kill loses at most a line cut short)."""

    def __init__(self, path, classes, done, model, fmt: str) -> None:
        super().__init__(path, classes, done, model)
        self.fmt = fmt
        new = not path.exists() or path.stat().st_size == 0
        try:
            self.stream = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - open until close()
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
        if new and fmt == "csv":
            self._lines([",".join(columns(classes))])

    def _write(self, rows: list[dict]) -> None:
        if self.fmt == "jsonl":
            lines = []
            for r in rows:
                scores = None if r["error"] else {c: r[c] for c in self.classes}
                lines.append(json.dumps({"source": r["source"], "label": r["label"], "confidence": r["confidence"],
                                         "duration": r["duration"], "scores": scores, "error": r["error"]}))
        else:
            import csv
            import io

            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            for r in rows:
                writer.writerow(["" if r[c] is None else r[c] for c in columns(self.classes)])
            lines = buf.getvalue().splitlines()
        self._lines(lines)

    def _lines(self, lines: list[str]) -> None:
        try:
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write results ({exc.strerror or exc})") from None

    def close(self) -> None:
        self.stream.close()


class _ParquetWriter(_Writer):
    """A folder of ``part-NNNNN.parquet`` files, each renamed into place whole (never a partial part)."""

    def __init__(self, path, classes, done, model) -> None:
        super().__init__(path, classes, done, model)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create the output folder ({exc.strerror or exc})") from None
        for stale in path.glob(".part-*.tmp"):  # a part a killed run was writing: its rows are redone
            stale.unlink(missing_ok=True)
        parts = [int(p.stem.split("-")[1]) for p in path.glob("part-*.parquet") if p.stem.split("-")[1].isdigit()]
        self.next_part = max(parts, default=-1) + 1
        self.pending: list[dict] = []
        self.last_flush = time.monotonic()

    def _write(self, rows: list[dict]) -> None:
        self.pending.extend(rows)
        if len(self.pending) >= PART_ROWS or time.monotonic() - self.last_flush >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.last_flush = time.monotonic()
        if not self.pending:
            return
        fields = [pa.field("source", pa.string()), pa.field("label", pa.string()),
                  pa.field("confidence", pa.float64()), pa.field("duration", pa.float64()),
                  *(pa.field(c, pa.float64()) for c in self.classes), pa.field("error", pa.string())]
        meta = {"ser": json.dumps({"model": self.model, "classes": self.classes})}
        schema = pa.schema(fields, metadata=meta)
        table = pa.Table.from_pylist(self.pending, schema=schema)
        name = f"part-{self.next_part:05d}.parquet"
        tmp = self.path / f".{name}.tmp"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, self.path / name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"{self.path / name}: cannot write results ({exc.strerror or exc})") from None
        self.next_part += 1
        self.pending.clear()

    def close(self) -> None:
        self.flush()


def open_writer(path: str | os.PathLike, classes: Sequence[str], done: set[str], model: str) -> _Writer:
    """The writer for ``path``'s format, appending after the rows in ``done``."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "parquet":
        return _ParquetWriter(path, classes, done, model)
    return _LineWriter(path, classes, done, model, fmt)


def remove_output(path: str | os.PathLike) -> None:
    """Delete an earlier output (``--force``): a results file, or a Parquet folder's part files and the folder."""
    path = Path(path)
    if path.is_dir():
        for part in list(path.glob("part-*.parquet")) + list(path.glob(".part-*.tmp")):
            part.unlink()
        if any(path.iterdir()):
            raise OutputError(f"{path}: holds other files than ser batch parts; not removed")
        path.rmdir()
    elif path.exists():
        path.unlink()


# --- ser batch: the job --------------------------------------------------------------

def score_archive(sources: Sequence[str], out: str | os.PathLike, *, paths: Sequence[str] | None = None,
                  model: str = "default", runtime: str = "auto", groups: Sequence[str] | None = None,
                  workers: int | None = None, cpus_per_worker: float = 1, gpus_per_worker: float = 0,
                  chunk: int | None = None, batch_size: int = 32, address: str | None = None,
                  resume: bool = True, progress: bool = False) -> dict:
    """Score many files on a Ray cluster and write one row per file to ``out``.

    Parameters
    ----------
    sources : sequence of str
        The files, as they are named in the output (``source`` column).
    out : path-like
        ``NAME.parquet`` (a folder of part files), ``NAME.jsonl`` or ``NAME.csv``.
    paths : sequence of str, optional
        Where each source is read from on the workers (default: ``sources`` made
        absolute here). Every node must see these paths.
    model : str
        A bundled model's name or a model folder every node can read.
    runtime : {"auto", "onnx", "keras"}
        As for :meth:`ser.inference.Recognizer.load`.
    groups : sequence of str, optional
        Unlabelled adaptation: the speaker (or folder) of each file; each group is
        scored whole by one worker, standardised by its own statistics.
    workers : int, optional
        Actors, each holding one model (default: the cluster's CPUs ÷ ``cpus_per_worker``).
    cpus_per_worker, gpus_per_worker : float
        Resources each actor reserves.
    chunk : int, optional
        Files per task without adaptation (default: :data:`CHUNK_FILES` for the model's features).
    batch_size : int
        Clips per model call inside a worker.
    address : str, optional
        The cluster (see :func:`connect`).
    resume : bool
        Skip the sources already in ``out`` (otherwise ``out`` must not exist yet).
    progress : bool
        Show a progress bar (files written).

    Returns
    -------
    dict
        ``{"out", "total", "skipped", "written", "failed", "workers", "wall_s"}``, and when more than
        one batch of rows came back, ``first_rows_s`` (start-up: until the first rows were written)
        and ``steady_files_per_s`` (the rate after them).
    """
    from ser.modelfolder import bundled_models, read_model_folder, resolve_model

    start = time.perf_counter()
    if isinstance(sources, (str, bytes, os.PathLike)):
        raise TypeError("sources: expected a sequence of file names")
    sources = [str(s) for s in sources]
    paths = [str(p) for p in paths] if paths is not None else [os.path.abspath(s) for s in sources]
    if len(paths) != len(sources):
        raise ValueError(f"paths: {len(paths)} given for {len(sources)} sources")
    if groups is not None and len(groups) != len(sources):
        raise ValueError(f"groups: {len(groups)} given for {len(sources)} sources")
    for name, value in (("chunk", chunk), ("batch_size", batch_size), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}={value!r}: expected a positive integer")
    folder = resolve_model(model)
    # A bundled model goes to the workers by name (each node finds it in its own install), a folder by path.
    model_name = model if model in bundled_models() and not Path(model).exists() else str(folder.resolve())
    parts = read_model_folder(folder, runtime=runtime)  # checked here, before a cluster is asked for anything
    classes = parts["config"].classes
    if chunk is None:
        chunk = CHUNK_FILES["whisper" if parts["config"].features.kind == "whisper" else "spectral"]
    if groups is not None and parts.get("speaker_norm") is None:
        raise ConfigError(f"{folder}: has no speaker-adapted head; adaptation needs one")
    out = Path(out)
    output_format(out)
    if not resume and (out.exists() and (out.is_file() or any(out.iterdir()))):
        raise OutputError(f"{out}: already exists; resume it or remove it first")
    done = finished_sources(out, classes, model=model_name)
    rows = plan(sources, paths, groups=groups, done=done, chunk=chunk)
    unique = len(set(sources))
    todo = sum(sum(s not in done for s in r["sources"]) for r in rows)
    summary = {"out": str(out), "total": unique, "skipped": unique - todo, "written": 0, "failed": 0,
               "workers": 0, "wall_s": 0.0}
    writer = open_writer(out, classes, done, model_name)
    try:
        if rows:
            with connect(address) as ray:
                n = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_per_worker, 1e-9)))
                n = min(n, len(rows))
                summary["workers"] = n
                _run(ray, rows, writer, model=model_name, runtime=runtime, batch_size=batch_size, workers=n,
                     cpus=cpus_per_worker, gpus=gpus_per_worker, total=todo, progress=progress)
    finally:
        writer.close()
    end = time.perf_counter()
    summary.update(written=writer.written, failed=writer.failed, wall_s=round(end - start, 3))
    if writer.first is not None and writer.written > writer.first[1]:
        # Start-up (connection, actors, model loading) ends with the first rows; the rest is the steady rate.
        summary["first_rows_s"] = round(writer.first[0] - start, 3)
        summary["steady_files_per_s"] = round((writer.written - writer.first[1]) / max(end - writer.first[0], 1e-9),
                                              2)
    return summary


def _run(ray, rows: list[dict], writer: _Writer, *, model: str, runtime: str, batch_size: int, workers: int,
         cpus: float, gpus: float, total: int, progress: bool) -> None:
    import ray.data

    if not log.isEnabledFor(logging.DEBUG):  # ser -v shows Ray Data's notices; otherwise ours only
        for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
            logging.getLogger(name).setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # one bar, ours, counting files written
    ctx.print_on_execution_start = False

    class BoundScorer(Scorer):
        # The settings travel with the class, not as constructor arguments in the object store
        # (which a restarted actor could find gone).
        def __init__(self) -> None:
            super().__init__(model, runtime, batch_size)

    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds = ds.map_batches(BoundScorer, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus,
                        num_gpus=gpus or None, batch_format="numpy")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="batch", unit="file")
    try:
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            n = writer.add(table.to_pylist())  # Arrow → Python in C: the driver's cost per row stays small
            if bar is not None:
                bar.update(n)
    finally:
        if bar is not None:
            bar.close()
