"""Speech emotion recognition: neutral, calm, happy, sad, angry, fearful, disgust, surprised.

>>> from ser import Recognizer
>>> Recognizer.load().predict_file("clip.wav").label  # doctest: +SKIP
'happy'
"""

from __future__ import annotations

__version__ = "0.1.0"

from ser.config import AudioConfig, AugmentConfig, Config, FeatureConfig, ModelConfig, TrainConfig, preset
from ser.errors import AudioError, ConfigError, DownloadError, ManifestError, ModelError, OutputError, SERError
from ser.labels import EMOTIONS

__all__ = [
    "EMOTIONS", "AudioConfig", "AudioError", "AugmentConfig", "Config", "ConfigError", "DownloadError",
    "FeatureConfig", "ManifestError", "ModelConfig", "ModelError", "OutputError", "Prediction", "Recognizer",
    "SERError", "TrainConfig", "__version__", "preset",
]


def __getattr__(name: str):
    # Recognizer and Prediction live with the inference code; import it only when asked.
    if name in ("Recognizer", "Prediction"):
        from ser import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'ser' has no attribute {name!r}")
