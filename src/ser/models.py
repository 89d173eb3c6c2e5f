"""Keras model factories built from :class:`ser.config.ModelConfig`.

Only built-in Keras layers are used, so a saved ``.keras`` file reloads in safe
mode without custom code.
"""

from __future__ import annotations

import numpy as np

from ser.config import Config


def build_model(config: Config, *, input_shape: tuple[int, int], x_train: np.ndarray | None = None):
    """Build and compile the classifier described by ``config``.

    Parameters
    ----------
    config : Config
        ``config.model`` gives the architecture, ``config.train`` the optimiser and loss.
    input_shape : tuple of int
        ``(n_features, n_frames)`` of one example.
    x_train : numpy.ndarray, optional
        Training examples, shape ``(n, n_features, n_frames)``; required when
        ``model.input_normalization`` is on (its statistics come from them only).

    Returns
    -------
    keras.Model
        Compiled; outputs softmax probabilities over ``config.classes``.
    """
    import keras
    from keras import layers

    m = config.model
    inputs = keras.Input(shape=(*input_shape, 1), name="features")
    x = inputs
    if m.input_normalization:
        if x_train is None:
            raise ValueError("x_train is required when model.input_normalization is true")
        # One mean/std per feature row (axis 1), from the training side only.
        norm = layers.Normalization(axis=1, name="train_normalization")
        norm.adapt(x_train[..., None])
        x = norm(x)
    for i, filters in enumerate(m.filters):
        x = layers.Conv2D(filters, m.kernel_size, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = layers.Dropout(m.conv_dropout, name=f"drop{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(m.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(m.dense_dropout, name="dense_drop")(x)
    outputs = layers.Dense(len(config.classes), activation="softmax", name="emotion")(x)
    model = keras.Model(inputs, outputs, name=f"ser_{m.architecture}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.train.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.train.label_smoothing),
        metrics=["accuracy"],
    )
    return model
