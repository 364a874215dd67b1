"""The pymlc compiler: ``pyml.yaml`` -> load -> validate -> lower (IR) -> emit -> write.

Stage modules: ``load`` (YAML with positions), ``spec`` + ``validate`` (pydantic model and
semantic checks), ``lock`` (field numbers), ``lower`` + ``ir`` (the completed BuildPlan),
``emit`` (one emitter per artifact), ``write`` (the only module touching the output folder),
``pipeline`` (the stages in order), ``diff`` (schema evolution). Import what you need from
those modules; this package module imports nothing, so importing one stage stays cheap.
"""

from __future__ import annotations

__all__: list[str] = []
