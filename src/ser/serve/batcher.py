"""Micro-batching: concurrent requests share one loaded model and its batched predictions.

Each request's uploaded files become one :class:`Job` on a bounded queue. A worker thread takes
whatever is waiting (up to ``max_batch`` clips), groups the jobs that can share a model call
(plain, the same enrolled speaker, or unlabelled adaptation, where each job is its own group),
runs :meth:`ser.inference.Recognizer.predict_files` once per group and hands every job its own
results. While it works, new requests queue up and form the next batch, so the batch size follows
the load by itself, with no waiting window added to a lone request's latency.

When ``max_queue`` jobs are already waiting, :meth:`MicroBatcher.submit` raises :class:`Busy` at
once, with an estimate of when to retry: memory stays bounded and a client learns to back off
(HTTP 503 with ``Retry-After``).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class Busy(Exception):
    """The queue is full; ``retry_after`` is a whole number of seconds to wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Job:
    """One request's clips and how to read them."""

    paths: list[Path]
    speaker: str | None = None
    adapt: bool = False
    future: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple:
        return ("adapt",) if self.adapt else ("speaker", self.speaker) if self.speaker else ("plain",)


_STOP = object()


class MicroBatcher:
    """A worker thread running batched predictions of one model for many requests.

    Parameters
    ----------
    recognizer : ser.inference.Recognizer
        Shared, never modified.
    max_queue : int
        Jobs that may wait; one more is refused with :class:`Busy`.
    max_batch : int
        Clips per model call (the batch grows up to this while requests are waiting).
    speakers_dir : path-like, optional
        Where enrolled speaker profiles live.
    workers : int
        Worker threads (each runs whole batches).
    """

    def __init__(self, recognizer, *, max_queue: int = 64, max_batch: int = 32,
                 speakers_dir: str | os.PathLike | None = None, workers: int = 1, name: str = "model") -> None:
        if max_queue < 1 or max_batch < 1 or workers < 1:
            raise ValueError("max_queue, max_batch and workers must be positive")
        self.recognizer = recognizer
        self.max_queue, self.max_batch, self.name = max_queue, max_batch, name
        self.speakers_dir = speakers_dir
        self._queue: queue.Queue = queue.Queue()
        self._waiting = 0  # jobs submitted and not yet taken by a worker
        self._lock = threading.Lock()
        self._closed = False
        self._per_clip_s = 0.05  # running estimate of one clip's cost, for Retry-After
        self.batches = 0  # model calls made (tests and the benchmark read them)
        self.clips = 0
        self._threads = [threading.Thread(target=self._work, name=f"ser-batch-{name}-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    # --- submitting ---------------------------------------------------------
    def submit(self, paths: Sequence[Path], *, speaker: str | None = None, adapt: bool = False) -> Future:
        """Queue one request's clips; the future's result is a list of Prediction or SERError, one per path.

        Raises
        ------
        Busy
            ``max_queue`` jobs are already waiting, or the batcher is shutting down.
        """
        job = Job(list(paths), speaker=speaker, adapt=adapt)
        with self._lock:
            if self._closed:
                raise Busy("the service is shutting down", 5)
            if self._waiting >= self.max_queue:
                raise Busy(f"{self._waiting} requests are waiting for model {self.name!r}", self.retry_after())
            self._waiting += 1
        self._queue.put(job)
        return job.future

    def retry_after(self) -> int:
        """Seconds until the waiting work is likely done (at least 1)."""
        return max(1, math.ceil(self._waiting * self._per_clip_s * 4))

    @property
    def waiting(self) -> int:
        return self._waiting

    # --- working ------------------------------------------------------------
    def _take(self) -> list[Job] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch, clips = [first], len(first.paths)
        while clips < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                self._queue.put(_STOP)  # finish this batch first, then stop
                break
            batch.append(job)
            clips += len(job.paths)
        with self._lock:
            self._waiting -= len(batch)
        return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            groups: dict[tuple, list[Job]] = {}
            for job in batch:
                groups.setdefault(job.key, []).append(job)
            for key, jobs in groups.items():
                self._run(key, jobs)

    def _run(self, key: tuple, jobs: list[Job]) -> None:
        paths = [p for job in jobs for p in job.paths]
        start = time.perf_counter()
        try:
            options: dict = {}
            if key[0] == "adapt":
                # Unlabelled adaptation over each request's own batch: one group per job.
                options["groups"] = [str(k) for k, job in enumerate(jobs) for _ in job.paths]
            elif key[0] == "speaker":
                options["speaker"] = self.recognizer.profile(key[1], folder=self.speakers_dir)
            results = self.recognizer.predict_files(paths, batch_size=self.max_batch, errors="return", jobs=1,
                                                    **options)
        except BaseException as exc:
            for job in jobs:
                _settle(job.future, exc=exc)
            if not isinstance(exc, Exception):
                raise
            return
        elapsed = time.perf_counter() - start
        self.batches += 1
        self.clips += len(paths)
        self._per_clip_s = 0.8 * self._per_clip_s + 0.2 * elapsed / max(1, len(paths))
        at = 0
        for job in jobs:
            _settle(job.future, result=results[at:at + len(job.paths)])
            at += len(job.paths)

    def close(self, timeout: float | None = 60.0) -> None:
        """Refuse new jobs, finish the queued ones, stop the workers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout)


def _settle(future: Future, *, result=None, exc: BaseException | None = None) -> None:
    if future.set_running_or_notify_cancel():
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


class SlowLane:
    """A few worker threads for long jobs (timelines, enrolment) with a bounded waiting line.

    :meth:`submit` raises :class:`Busy` when ``max_waiting`` jobs are already waiting or running
    beyond the workers.
    """

    def __init__(self, *, workers: int = 1, max_waiting: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ser-slow")
        self._limit = workers + max_waiting
        self._count = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable, *args, **kwargs) -> Future:
        with self._lock:
            if self._closed:
                raise Busy("the service is shutting down", 5)
            if self._count >= self._limit:
                raise Busy(f"{self._count} long jobs are running or waiting", 10)
            self._count += 1
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future) -> None:
        with self._lock:
            self._count -= 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True)
