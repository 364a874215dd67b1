"""``Model.image``: the Python API builds the image and loads the model in it once, as
``pymlc image`` does; a model that cannot load raises and leaves no tag behind. Real builds
through the Docker engine, each in a repository of its own, removed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scratch_models import remove_images, unique_repository, write_model

import pymlc
from pymlc.image.loadcheck import LoadCheckError

pytestmark = pytest.mark.docker

CODE = '''
import pandas as pd
from pymlc import DataFrameModel
{load}

class Model(DataFrameModel):
    def __init__(self, artifacts):
        pass

    def predict(self, df):
        return pd.DataFrame({{"y": df["x"] * 2}})
'''


@pytest.fixture()
def repository(engine: Any) -> Iterator[str]:
    name = unique_repository("api-image")
    yield name
    remove_images(engine, name)


def test_image_builds_loads_and_tags(engine: Any, repository: str, tmp_path: Path) -> None:
    spec = write_model(tmp_path / "doubler", repository=repository, entrypoint="model:Model",
                       code=CODE.format(load=""))
    built = pymlc.load(spec).image()
    assert f"{repository}:0.1.0" in built.tags
    assert {t for i in engine.images.list(name=repository) for t in i.tags} == set(built.tags)


def test_image_of_a_model_that_cannot_load_raises_and_untags(
        engine: Any, repository: str, tmp_path: Path) -> None:
    spec = write_model(tmp_path / "broken", repository=repository, entrypoint="model:Model",
                       code=CODE.format(load="import not_in_requirements_xyz"))
    with pytest.raises(LoadCheckError, match="not_in_requirements_xyz"):
        pymlc.load(spec).image()
    assert engine.images.list(name=repository) == []
