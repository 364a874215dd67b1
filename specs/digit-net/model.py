"""Digit classifier: a softmax layer over 8x8 images, in plain numpy."""

from __future__ import annotations

import pathlib

import numpy as np

from pymlc import TensorModel


class DigitNet(TensorModel):
    def __init__(self, artifacts: pathlib.Path) -> None:
        weights = np.load(artifacts / "weights.npz")
        self.weights = weights["weights"].astype(np.float32)
        self.bias = weights["bias"].astype(np.float32)

    def predict(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        flat = tensors["pixels"].reshape(len(tensors["pixels"]), 64)
        logits = flat @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        return {"label": probabilities.argmax(axis=1).astype(np.int64),
                "probabilities": probabilities}
