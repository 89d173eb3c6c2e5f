"""Errors raised by ``ser``.

Every error derives from :class:`SERError`, so callers can catch the package's
errors in one place, and also from the matching built-in exception, so generic
``except ValueError`` / ``except OSError`` code keeps working.
"""

from __future__ import annotations


class SERError(Exception):
    """Root of every error raised on purpose by ``ser``."""


class ConfigError(SERError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class AudioError(SERError, ValueError):
    """An audio file or array cannot be used (unreadable, empty, silent, too short...)."""


class ManifestError(SERError, ValueError):
    """A manifest (CSV of clips and labels) is malformed or points at missing files."""


class ModelError(SERError, ValueError):
    """A model folder is missing, incomplete, tampered with or incompatible."""


class DownloadError(SERError, OSError):
    """A download failed (network, HTTP status, size or checksum)."""


class OutputError(SERError, OSError):
    """A result cannot be written (a full disk, a read-only folder, a closed pipe...)."""


class MissingExtraError(SERError, ImportError):
    """An optional dependency is needed and not installed; the message names the extra to install."""
