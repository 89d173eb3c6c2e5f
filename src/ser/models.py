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
        ``(n_features, n_frames)`` of one example (``(n_layers, dims)`` for encoder
        features). Models take it with a trailing channel axis of 1, which the
        MLP drops again, so every model is called the same way.
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
        # Statistics from the training side only: per feature row for images,
        # per (layer, dimension) for encoder features.
        axis = 1 if m.architecture == "cnn2d" else (1, 2)
        norm = layers.Normalization(axis=axis, name="train_normalization")
        norm.adapt(x_train[..., None])
        x = norm(x)
    if m.architecture == "mlp":
        return _compile(_mlp_head(x, input_shape, config), inputs, config)
    for i, filters in enumerate(m.filters):
        x = layers.Conv2D(filters, m.kernel_size, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = layers.Dropout(m.conv_dropout, name=f"drop{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(m.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(m.dense_dropout, name="dense_drop")(x)
    return _compile(x, inputs, config)


def ensemble_model(members: list):
    """One model averaging the probabilities of ``members`` (built-in ``Average``, saved as one file)."""
    import keras

    inputs = keras.Input(shape=members[0].input_shape[1:], name="features")
    outputs = keras.layers.Average(name="ensemble_mean")([m(inputs) for m in members])
    return keras.Model(inputs, outputs, name="ser_ensemble")


def _mlp_head(x, input_shape: tuple[int, int], config: Config):
    """Learned weighted sum over the layer axis, then one hidden dense layer."""
    import keras
    from keras import layers

    m = config.model
    n_layers, dim = input_shape
    x = layers.Reshape((n_layers, dim), name="drop_channel")(x)
    if m.layers == "last":
        x = layers.Cropping1D((n_layers - 1, 0), name="last_layer")(x)
    else:
        # Dense(1) over the layer axis = one learned weight per encoder layer (SUPERB-style).
        x = layers.Permute((2, 1), name="layers_last")(x)
        x = layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(1.0 / n_layers),
                         name="layer_weights")(x)
    x = layers.Reshape((dim,), name="pooled")(x)
    x = layers.Dropout(m.input_dropout, name="input_drop")(x)
    x = layers.Dense(m.dense_units, activation="relu", name="dense")(x)
    return layers.Dropout(m.dense_dropout, name="dense_drop")(x)


def _compile(x, inputs, config: Config):
    import keras
    from keras import layers

    outputs = layers.Dense(len(config.classes), activation="softmax", name="emotion")(x)
    model = keras.Model(inputs, outputs, name=f"ser_{config.model.architecture}")
    compile_for(model, config, masked=False)
    return model


def masked_crossentropy(y_true, y_pred):
    """Cross-entropy of the softmax renormalised over each clip's allowed labels.

    ``y_true`` packs, for ``C`` classes, the target distribution ``[:, :C]`` (zero outside
    the allowed labels) and the 0/1 mask of the labels the clip's corpus has ``[:, C:]``.
    The loss is ``-sum(t * log(p / sum(p * mask)))``: a clip of a corpus without
    ``calm`` neither rewards nor punishes the ``calm`` output, so corpora that do not
    share a label set train one head without teaching it that absent labels are wrong.
    """
    from keras import ops

    n = ops.shape(y_pred)[-1]
    target, mask = y_true[:, :n], y_true[:, n:]
    allowed = ops.sum(y_pred * mask, axis=-1, keepdims=True)
    log_p = ops.log(ops.clip(y_pred, 1e-7, 1.0)) - ops.log(ops.clip(allowed, 1e-7, 1.0))
    return -ops.sum(target * log_p, axis=-1)


def masked_accuracy(y_true, y_pred):
    """Accuracy of the argmax over each clip's allowed labels (``y_true`` packed as for the loss)."""
    from keras import ops

    n = ops.shape(y_pred)[-1]
    target, mask = y_true[:, :n], y_true[:, n:]
    hit = ops.argmax(y_pred * mask - (1.0 - mask), axis=-1) == ops.argmax(target, axis=-1)
    return ops.cast(hit, "float32")


def compile_for(model, config: Config, *, masked: bool) -> None:
    """(Re)compile ``model``: plain cross-entropy, or the masked one for mixed label sets.

    Targets of the masked loss carry the label smoothing already (spread over the allowed
    labels only), so the loss adds none. After a masked fit the model is compiled plain
    again, so that a saved model refers to built-in Keras objects only.
    """
    import keras

    optimizer = keras.optimizers.Adam(learning_rate=config.train.learning_rate)
    if masked:
        model.compile(optimizer=optimizer, loss=masked_crossentropy, metrics=[masked_accuracy])
    else:
        model.compile(optimizer=optimizer,
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.train.label_smoothing),
                      metrics=["accuracy"])
