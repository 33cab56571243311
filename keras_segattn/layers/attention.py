"""Soft visual attention of "Show, Attend and Tell" (Xu et al., ICML 2015)."""

import keras
from keras import ops

from keras_segattn.core.validation import check_int


def _large_negative(dtype):
    # Added to the logits of padded locations. -1e9 overflows float16 to
    # -inf, and 0 * -inf is NaN at the valid locations, so float16 gets a
    # finite value that still underflows exp() to exactly 0.
    return -3e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


@keras.saving.register_keras_serializable(package="keras_segattn")
class BahdanauVisualAttention(keras.layers.Layer):
    """Additive (Bahdanau) soft attention over image annotation vectors.

    The deterministic soft attention of Xu et al., "Show, Attend and Tell:
    Neural Image Caption Generation with Visual Attention" (ICML 2015),
    Section 4.2. Given the `L` annotation vectors `a_i` of a CNN feature
    map and the decoder's previous hidden state `h`, it scores every
    location with a one-hidden-layer MLP,
    `e_i = v^T tanh(W_a a_i + W_h h + b)`, normalises the scores with a
    softmax over the locations, `alpha = softmax(e)`, and returns the
    expected annotation `z = sum_i alpha_i a_i`. With `gating=True`, `z` is
    scaled by the paper's gating scalar `beta = sigmoid(w_beta^T h +
    b_beta)` (Section 4.2.1), which lets the decoder weigh the image less
    when it emits words such as "of" or "the".

    `W_a a_i` does not depend on the decoding step, so a decoder can
    compute it once per image with `project_annotations` and call `attend`
    at every step; calling the layer does both. The number of locations
    `L` may be dynamic; the annotation size `D` and the hidden size `H`
    must be known when the layer is built. Runs in TFLite with builtin ops
    only (matmuls, tanh, softmax, sigmoid, mul, sum).

    Args:
        units: int. Size of the attention MLP's hidden layer (the rows of
            `W_a` and `W_h`). At least 1.
        gating: bool. Whether to scale the context by the gating scalar
            `beta`. Defaults to `False`.

    Call arguments:
        annotations: float tensor `(batch, L, D)`. The annotation vectors,
            e.g. a `(batch, 14, 14, 512)` feature map reshaped to
            `(batch, 196, 512)`.
        hidden: float tensor `(batch, H)`. The decoder's previous hidden
            state `h_{t-1}`.
        mask: optional bool or 0/1 tensor `(batch, L)`. True (1) at valid
            locations; padded locations get a weight of exactly 0. A row
            with no valid location gets all-zero weights and a zero
            context. Defaults to `None` (every location is valid).

    Returns:
        A tuple `(context, weights)`: the `(batch, D)` context vector `z`
        (times `beta` with `gating=True`) and the `(batch, L)` attention
        weights `alpha`, which sum to 1 over the valid locations.

    Raises:
        ValueError: if `units` is not a positive int, if `annotations` is
            not 3-D or `hidden` not 2-D, if their batch sizes differ, or if
            `mask` is not `(batch, L)`.

    Examples:
        >>> annotations = keras.Input((196, 512))
        >>> hidden = keras.Input((256,))
        >>> context, weights = BahdanauVisualAttention(128, gating=True)(
        ...     annotations, hidden
        ... )
        >>> context.shape, weights.shape
        ((None, 512), (None, 196))
    """

    def __init__(self, units, gating=False, **kwargs):
        super().__init__(**kwargs)
        self.units = check_int(units, "units")
        self.gating = bool(gating)

    def build(self, annotations_shape, hidden_shape):
        annotations_shape = tuple(annotations_shape)
        hidden_shape = tuple(hidden_shape)
        if len(annotations_shape) != 3 or annotations_shape[-1] is None:
            raise ValueError(
                "annotations must be 3-D (batch, locations, features) with a known feature "
                f"size; got annotations with shape {annotations_shape}."
            )
        if len(hidden_shape) != 2 or hidden_shape[-1] is None:
            raise ValueError(
                "hidden must be 2-D (batch, hidden_size) with a known hidden size; got "
                f"hidden with shape {hidden_shape}."
            )
        _check_batch(annotations_shape, hidden_shape, "hidden")
        features, hidden_size = int(annotations_shape[-1]), int(hidden_shape[-1])
        self.annotation_kernel = self.add_weight(
            shape=(features, self.units), initializer="glorot_uniform", name="annotation_kernel"
        )
        self.hidden_kernel = self.add_weight(
            shape=(hidden_size, self.units), initializer="glorot_uniform", name="hidden_kernel"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        # No bias after v: a constant added to every logit leaves the softmax
        # unchanged and would never receive a gradient.
        self.score_kernel = self.add_weight(
            shape=(self.units, 1), initializer="glorot_uniform", name="score_kernel"
        )
        if self.gating:
            self.gate_kernel = self.add_weight(
                shape=(hidden_size, 1), initializer="glorot_uniform", name="gate_kernel"
            )
            self.gate_bias = self.add_weight(shape=(1,), initializer="zeros", name="gate_bias")
        self._features = features
        self._hidden_size = hidden_size

    def _check_built(self, method):
        if not self.built:
            raise ValueError(
                f"{self.__class__.__name__}.{method}() needs the layer's weights: call the "
                "layer on (annotations, hidden) once, or build(annotations_shape, "
                "hidden_shape), first."
            )

    def _weight(self, variable):
        # Outside __call__ (project_annotations and attend called directly)
        # Keras does not autocast variables, so mixed precision casts here.
        return ops.cast(variable, self.compute_dtype)

    def _input(self, x, name, rank, size):
        x = ops.cast(_as_tensor(x), self.compute_dtype)
        shape = tuple(x.shape)
        if len(shape) != rank or shape[-1] not in (None, size):
            expected = "(batch, locations, " if rank == 3 else "(batch, "
            raise ValueError(
                f"{name} must have shape {expected}{size}) for this layer, built for "
                f"{self._features} features and hidden size {self._hidden_size}; got "
                f"{name} with shape {shape}."
            )
        return x

    def project_annotations(self, annotations):
        """`W_a a_i` for every location: the step-independent half.

        Args:
            annotations: float tensor `(batch, L, D)`.

        Returns:
            A `(batch, L, units)` tensor in the layer's compute dtype, to
            pass to `attend` at every decoding step.
        """
        self._check_built("project_annotations")
        annotations = self._input(annotations, "annotations", 3, self._features)
        return ops.matmul(annotations, self._weight(self.annotation_kernel))

    def attend(self, annotations, projected, hidden, mask=None):
        """One attention step from precomputed `project_annotations` output.

        Args:
            annotations: float tensor `(batch, L, D)`.
            projected: `project_annotations(annotations)`, `(batch, L,
                units)`.
            hidden: float tensor `(batch, H)`. The previous hidden state.
            mask: optional bool or 0/1 tensor `(batch, L)`. Defaults to
                `None`.

        Returns:
            A tuple `(context, weights)` of shapes `(batch, D)` and
            `(batch, L)`, as the layer's call.
        """
        self._check_built("attend")
        annotations = self._input(annotations, "annotations", 3, self._features)
        projected = self._input(projected, "projected", 3, self.units)
        hidden = self._input(hidden, "hidden", 2, self._hidden_size)
        _check_batch(tuple(annotations.shape), tuple(hidden.shape), "hidden")
        _check_locations(tuple(annotations.shape), tuple(projected.shape), "projected")

        query = ops.matmul(hidden, self._weight(self.hidden_kernel)) + self._weight(self.bias)
        scores = ops.tanh(projected + ops.expand_dims(query, 1))
        logits = ops.squeeze(ops.matmul(scores, self._weight(self.score_kernel)), -1)
        if mask is not None:
            mask = _as_tensor(mask)
            _check_locations(tuple(annotations.shape), tuple(mask.shape), "mask", rank=2)
            mask = ops.cast(mask, self.compute_dtype)
            logits = logits + (1.0 - mask) * _large_negative(self.compute_dtype)
        weights = ops.softmax(logits, axis=-1)
        if mask is not None:
            # Exact zeros at padded locations even when a whole row is
            # padded (the softmax is then uniform over the padding).
            weights = weights * mask
        # (batch, 1, L) @ (batch, L, D): one BATCH_MATMUL in TFLite.
        context = ops.squeeze(ops.matmul(ops.expand_dims(weights, 1), annotations), 1)
        if self.gating:
            gate = ops.matmul(hidden, self._weight(self.gate_kernel)) + self._weight(self.gate_bias)
            context = context * ops.sigmoid(gate)
        return context, weights

    def call(self, annotations, hidden, mask=None):
        projected = self.project_annotations(annotations)
        return self.attend(annotations, projected, hidden, mask=mask)

    def compute_mask(self, annotations, previous_mask):
        # The mask is consumed: the context is pooled over the locations and
        # the weights are already zero at padding.
        return None

    def compute_output_shape(self, annotations_shape, hidden_shape):
        batch = annotations_shape[0] if annotations_shape[0] is not None else hidden_shape[0]
        return (batch, annotations_shape[2]), (batch, annotations_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "gating": self.gating})
        return config


def _as_tensor(x):
    # KerasTensors pass through, so the methods also trace symbolically.
    return x if isinstance(x, keras.KerasTensor) or ops.is_tensor(x) else ops.convert_to_tensor(x)


def _check_batch(annotations_shape, other_shape, name):
    batch, other = annotations_shape[0], other_shape[0]
    if batch is not None and other is not None and batch != other:
        raise ValueError(
            f"annotations and {name} must have the same batch size; got annotations with "
            f"shape {annotations_shape} and {name} with shape {other_shape}."
        )


def _check_locations(annotations_shape, other_shape, name, rank=3):
    """`other` must match the annotations' `(batch, L)` where both are known."""
    expected = "(batch, locations)" if rank == 2 else "(batch, locations, units)"
    mismatch = len(other_shape) != rank or any(
        a is not None and b is not None and a != b
        for a, b in zip(annotations_shape[:2], other_shape[:2])
    )
    if mismatch:
        raise ValueError(
            f"{name} must have shape {expected} matching annotations with shape "
            f"{annotations_shape}; got {name} with shape {other_shape}."
        )
