"""Speed of the Show, Attend and Tell captioner: decoding and a train step.

    python benchmarks/captioning.py            # the README table (about 3 min on 2 cores)
    python benchmarks/captioning.py --quick    # a smoke run

A captioner with the package's default sizes (light encoder, 224x224, a
7x7 grid, LSTM of 1024 units, 20 tokens) and a 1,000-word vocabulary with
random weights: decoding time does not depend on what the weights say,
only on the number of steps, which is always `max_length` for the graph
decoders. Medians after a warm-up. Prints a Markdown table.
"""

import argparse
import os
import tempfile

import numpy as np
from timing import machine, median_seconds


def measure(attention, words, sizes, repeats, batch=16):
    """One table row: greedy (Keras, TFLite), beam search, a train step."""
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from keras_segattn.export import convert_to_tflite
    from keras_segattn.models import create_model
    from keras_segattn.models.captioning import CaptionLoss

    model = create_model("show_attend_tell", vocabulary=words, attention=attention, **sizes)
    size = tuple(model.image_size)
    images = np.random.default_rng(0).integers(0, 256, (1, *size, 3), np.uint8)
    greedy = tf.function(model.decode_greedy)
    keras_ms = 1000 * median_seconds(lambda: greedy(images)["token_ids"].numpy(), repeats)
    beam_ms = 1000 * median_seconds(
        lambda: model.generate(images, method="beam", beam_width=3), max(1, repeats // 2)
    )
    with tempfile.TemporaryDirectory() as directory:
        tflite_path = os.path.join(directory, "captioner.tflite")
        convert_to_tflite(model, tflite_path, signature_key="tokens", task="captioning")
        tflite_mb = os.path.getsize(tflite_path) / 1e6
        interpreter = Interpreter(model_path=tflite_path, num_threads=os.cpu_count())
        runner = interpreter.get_signature_runner()
        tflite_ms = 1000 * median_seconds(lambda: runner(images=images), repeats)
    model.compile(keras.optimizers.Adam(1e-3), loss=CaptionLoss())
    batch_images = np.repeat(images, batch, axis=0)
    tokens = np.random.default_rng(1).integers(4, len(words), (batch, model.max_length))
    step_s = median_seconds(lambda: model.train_on_batch([batch_images, tokens], tokens), repeats)
    row = (
        f"| {attention} | {model.count_params() / 1e6:.1f} | {tflite_mb:.1f} | {keras_ms:.0f} "
        f"| {tflite_ms:.0f} | {beam_ms:.0f} | {step_s:.2f} |"
    )
    return row, (size, model.max_length, batch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    words = ["<pad>", "<unk>", "<start>", "<end>"] + [f"w{i}" for i in range(996)]
    sizes = (
        dict(image_size=(64, 64), units=64, embedding_dim=32, attention_units=32, max_length=8)
        if args.quick
        else {}
    )
    repeats = 2 if args.quick else 5
    rows = [measure(attention, words, sizes, repeats) for attention in ("soft", "hard")]
    size, max_length, batch = rows[0][1]
    rows = [row for row, _ in rows]
    header = [
        f"Machine: {machine()}. Captioner {size[0]}x{size[1]}, {len(words)} words, "
        f"{max_length} tokens; one image per call, train step batch {batch} "
        f"(Adam, no XLA); medians of {repeats}.",
        "",
        "| attention | params (M) | TFLite (MB) | Keras greedy (ms) | TFLite greedy (ms) "
        "| beam 3 (ms) | train step (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(header + rows))


if __name__ == "__main__":
    main()
