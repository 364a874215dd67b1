"""A reused Spark Python worker loads many models: two models whose modules share names
(``model``, and a sibling ``features``) each get their own, in any order, in one process."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pandas as pd

from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.write import write_tree
from pymlc.runtime_stub.config import ModelConfig
from pymlc.runtime_stub.predict import Predictor

SPEC = """
pyml: 1
name: same-names-{tag}
version: 1.0.0
model: {{kind: dataframe, entrypoint: "model:Model"}}
inputs: [{{name: x, type: float64}}]
outputs: [{{name: y, type: float64}}]
"""
MODEL = """
from __future__ import annotations

import pandas as pd

from features import OFFSET
from pymlc import DataFrameModel


class Model(DataFrameModel):
    def __init__(self, artifacts):
        pass

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"y": df["x"] + OFFSET})
"""


def _model(folder: Path, offset: float) -> Predictor:
    folder.mkdir()
    (folder / "pyml.yaml").write_text(SPEC.format(tag=int(offset)), encoding="utf-8")
    (folder / "model.py").write_text(textwrap.dedent(MODEL), encoding="utf-8")
    (folder / "features.py").write_text(f"OFFSET = {offset}\n", encoding="utf-8")
    write_tree(folder / "generated", compile_spec(folder / "pyml.yaml").artifacts)
    return Predictor(ModelConfig.load(folder / "generated" / "model.json"), folder)


def test_models_whose_modules_share_names_load_their_own(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    first = _model(tmp_path / "a", 10.0)
    second = _model(tmp_path / "b", 20.0)
    again = Predictor(first.config, tmp_path / "a")
    assert first.predict_frame(frame)["y"].tolist() == [11.0, 12.0]
    assert second.predict_frame(frame)["y"].tolist() == [21.0, 22.0]
    assert again.predict_frame(frame)["y"].tolist() == [11.0, 12.0]
    assert Path(sys.modules["model"].__file__ or "").parent == tmp_path / "a"
    assert "pandas" in sys.modules and "numpy" in sys.modules  # installed packages stay
