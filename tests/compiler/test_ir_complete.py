"""The IR is complete: emitters read facts from the ``BuildPlan`` and never from one another,
and each derived fact (image references, the service's full name, the image layout, the
rendered proto) has one definition that every consumer shares."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.routes import render_routes
from pymlc.image.build import image_tags

ROOT = Path(__file__).resolve().parents[2]
EMIT = ROOT / "pymlc" / "compiler" / "emit"
FARE = ROOT / "specs" / "fare-estimator" / "pyml.yaml"


def test_no_emitter_imports_another() -> None:
    emitters = {p.stem for p in EMIT.glob("*.py")} - {"__init__", "base"}
    found = []
    for path in sorted(EMIT.glob("*.py")):
        if path.stem == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in emitters:
                found.append(f"{path.name} imports .{node.module}")
    assert found == []


def test_artifacts_carry_the_facts_the_plan_computed_once() -> None:
    compiled = compile_spec(FARE)
    plan = compiled.plan
    files = {a.path: a.content for a in compiled.artifacts}
    assert files[plan.names.proto_path] == plan.proto
    assert f'image: "{plan.image.reference}"\n' in files["serving.yaml"]
    assert f"spark.kubernetes.container.image  {plan.image.batch_reference}" in \
        files["spark-submit.conf"]
    assert f"local://{plan.layout.batch_job_path}" in files["spark-submit.conf"]
    assert f'image: "{plan.image.reference}"' in files["kubernetes.yaml"]
    assert f"runAsUser: {plan.layout.uid}" in files["kubernetes.yaml"]
    assert plan.names.full_service in files["kubernetes.yaml"]
    assert image_tags(plan, "batch") == plan.image.tags("batch")
    assert plan.image.tags("serving")[1] == \
        f"{plan.image.repository}:spec-{plan.spec_sha256[:12]}"
    entry = json.loads(render_routes([(plan, FARE)], ROOT / "routes.json"))["models"][0]
    assert (entry["image"], entry["service"]) == (plan.image.reference, plan.names.full_service)
