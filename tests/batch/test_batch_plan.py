"""The query check, without Spark: every problem reported at once, safe casts accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from pymlc.runtime_stub.config import ModelConfig
from pymlc.runtime_stub.spark_dest import TableInfo, check_destination, parse_partition
from pymlc.runtime_stub.spark_plan import Column, PlanError, plan_job, spark_type_to_spec
from pymlc.runtime_stub.types import COLUMN_TYPES

GOOD = [Column("trip_id", "bigint"), Column("trip_distance_km", "double"),
        Column("city", "string"), Column("pickup_hour", "int"), Column("passengers", "tinyint")]


@pytest.fixture(scope="module")
def config(fare_config: Path) -> ModelConfig:
    return ModelConfig.load(fare_config)


def test_every_spec_type_has_its_spark_type() -> None:
    for row in COLUMN_TYPES.values():
        assert spark_type_to_spec(row.spark.lower()) == row.name
    assert spark_type_to_spec("decimal(10,2)") is None


def test_a_matching_query_plans_inputs_in_spec_order_and_passthrough_first(
        config: ModelConfig) -> None:
    plan = plan_job(config, list(reversed(GOOD)))
    assert [field.name for _, field, _ in plan.inputs] == [
        "trip_distance_km", "city", "pickup_hour", "passengers"]
    assert plan.passthrough == (("trip_id", "trip_id", ""),)
    assert [(c.name, c.spark_type) for c in plan.output] == [("trip_id", "bigint"),
                                                            ("fare", "double")]


def test_narrower_types_of_the_same_family_are_cast_up(config: ModelConfig) -> None:
    query = [Column("TRIP_ID", "string"), Column("trip_distance_km", "float"),
             Column("City", "string"), Column("pickup_hour", "tinyint"),
             Column("passengers", "tinyint")]
    plan = plan_job(config, query)
    assert [(source, spark) for source, _, spark in plan.inputs] == [
        ("trip_distance_km", "DOUBLE"), ("City", "STRING"), ("pickup_hour", "INT"),
        ("passengers", "TINYINT")]
    assert plan.output[0] == Column("trip_id", "string")  # passthrough keeps the query's type


def test_every_problem_is_reported_at_once(config: ModelConfig) -> None:
    query = [Column("trip_distance_km", "decimal(10,3)"), Column("city", "int"),
             Column("pickup_hour", "bigint"), Column("pickup_hour", "int")]
    with pytest.raises(PlanError) as caught:
        plan_job(config, query)
    problems = caught.value.problems
    assert len(problems) == 5, problems
    assert "'trip_distance_km' is DECIMAL(10,3)" in problems[0]
    assert "CAST(`trip_distance_km` AS DOUBLE)" in problems[0]
    assert "'city' is INT, but input 'city' is string" in problems[1]
    assert "ambiguous column 'pickup_hour'" in problems[2]
    assert "missing column 'passengers'" in problems[3]
    assert "missing column 'trip_id'" in problems[4] and "passthrough" in problems[4]


def test_a_wider_type_is_refused_with_the_cast_that_fixes_it(config: ModelConfig) -> None:
    query = [*GOOD[:3], Column("pickup_hour", "bigint"), GOOD[4]]
    with pytest.raises(PlanError) as caught:
        plan_job(config, query)
    (problem,) = caught.value.problems
    assert "accepted: TINYINT, SMALLINT, INT" in problem
    assert "CAST(`pickup_hour` AS INT) AS `pickup_hour`" in problem


def test_an_existing_destination_must_have_the_outputs_columns(config: ModelConfig) -> None:
    plan = plan_job(config, GOOD)
    same = TableInfo((Column("trip_id", "bigint"), Column("fare", "double")), "parquet",
                     "MANAGED")
    check_destination("s.t", plan, same)
    check_destination("s.t", plan, None)
    other = TableInfo((Column("trip_id", "bigint"), Column("fare", "float")), "hive",
                      "MANAGED", (Column("day", "string"),))
    with pytest.raises(PlanError) as caught:
        check_destination("s.t", plan, other)
    assert len(caught.value.problems) == 3
    assert "stored as 'hive'" in caught.value.problems[0]
    assert "s.t is partitioned by (day); give one --partition KEY=VALUE for each of its" \
        " keys" in caught.value.problems[1]
    assert "(trip_id BIGINT, fare FLOAT)" in caught.value.problems[2]


def test_partition_keys_must_be_the_tables_and_not_a_written_column(
        config: ModelConfig) -> None:
    plan = plan_job(config, GOOD)
    daily = TableInfo((Column("trip_id", "bigint"), Column("fare", "double")), "parquet",
                      "MANAGED", (Column("day", "string"), Column("region", "string")))
    check_destination("s.t", plan, daily, parse_partition(["REGION=eu", "day=2024-05-01"]))
    with pytest.raises(PlanError, match=r"s.t is partitioned by \(day, region\), but"
                                        r" --partition gives \(day\)"):
        check_destination("s.t", plan, daily, parse_partition(["day=2024-05-01"]))
    flat = TableInfo(daily.columns, "parquet", "MANAGED")
    with pytest.raises(PlanError, match=r"s.t is not partitioned, but --partition gives"
                                        r" \(hour\)"):
        check_destination("s.t", plan, flat, parse_partition(["hour=7"]))
    with pytest.raises(PlanError, match="partition key 'fare' is also a column the job writes"):
        check_destination("s.t", plan, None, parse_partition(["fare=1"]))


@pytest.mark.parametrize("item", [
    "day", "day=", "=x", "1day=x", "day=2024/05/01", "day=../../etc", "day=a'; DROP TABLE t;--",
    "day=a b", "day=" + "9" * 129, "day=-1"])
def test_a_bad_partition_item_is_refused(item: str) -> None:
    with pytest.raises(ValueError, match="--partition"):
        parse_partition([item])


def test_partition_items_are_parsed_in_order_keys_in_lower_case() -> None:
    assert parse_partition(["Day=2024-05-01", "hour=07", "zone=UTC+1"]) == (
        ("day", "2024-05-01"), ("hour", "07"), ("zone", "UTC+1"))
    with pytest.raises(ValueError, match="given twice"):
        parse_partition(["day=1", "DAY=2"])


def test_naive_and_nanosecond_timestamps_are_timestamps() -> None:
    assert spark_type_to_spec("timestamp_ntz") == "timestamp"
    assert spark_type_to_spec("timestamp_ntz(9)") == "timestamp"
    assert spark_type_to_spec("timestamp_ltz(9)") == "timestamp"
    assert spark_type_to_spec("varchar(10)") == "string"
