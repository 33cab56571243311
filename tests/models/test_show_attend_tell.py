import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.core.vocabulary import CaptionVocabulary
from keras_segattn.export import convert_to_tflite, export_saved_model, run_tflite, verify_export
from keras_segattn.models.backbones.vgg import transplant_vgg16
from keras_segattn.models.captioning import (
    CaptionLoss,
    doubly_stochastic_penalty,
    encode_captions,
    masked_caption_loss,
    reinforce_surrogate,
    reward_to_go_advantages,
    show_attend_tell,
    step_reinforce_surrogate,
    token_log_likelihood,
)
from keras_segattn.models.captioning.show_attend_tell import build_encoder
from keras_segattn.models.registry import create_model, get_model_spec, list_models
from keras_segattn.tasks.captioning import captioning_serving_fn
from keras_segattn.testing import run_model_test
from tests.references import (
    caption_cross_entropy_reference,
    doubly_stochastic_penalty_reference,
    reward_to_go_advantages_reference,
)

CAPTIONS = ["a red square", "blue circle on grass"]


def tiny(**overrides):
    return show_attend_tell(**{**get_model_spec("show_attend_tell").tiny, **overrides})


def toy_images():
    images = np.zeros((2, 32, 32, 3), "uint8")
    images[0, 8:24, 8:24] = (255, 0, 0)
    images[1, 16:, :] = (0, 160, 0)
    images[1, 4:14, 10:20] = (0, 0, 255)
    return images


def batch(model, rng, size=2):
    images = rng.integers(0, 256, size=(size, *model.image_size, 3)).astype("float32")
    input_ids, targets = encode_captions(
        (CAPTIONS * size)[:size], model.vocabulary, model.max_length
    )
    return [images, input_ids], targets


def dense(gradient, variable):
    if gradient is None:
        return np.zeros(variable.shape, "float32")
    # The embedding's gradient is an IndexedSlices.
    return tf.convert_to_tensor(gradient).numpy()


@pytest.fixture(scope="module")
def toy():
    """A soft-attention captioner fitted to two images and their captions."""
    keras.utils.set_random_seed(0)
    images = toy_images()
    model = tiny()
    input_ids, targets = encode_captions(CAPTIONS, model.vocabulary, model.max_length)
    model.compile(keras.optimizers.Adam(0.02), CaptionLoss())
    history = model.fit((images, input_ids), targets, epochs=80, verbose=0)
    return model, images, history.history["loss"]


def test_registered_as_captioning():
    assert "show_attend_tell" in list_models(task="captioning")
    model = create_model("show_attend_tell", **get_model_spec("show_attend_tell").tiny)
    assert model.grid_size == (4, 4)
    assert model.output_shape == (None, 5, 12)
    assert [tuple(i.shape) for i in model.inputs] == [(None, 32, 32, 3), (None, 5)]
    assert model.get_config()["vocabulary"] == model.vocabulary


def test_vgg16_encoder_is_conv5_3_and_light_grid(rng):
    encoder, grid = build_encoder("vgg16", (224, 224))
    assert grid == (14, 14) and encoder.output_shape == (None, 196, 512)
    _, grid = build_encoder("light", (224, 224))
    assert grid == (7, 7)
    # Same layer names as keras.applications.VGG16: weights="imagenet" goes
    # through transplant_vgg16; here random weights, checked on conv5_3.
    encoder, grid = build_encoder("vgg16", (64, 64))
    source = keras.applications.VGG16(weights=None, include_top=False)
    assert len(transplant_vgg16(source, encoder, include_fc=False)) == 13
    images = rng.uniform(0, 255, size=(1, 64, 64, 3)).astype("float32")
    conv5_3 = keras.Model(source.input, source.get_layer("block5_conv3").output)
    expected = conv5_3(keras.applications.vgg16.preprocess_input(images.copy())).numpy()
    np.testing.assert_allclose(encoder(images).numpy(), expected.reshape(1, 16, 512), atol=1e-4)


def test_encoder_trainable_false_freezes_the_encoder():
    model = tiny(encoder_trainable=False)
    assert not model.encoder.trainable
    frozen = {v.path for v in model.trainable_variables}
    assert not any(p.startswith("conv") for p in frozen)
    assert any(p.startswith("decoder/") for p in frozen)


