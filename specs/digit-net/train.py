"""Train the digit classifier on scikit-learn's bundled digits; writes artifacts/weights.npz
(portable arrays, committed) and the examples. Run: python train.py"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    digits = load_digits()
    classifier = LogisticRegression(max_iter=2000, C=0.1)
    classifier.fit(digits.data, digits.target)
    np.savez(HERE / "artifacts" / "weights.npz",
             weights=classifier.coef_.T.astype(np.float32),
             bias=classifier.intercept_.astype(np.float32))
    from model import DigitNet

    pixels = digits.images[:4].astype(np.float32)
    outputs = DigitNet(HERE / "artifacts").predict({"pixels": pixels})
    (HERE / "examples" / "input.json").write_text(json.dumps({"pixels": pixels.tolist()}) + "\n")
    (HERE / "examples" / "output.json").write_text(json.dumps(
        {name: value.tolist() for name, value in sorted(outputs.items())}) + "\n")


if __name__ == "__main__":
    main()
