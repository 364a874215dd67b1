"""Bad rows named in one line, without Spark: ``score_batches`` called as a Spark worker calls
it, on Arrow batches. By the first passthrough column when the spec has one, else by position
in the query's partition; from the input check's own ``rows`` when it gives them, else found by
checking halves of the batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import FARE

from pymlc.runtime_stub.checks import InputError
from pymlc.runtime_stub.spark_rows import PASSTHROUGH_PREFIX, BadRowsError, bad_rows
from pymlc.runtime_stub.spark_score import score_batches

OUT = pa.schema([("trip_id", pa.int64()), ("fare", pa.float64())])


def _batches(rows: int, nulls: set[int], size: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, rows, size):
        ids = range(start, min(start + size, rows))
        yield pa.RecordBatch.from_pydict({
            "trip_distance_km": [1.5] * len(ids), "city": ["paris"] * len(ids),
            "pickup_hour": pa.array([None if i in nulls else 8 for i in ids], pa.int32()),
            "passengers": pa.array([2] * len(ids), pa.int8()),
            PASSTHROUGH_PREFIX + "trip_id": pa.array([i * 10 for i in ids], pa.int64())})


def _score(fare_config: Path, batches: Iterator[pa.RecordBatch],
           passthrough: tuple[str, ...]) -> None:
    schema = OUT if passthrough else pa.schema([OUT.field("fare")])
    for _ in score_batches(batches, config_path=str(fare_config), model_root=str(FARE),
                           inputs=("trip_distance_km", "city", "pickup_hour", "passengers"),
                           passthrough=passthrough, schema=schema, nullable=(False,)):
        pass


def test_rows_are_named_by_the_first_passthrough_column(fare_config: Path) -> None:
    with pytest.raises(BadRowsError) as caught:
        _score(fare_config, _batches(300, {140, 141, 250}, 100), ("trip_id",))
    assert str(caught.value) == ("pickup_hour: 2 null value(s), but the column is not"
                                 " nullable (rows with trip_id 1400, 1410)")


def test_without_passthrough_rows_are_positions_in_the_partition(fare_config: Path) -> None:
    with pytest.raises(BadRowsError) as caught:
        _score(fare_config, _batches(300, set(range(150, 158)), 100), ())
    assert str(caught.value) == (
        "pickup_hour: 8 null value(s), but the column is not nullable (rows 150, 151, 152, 153,"
        " 154 and 3 more of partition 0 of the query)")


def test_the_input_checks_own_rows_are_used_when_given() -> None:
    error = InputError(["city: something wrong", "pickup_hour: something else"])
    error.rows = {"pickup_hour": (1, 0)}  # type: ignore[attr-defined]
    batch = pa.RecordBatch.from_pydict({PASSTHROUGH_PREFIX + "id": ["a", "b", "c"]})
    made = bad_rows(error, batch, ("id",), 0, locate=lambda: pytest.fail("not needed"))
    assert str(made) == "city: something wrong; pickup_hour: something else (rows with id b, a)"