def test_encode_captions_uses_the_one_vocabulary():
    # <pad> 0, <unk> 1, <start> 2, <end> 3: the ids of data.CaptionVocabulary.
    vocabulary = get_model_spec("show_attend_tell").tiny["vocabulary"]
    assert vocabulary[:4] == list(CaptionVocabulary.build(["a red square"]).words[:4])
    input_ids, targets = encode_captions(["a red square", "A zebra!"], vocabulary, 4)
    np.testing.assert_array_equal(input_ids, [[2, 4, 5, 8], [2, 4, 1, 0]])
    np.testing.assert_array_equal(targets, [[4, 5, 8, 3], [4, 1, 3, 0]])
    input_ids, targets = encode_captions(["a red square on grass"], vocabulary, 3)
    np.testing.assert_array_equal(input_ids, [[2, 4, 5]])
    np.testing.assert_array_equal(targets, [[4, 5, 3]])
    with pytest.raises(ValueError, match="index 1"):
        encode_captions(["a red square", ""], vocabulary, 4)


def test_vocabulary_in_another_order_is_refused():
    tiny = get_model_spec("show_attend_tell").tiny
    swapped = ["<pad>", "<start>", "<end>", "<unk>", *tiny["vocabulary"][4:]]
    with pytest.raises(ValueError, match="vocabulary must start with the special tokens"):
        create_model("show_attend_tell", **{**tiny, "vocabulary": swapped})


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_model_passes_shared_checks(attention, rng):
    model = tiny(attention=attention, dropout=0.1)
    inputs, targets = batch(model, rng)
    run_model_test(model, inputs, targets, loss=CaptionLoss(), atol=1e-5, tflite_atol=1e-4)


def test_caption_loss_ignores_padding(rng):
    targets = np.array([[4, 5, 2, 0, 0], [6, 2, 0, 0, 0]])
    logits = rng.normal(size=(2, 5, 12)).astype("float32")
    for per_token in (False, True):
        expected = caption_cross_entropy_reference(targets, logits, per_token=per_token)
        got = masked_caption_loss(targets, logits, per_token=per_token)
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        loss = CaptionLoss(per_token=per_token)
        np.testing.assert_allclose(float(loss(targets, logits)), expected.mean(), rtol=1e-5)
        assert CaptionLoss.from_config(loss.get_config()).get_config() == loss.get_config()
    # Changing the logits at padded steps changes nothing.
    moved = logits.copy()
    moved[0, 3:] += 10.0
    np.testing.assert_allclose(
        masked_caption_loss(targets, moved), masked_caption_loss(targets, logits), rtol=1e-5
    )


def test_doubly_stochastic_penalty_matches_numpy(rng):
    model = tiny(doubly_stochastic=0.7)
    model.compile("sgd", CaptionLoss())
    inputs, targets = batch(model, rng)
    assert (targets == 0).any()  # a caption shorter than max_length: masked steps
    outputs = model(inputs, training=True)
    attention = outputs["attention"].numpy()
    assert attention.shape == (2, 5, 16)
    penalty = doubly_stochastic_penalty_reference(attention, targets, 0.7)
    np.testing.assert_allclose(
        float(doubly_stochastic_penalty(attention, targets != 0, 0.7)), penalty, rtol=1e-5
    )
    cross_entropy = caption_cross_entropy_reference(targets, outputs["logits"]).mean()
    total = float(model.compute_loss(inputs, targets, outputs))
    np.testing.assert_allclose(total, cross_entropy + penalty, rtol=1e-5)
    # evaluate() and inference: the caption loss only.
    logits = model(inputs)
    inference = float(model.compute_loss(inputs, targets, logits, training=False))
    np.testing.assert_allclose(
        inference, caption_cross_entropy_reference(targets, logits).mean(), rtol=1e-5
    )


def test_hard_attention_loss_value_samples_and_baseline(rng):
    model = tiny(attention="hard", baseline_decay=0.9)
    model.compile("sgd", CaptionLoss())
    model.decoder.baseline.assign(-1.0)
    inputs, targets = batch(model, rng, size=8)
    outputs = model(inputs, training=True)
    attention = outputs["attention"].numpy()
    log_probs = outputs["location_log_probs"].numpy()
    # Each step either sampled a location (its log alpha) or used the
    # expected context (0); both happen with expected_context_rate=0.5.
    sampled = log_probs != 0
    assert 0 < sampled.mean() < 1
    for n, t in zip(*np.nonzero(sampled)):
        assert np.isclose(np.log(attention[n, t]), log_probs[n, t], atol=1e-5).any()
    cross_entropy = caption_cross_entropy_reference(targets, outputs["logits"])
    # The surrogate adds gradients, not value: the loss is the caption loss.
    loss = float(model.compute_loss(inputs, targets, outputs, training=True))
    np.testing.assert_allclose(loss, cross_entropy.mean(), rtol=1e-5)
    expected_baseline = 0.9 * -1.0 + 0.1 * float(np.mean(-cross_entropy))
    np.testing.assert_allclose(float(model.decoder.baseline.numpy()), expected_baseline, rtol=1e-5)
    model.compute_loss(inputs, targets, outputs, training=False)
    np.testing.assert_allclose(float(model.decoder.baseline.numpy()), expected_baseline, rtol=1e-5)
    # Inference reads the argmax location: deterministic.
    np.testing.assert_array_equal(model(inputs).numpy(), model(inputs).numpy())


