from setuptools import find_packages, setup

setup(
    name="keras_segattn",
    version="0.1.0",
    description="Segmentation and visual attention architectures for Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_segattn", "keras_segattn.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.10",
        "numpy",
        "pillow",
        "scikit-image",
        "pycocotools",
        "pycocoevalcap",
        "matplotlib",
        "ai-edge-litert",
        "tensorflow-datasets",
        "importlib_resources",
        "tensorboard",
        "pydensecrf2==1.1",
    ],
    extras_require={
        "dev": ["pytest", "ruff"],
        # `segattn export --onnx`, `keras_segattn.export.convert_to_onnx`
        "onnx": ["onnx", "onnxruntime", "tf2onnx"],
    },
    entry_points={"console_scripts": ["segattn=keras_segattn.cli:main"]},
)
