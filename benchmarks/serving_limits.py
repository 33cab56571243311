"""Peak memory of the largest requests the default serving limits allow.

    python benchmarks/serving_limits.py [SAVED_MODEL_VERSION_DIR]

Default: the shipped multiscale_convnet_camvid, exported afresh (with the
default limits) to a temporary folder. Each request runs in a fresh
subprocess, so that its peak resident memory (ru_maxrss) is its own:
one and two 2048 x 2048 images through `serving_default`, two 2048 x 2048
PNGs through `serving_bytes`.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHIPPED = os.path.join(
    ROOT, "saved_models", "multiscale_convnet_camvid", "multiscale_convnet_camvid_v1.keras"
)
SIDE = 2048

REQUEST = """
import json, resource, sys, time
import numpy as np
import tensorflow as tf
path, signature, count, side = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
loaded = tf.saved_model.load(path)
loaded_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
if signature == "serving_bytes":
    inputs = {"image_bytes": tf.constant([tf.io.encode_png(image).numpy()] * count)}
else:
    inputs = {"images": tf.constant(np.stack([image] * count))}
start = time.perf_counter()
loaded.signatures[signature](**inputs)
seconds = time.perf_counter() - start
peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"signature": signature, "images": count, "side": side,
                  "seconds": round(seconds, 1), "loaded_GiB": round(loaded_gib, 2),
                  "peak_GiB": round(peak_gib, 2)}))
"""


def main():
    from timing import machine

    with tempfile.TemporaryDirectory() as folder:
        if len(sys.argv) > 1:
            path = sys.argv[1]
        else:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "keras_segattn.cli",
                    "export",
                    "--model-path",
                    SHIPPED,
                    "--output",
                    folder,
                    "--name",
                    "model",
                    "--tflite",
                ],
                check=True,
                cwd=ROOT,
                capture_output=True,
            )
            path = os.path.join(folder, "model", "1")
        print(f"# {machine()}")
        for signature, count in (
            ("serving_default", 1),
            ("serving_default", 2),
            ("serving_bytes", 2),
        ):
            result = subprocess.run(
                [sys.executable, "-c", REQUEST, path, signature, str(count), str(SIDE)],
                check=True,
                capture_output=True,
                text=True,
            )
            print(json.dumps(json.loads(result.stdout.strip().splitlines()[-1])))


if __name__ == "__main__":
    main()