def test_reinforce_surrogate_value():
    attention = np.array([[[0.5, 0.5], [0.9, 0.1]]], "float32")
    value = reinforce_surrogate(
        np.array([-3.0]),
        np.array([[np.log(0.5), 0.0]]),
        attention,
        np.array([[1.0, 1.0]]),
        baseline=-1.0,
        reinforce_weight=2.0,
        entropy_weight=0.1,
    )
    entropy = np.log(2.0) - (0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    np.testing.assert_allclose(value, [2.0 * (-3.0 + 1.0) * np.log(0.5) + 0.1 * entropy], rtol=1e-6)


def test_reward_to_go_advantages_match_numpy(rng):
    targets = np.array([[5, 6, 2, 0, 0], [7, 5, 6, 8, 2]])
    tokens = np.where(targets != 0, -rng.uniform(0.1, 3.0, targets.shape), 0.0)
    sampled = rng.uniform(size=targets.shape) < 0.6
    sampled[0, 0] = sampled[1, 1] = True
    expected = reward_to_go_advantages_reference(tokens, targets, -1.2, sampled)
    got = reward_to_go_advantages(tokens, targets != 0, -1.2, sampled=sampled)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert (got.numpy()[targets == 0] == 0).all()
    # One advantage per caption broadcast over the steps is the paper's surrogate.
    attention = rng.dirichlet(np.ones(4), size=(2, 5)).astype("float32")
    log_probs = np.where(sampled, np.log(attention[..., 0]), 0.0)
    caption = tokens.sum(-1)
    paper = reinforce_surrogate(caption, log_probs, attention, targets != 0, -4.0, 1.5, 0.1)
    steps = step_reinforce_surrogate(
        (caption + 4.0)[:, None], log_probs, attention, targets != 0, 1.5, 0.1
    )
    np.testing.assert_allclose(paper, steps, rtol=1e-6)


def test_hard_attention_with_variance_reduction_trains(rng):
    model = tiny(attention="hard", baseline_decay=0.5, variance_reduction=True)
    assert show_attend_tell(**model.get_config()).get_config()["variance_reduction"] is True
    model.compile("sgd", CaptionLoss())
    model.decoder.baseline.assign(-1.0)
    inputs, targets = batch(model, rng, size=8)
    outputs = model(inputs, training=True)
    cross_entropy = caption_cross_entropy_reference(targets, outputs["logits"])
    loss = float(model.compute_loss(inputs, targets, outputs, training=True))
    np.testing.assert_allclose(loss, cross_entropy.mean(), rtol=1e-5)  # value: caption loss
    # The baseline follows the log-likelihood per token.
    tokens = token_log_likelihood(targets, outputs["logits"]).numpy()
    per_token = tokens.sum() / (targets != 0).sum()
    np.testing.assert_allclose(
        float(model.decoder.baseline.numpy()), 0.5 * -1.0 + 0.5 * per_token, rtol=1e-5
    )
    # The score-function term reaches the attention weights.
    with tf.GradientTape() as tape:
        outputs = model(inputs, training=True)
        loss = model.compute_loss(inputs, targets, outputs, training=True)
    kernel = model.decoder.attention.score_kernel
    assert np.abs(dense(tape.gradient(loss, kernel), kernel)).sum() > 0


@pytest.mark.parametrize("expected_context_rate", [0.0, 0.5])
def test_reinforce_gradient_is_unbiased(expected_context_rate):
    """The hard-attention gradient, averaged over many samples (one image,
    one step, a 2x2 grid), converges to the exact gradient of `(1 - r)
    E_s[log p(y | s)] + r log p(y | E[z]) + lambda_e H(alpha)`, computed by
    enumerating the 4 locations; the gradient without the score-function
    term does not. The error is measured in standard errors, estimated
    from independent groups of samples."""
    keras.utils.set_random_seed(1)
    entropy_weight, rate, locations = 0.05, expected_context_rate, 4
    groups, group_size = 25, 800
    settings = dict(image_size=(8, 8), encoder_filters=(4, 4, 4), max_length=1)
    settings.update(entropy_weight=entropy_weight, expected_context_rate=rate)
    model = tiny(attention="hard", **settings)
    decoder = model.decoder
    # Sharper attention and word scores that depend on the location.
    decoder.attention.score_kernel.assign(decoder.attention.score_kernel * 10.0)
    decoder.output_context.kernel.assign(decoder.output_context.kernel * 20.0)
    # Any baseline leaves the estimate unbiased; this one is deliberately off.
    decoder.baseline.assign(-1.0)
    soft = tiny(attention="soft", **settings)
    soft.set_weights(model.get_weights())
    image = np.random.default_rng(0).integers(0, 256, size=(1, 8, 8, 3)).astype("float32")
    start, word = np.array([[1]], "int32"), 5
    weights = model.trainable_variables

    def flat(gradients, sign=1.0):
        return sign * np.concatenate([dense(g, w).ravel() for g, w in zip(gradients, weights)])

    with tf.GradientTape() as tape:
        annotations = tf.repeat(model.encoder(image), locations, axis=0)
        projected = decoder.attention.project_annotations(annotations)
        logits, _, alpha, _ = decoder.step(
            tf.ones(locations, "int32"),
            decoder.initial_state(annotations),
            annotations,
            projected,
            location=tf.range(locations),
        )
        log_likelihood = tf.nn.log_softmax(logits)[:, word]  # log p(y | s), s = 0..3
        alpha = alpha[0]
        objective = (1.0 - rate) * tf.reduce_sum(alpha * log_likelihood)
        objective -= entropy_weight * tf.reduce_sum(alpha * tf.math.log(alpha))
    exact = flat(tape.gradient(objective, weights))
    with tf.GradientTape() as tape:
        expected_term = rate * tf.nn.log_softmax(soft([image, start]))[0, 0, word]
    exact += flat(tape.gradient(expected_term, soft.trainable_variables))
    assert np.ptp(log_likelihood.numpy()) > 0.1  # the location matters

    model.compile("sgd", CaptionLoss())
    inputs = [np.repeat(image, group_size, 0), np.repeat(start, group_size, 0)]
    targets = np.full((group_size, 1), word)
    estimates, biased = [], []
    for _ in range(groups):
        with tf.GradientTape(persistent=True) as tape:
            outputs = model(inputs, training=True)
            loss = model.compute_loss(inputs, targets, outputs, training=False)
            entropy = -tf.reduce_sum(outputs["attention"] * tf.math.log(outputs["attention"]), -1)
            no_score_term = CaptionLoss()(targets, outputs["logits"])
            no_score_term -= entropy_weight * tf.reduce_mean(entropy)
        # Minus: the loss is minimised, the objective maximised.
        estimates.append(flat(tape.gradient(loss, weights), -1.0))
        biased.append(flat(tape.gradient(no_score_term, weights), -1.0))

    scoring = np.concatenate(
        [
            np.full(int(np.prod(w.shape)), "attention/" in w.path and "gate" not in w.path)
            for w in weights
        ]
    )

    def error_in_standard_errors(samples, keep):
        samples = np.stack(samples)[:, keep]
        variance = samples.var(axis=0, ddof=1) / groups  # of the mean of all samples
        return np.sum((samples.mean(axis=0) - exact[keep]) ** 2) / np.sum(variance)

    # The squared error over the summed variance of the mean: about 1 for an
    # unbiased estimator. The coordinates are strongly correlated, so it
    # scatters like a chi-square with few degrees of freedom (0.07 to 2.9
    # over seeds and sample sizes); without the score term it is > 100.
    everything = np.ones_like(scoring)
    assert error_in_standard_errors(estimates, everything) < 6.0
    assert error_in_standard_errors(estimates, scoring) < 6.0
    assert error_in_standard_errors(biased, scoring) > 100.0
    assert error_in_standard_errors(biased, everything) > 100.0


def test_generate_on_toy_captions(toy):
    model, images, losses = toy
    assert losses[-1] < 0.6 * losses[0]
    # evaluate: the caption loss alone (no penalty) is near zero.
    input_ids, targets = encode_captions(CAPTIONS, model.vocabulary, model.max_length)
    assert model.evaluate((images, input_ids), targets, verbose=0) < 0.5
    greedy = model.generate(images)
    assert greedy["captions"] == CAPTIONS
    assert greedy["words"] == [c.split() for c in CAPTIONS]
    token_ids, attention = greedy["token_ids"], greedy["attention"]
    assert token_ids.dtype == np.int32 and token_ids.shape == (2, 5)
    assert attention.shape == (2, 5, 4, 4)
    np.testing.assert_array_equal(token_ids, targets)  # <end>, then <pad>
    # Rows sum to 1 up to <end>; zeros after.
    sums = attention.sum(axis=(2, 3))
    np.testing.assert_allclose(sums, (targets != 0).astype("float32"), atol=1e-5)
    beam = model.generate(images, method="beam", beam_width=3)
    assert beam["captions"] == CAPTIONS
    shorter = model.generate(images, max_length=2)
    assert shorter["token_ids"].shape == (2, 2) and shorter["attention"].shape == (2, 2, 4, 4)
    assert shorter["captions"] == ["a red", "blue circle"]
    # Other sizes are resized, as in the exported signature.
    resized = tf.image.resize(images, (40, 48)).numpy().round().astype("uint8")
    assert model.generate(resized)["token_ids"].shape == (2, 5)


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_beam_width_one_is_greedy(attention, toy, rng):
    if attention == "soft":
        model, images, _ = toy
    else:
        model = tiny(attention="hard")
        images = rng.integers(0, 256, size=(3, 32, 32, 3)).astype("uint8")
    greedy = model.generate(images)
    beam = model.generate(images, method="beam", beam_width=1)
    np.testing.assert_array_equal(beam["token_ids"], greedy["token_ids"])
    np.testing.assert_allclose(beam["attention"], greedy["attention"], atol=1e-5)
    assert beam["captions"] == greedy["captions"]


def test_wide_beam_finds_the_most_likely_caption(rng):
    """A beam wider than every hypothesis is exhaustive search: compare with
    the log-probability of every possible caption of up to 3 tokens."""
    model = tiny(max_length=3, attention_units=4)
    kernel = model.decoder.output_logits.kernel
    kernel.assign(kernel * 6.0)  # peaked word distributions, no near ties
    image = rng.integers(0, 256, size=(1, 32, 32, 3)).astype("float32")
    end = model.token_id("<end>")
    words = [i for i in range(len(model.vocabulary)) if i not in (0, 1, end)]
    candidates = [[end]] + [[w, end] for w in words]
    candidates += [[*p, end] for p in itertools.product(words, repeat=2)]
    candidates += [list(p) for p in itertools.product(words, repeat=3)]  # cut at max_length
    input_ids = np.zeros((len(candidates), 3), "int32")
    for row, caption in enumerate(candidates):
        input_ids[row, : len(caption)] = [1, *caption[:-1]][:3]
    logits = model([np.repeat(image, len(candidates), 0), input_ids]).numpy().astype("float64")
    logits[..., [0, 1]] = -np.inf  # never generated
    top = logits.max(-1, keepdims=True)
    log_probs = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    scores = [sum(log_probs[r, t, w] for t, w in enumerate(c)) for r, c in enumerate(candidates)]
    best = candidates[int(np.argmax(scores))]
    found = model.generate(image, method="beam", beam_width=1000)["token_ids"][0]
    found = [int(t) for t in found if t != 0]
    assert np.isclose(scores[candidates.index(found)], max(scores), atol=1e-5), (found, best)


def test_vocabulary_and_argument_errors(rng):
    vocabulary = list(get_model_spec("show_attend_tell").tiny["vocabulary"])
    bad = [
        [w for w in vocabulary if w != "<end>"],
        vocabulary[1:] + ["<pad>"],
        vocabulary + ["a"],
        "<pad> <start> <end> <unk> a",
        vocabulary[:4],
    ]
    for vocab in bad:
        with pytest.raises(ValueError, match="vocabulary"):
            tiny(vocabulary=vocab)
    with pytest.raises(ValueError, match="imagenet"):
        tiny(weights="imagenet")
    with pytest.raises(ValueError, match="attention"):
        tiny(attention="sparse")
    with pytest.raises(ValueError, match="too small"):
        tiny(image_size=(4, 4))
    model = tiny()
    images = rng.integers(0, 256, size=(1, 32, 32, 3)).astype("uint8")
    with pytest.raises(ValueError, match="beam_width"):
        model.generate(images, method="beam", beam_width=0)
    with pytest.raises(ValueError, match="method"):
        model.generate(images, method="sample")
    with pytest.raises(ValueError, match="rank 4"):
        model.generate(images[0])
    with pytest.raises(ValueError, match="channels"):
        model.generate(images[..., :1])
    with pytest.raises(ValueError, match="max_length"):
        model.generate(images, max_length=0)


def test_saved_model_signature_and_builtin_tflite(toy, tmp_path, rng):
    model, images, _ = toy
    path = export_saved_model(model, tmp_path, name="captioner", task="captioning")
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "serving_bytes", "tokens", "portable"}
    signature = loaded.signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, 3]
    dtypes = {k: v.dtype for k, v in signature.structured_outputs.items()}
    assert dtypes == {
        "token_ids": tf.int32,
        "attention": tf.float32,
        "words": tf.string,
        "captions": tf.string,
    }
    served = {k: v.numpy() for k, v in signature(images=tf.constant(images)).items()}
    assert [c.decode() for c in served["captions"]] == CAPTIONS
    assert [w.decode() for w in served["words"][0]] == ["a", "red", "square", "", ""]
    np.testing.assert_array_equal(served["token_ids"], model.generate(images)["token_ids"])

    # Another size and batch: parity of the SavedModel and of builtin-only
    # TFLite (converted from the numeric "tokens" signature).
    other = rng.integers(0, 256, size=(3, 40, 48, 3)).astype("uint8")
    other[:2] = tf.image.resize(images, (40, 48)).numpy().round().astype("uint8")
    reference = {k: v.numpy() for k, v in captioning_serving_fn(model)(other).items()}
    flatbuffer = convert_to_tflite(model, signature_key="tokens", task="captioning")
    report = verify_export(reference, other, saved_model_dir=path, tflite_model=flatbuffer)
    saved = report["saved_model"]
    assert saved["token_ids"] == saved["words"] == saved["captions"] == 0.0
    assert saved["attention"] < 1e-5
    assert set(report["tflite"]) == {"token_ids", "attention"}
    assert report["tflite"]["token_ids"] == 0.0 and report["tflite"]["attention"] < 1e-4
    single = run_tflite(flatbuffer, {"images": other[:1]})
    np.testing.assert_array_equal(single["token_ids"], reference["token_ids"][:1])


