"""Say each warning once, in one line: TensorFlow's start-up chatter and repeated per-file warnings.

Two sources made a plain run noisy: TensorFlow writes absl/oneDNN/CPU-feature lines straight to file
descriptor 2 when it is imported (``TF_CPP_MIN_LOG_LEVEL`` no longer hides them), and a batch over
many files repeated one warning per file (RAVDESS clips start with about a second of silence, so a
1 s recipe said "the first 1.0 s are silent" 44 times). :func:`import_keras` imports TensorFlow with
fd 2 pointed at ``/dev/null``; :func:`warnings_once` turns repeats of one warning into one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)


#: The loggers that warn about one file while many are featurised (silent starts, resampling...).
FEATURE_LOGGERS = ("ser.audio", "ser.cache", "ser.frontend")


def _verbose() -> bool:
    """Debug logging for ``ser`` (``ser -v``) shows what TensorFlow says."""
    return logging.getLogger("ser").isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at ``/dev/null`` for the block (C/C++ libraries write there directly).

    Python's own ``sys.stderr`` is flushed first, so nothing said before the block is lost. Without a
    real file descriptor 2 (some embedding hosts), the block runs unchanged.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_keras():
    """Import and return Keras; the first import of TensorFlow is made without its C++ start-up lines.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless already set. Debug logging for ``ser`` (``ser -v``)
    leaves TensorFlow as it is, as does TensorFlow imported before.
    """
    if "tensorflow" not in sys.modules and not _verbose():
        # Its later C++ lines (e.g. "Memory patch applied" when a PyDataset starts) obey this variable;
        # a value the user set wins.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with stderr_silenced():
            import tensorflow  # noqa: F401
    import keras

    return keras


class _Once(logging.Filter):
    """Holds back every warning of a logger; :meth:`said` gives the first of each kind and a count."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.first: dict[tuple, logging.LogRecord] = {}
        self.count: dict[tuple, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = (record.name, record.msg)  # the same template: the same warning about another file
        with self.lock:
            self.first.setdefault(key, record)
            self.count[key] = self.count.get(key, 0) + 1
        return False

    def said(self) -> Iterator[logging.LogRecord]:
        for key, record in self.first.items():
            more = self.count[key] - 1
            if more:
                record.msg = f"{record.msg} (and {more} more like it)"
            yield record


@contextlib.contextmanager
def warnings_once(*names: str) -> Iterator[None]:
    """Within the block, the warnings of loggers ``names`` are each said once, in one line, at its end.

    Warnings with the same message template (e.g. ``"%s: the first %.1f s are silent"`` about 44
    files) become one line: the first of them, with "(and 43 more like it)". Other levels pass.
    Safe with worker threads (the filter is shared and locked).
    """
    loggers = [logging.getLogger(n) for n in names]
    once = _Once()
    for logger in loggers:
        logger.addFilter(once)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(once)
        for record in once.said():
            logging.getLogger(record.name).handle(record)