def test_full_integer_tflite_still_speaks(toy, rng):
    # The greedy decoder kept <pad> and <start> out of the argmax with a
    # -1e9 offset: int8 quantised the argmax input over that range, every
    # real logit became one value, and each word came out <unk>.
    model, images, _ = toy
    calibration = [images[i : i + 1] for i in range(2)]
    calibration += [rng.integers(0, 256, (1, 32, 32, 3)).astype("uint8") for _ in range(6)]
    flatbuffer = convert_to_tflite(
        model,
        quantization="int8",
        representative_images=calibration,
        signature_key="tokens",
        task="captioning",
    )
    for i, caption in enumerate(CAPTIONS):
        token_ids = run_tflite(flatbuffer, {"images": images[i : i + 1]})["token_ids"][0]
        assert " ".join(model.decode_tokens(token_ids)) == caption


def test_keras_file_keeps_the_vocabulary(toy, tmp_path):
    model, images, _ = toy
    model.save(tmp_path / "captioner.keras")
    reloaded = keras.saving.load_model(tmp_path / "captioner.keras")
    assert reloaded.vocabulary == model.vocabulary
    assert reloaded.generate(images)["captions"] == CAPTIONS
    weights_path = tmp_path / "captioner.weights.h5"
    model.save_weights(weights_path)
    rebuilt = create_model(
        "show_attend_tell", **get_model_spec("show_attend_tell").tiny, weights=str(weights_path)
    )
    assert rebuilt.generate(images)["captions"] == CAPTIONS


def test_weights_of_another_vocabulary_are_rejected(tmp_path):
    vocabulary = list(get_model_spec("show_attend_tell").tiny["vocabulary"])
    model = tiny()
    model.save(tmp_path / "captioner.keras")
    model.save_weights(tmp_path / "captioner.weights.h5")
    other = vocabulary[:-1] + ["meadow"]
    with pytest.raises(ValueError, match="vocabulary does not match.*id 11: 'grass' saved"):
        tiny(vocabulary=other, weights=str(tmp_path / "captioner.keras"))
    with pytest.raises(ValueError, match="do not fit this captioner"):
        tiny(vocabulary=vocabulary + ["meadow"], weights=str(tmp_path / "captioner.weights.h5"))
    same = tiny(weights=str(tmp_path / "captioner.keras"))
    assert same.vocabulary == vocabulary
