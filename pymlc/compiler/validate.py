"""Stage 2b, validate: the loaded document becomes a :class:`Spec`, or every problem is reported.

Pydantic errors are rewritten into messages that say what is wrong and how to fix it, and placed
at the line and column of the offending key or value. Then semantic passes check what relates
several fields: kind vs. field keys, unique names, paths that exist inside the spec's folder.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import Diagnostic, Level, Loc, SpecError
from .load import Document
from .spec import FORMAT_VERSION, Spec

__all__ = ["validate_document"]

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


def validate_document(doc: Document, root: Path) -> tuple[Spec, list[Diagnostic]]:
    """Turn a loaded document into a Spec, checking it against the spec's folder ``root``.

    Returns:
        The spec and its warnings.

    Raises:
        SpecError: with every error found.
    """
    if not isinstance(doc.data, dict):
        got = type(doc.data).__name__
        raise SpecError([doc.error((), "E007", f"the top level must be a mapping of keys, got {got};"
                                   " start from `pymlc init NAME`")])
    diagnostics = [*_structural(doc), *_semantic(doc, root)]
    errors = [d for d in diagnostics if d.level is Level.ERROR]
    if errors:
        raise SpecError(_dedupe(errors))
    return Spec.model_validate(doc.data), [d for d in diagnostics if d.level is Level.WARNING]


def _dedupe(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    seen: dict[tuple[Loc, str], Diagnostic] = {}
    for d in diagnostics:
        seen.setdefault((d.loc, d.message), d)
    return list(seen.values())


# --- structural: pydantic -------------------------------------------------------------------

def _structural(doc: Document) -> Iterator[Diagnostic]:
    if doc.data.get("pyml") not in (None, FORMAT_VERSION):
        yield doc.error(("pyml",), "E100", f"unsupported format version {doc.data['pyml']!r};"
                        f" this pymlc reads `pyml: {FORMAT_VERSION}`")
        return
    try:
        Spec.model_validate(doc.data)
    except ValidationError as exc:
        for error in exc.errors():
            yield _from_pydantic(doc, error)


def _from_pydantic(doc: Document, error: Any) -> Diagnostic:
    loc: Loc = tuple(error["loc"])
    kind: str = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return doc.error(loc, "E101", _unknown_key(loc), key=True)
    if kind == "missing":
        return doc.error(loc, "E102", f"required key {loc[-1]!r} is missing; add it", key=True)
    if kind in _TYPE_NAMES:
        return doc.error(loc, "E103", _wrong_type(kind, value))
    if kind in _BOUNDS:
        sign, key = _BOUNDS[kind]
        limit = error["ctx"][key]
        return doc.error(loc, "E104", f"must be {sign} {limit}, got {value!r}")
    if kind == "literal_error":
        expected = error["ctx"]["expected"]
        return doc.error(loc, "E105", f"{value!r} is not allowed; use {expected}")
    if kind == "string_pattern_mismatch" and loc == ("name",):
        return doc.error(loc, "E106", f"model name {value!r} must be lowercase letters, digits and"
                         " '-', starting with a letter (e.g. 'fare-estimator')")
    if kind == "string_too_long":
        return doc.error(loc, "E107", f"{value!r} is longer than {error['ctx']['max_length']}"
                         " characters")
    if kind == "too_short":
        return doc.error(loc, "E108", "must list at least one item")
    if kind.startswith("pyml_"):
        return doc.error(loc, "E110", error["msg"])
    return doc.error(loc, "E199", f"{error['msg']} (got {value!r})")


def _unknown_key(loc: Loc) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    known = sorted(model.model_fields) if model else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key {key!r}{hint}"


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] = Spec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        found = _nested_model(field.annotation)
        if found is None:
            return None
        model = found
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _wrong_type(kind: str, value: Any) -> str:
    expected = _TYPE_NAMES[kind]
    hint = ""
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        hint = f"; quote it: \"{value}\""
    shown = "nothing" if value is None else repr(value)
    return f"expected {expected}, got {shown}{hint}"


# --- semantic: relations between fields -------------------------------------------------------

Check = Callable[[Document, Path], Iterator[Diagnostic]]


def _semantic(doc: Document, root: Path) -> Iterator[Diagnostic]:
    for check in (_check_fields, _check_passthrough, _check_paths, _check_ports, _check_python):
        yield from check(doc, root)


def _mapping(data: Any, *keys: str) -> dict[str, Any]:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def _items(data: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


_COLUMN_KEYS = ("type", "nullable")
_TENSOR_KEYS = ("dtype", "shape")


def _check_fields(doc: Document, root: Path) -> Iterator[Diagnostic]:
    kind = _mapping(doc.data, "model").get("kind")
    for section in ("inputs", "outputs"):
        names: dict[str, int] = {}
        for i, item in _items(doc.data, section):
            loc: Loc = (section, i)
            name = item.get("name")
            if isinstance(name, str):
                if name in names:
                    yield doc.error((*loc, "name"), "E201", f"duplicate name {name!r}, also"
                                    f" {section}[{names[name]}]; names must be unique")
                names.setdefault(name, i)
            if kind == "dataframe":
                yield from _kind_keys(doc, loc, item, "dataframe", _TENSOR_KEYS, "type")
            elif kind == "tensor":
                yield from _kind_keys(doc, loc, item, "tensor", _COLUMN_KEYS, "dtype")
                yield from _check_shape(doc, loc, item)


def _kind_keys(doc: Document, loc: Loc, item: dict[str, Any], kind: str,
               foreign: tuple[str, ...], required: str) -> Iterator[Diagnostic]:
    for key in foreign:
        if key in item:
            own = "type/nullable" if kind == "dataframe" else "dtype/shape"
            yield doc.error((*loc, key), "E202", f"{key!r} is a {_other(kind)} field; a {kind}"
                            f" model's fields use {own}", key=True)
    if required not in item:
        yield doc.error(loc, "E203", f"a {kind} model's field needs {required!r}", key=True)
    if kind == "tensor" and "shape" not in item:
        yield doc.error(loc, "E203", "a tensor model's field needs 'shape' (e.g. [-1, 28, 28])",
                        key=True)


def _other(kind: str) -> str:
    return "tensor" if kind == "dataframe" else "dataframe column"


def _check_shape(doc: Document, loc: Loc, item: dict[str, Any]) -> Iterator[Diagnostic]:
    shape = item.get("shape")
    if not isinstance(shape, list):
        return
    if not 1 <= len(shape) <= 8:
        yield doc.error((*loc, "shape"), "E204", f"a shape has 1 to 8 dimensions, got {len(shape)}")
    for j, dim in enumerate(shape):
        if isinstance(dim, int) and not isinstance(dim, bool) and (dim == 0 or dim < -1):
            yield doc.error((*loc, "shape", j), "E204", f"dimension {dim} is invalid; use a size"
                            " >= 1, or -1 for any size")


def _check_passthrough(doc: Document, root: Path) -> Iterator[Diagnostic]:
    passthrough = _mapping(doc.data, "batch").get("passthrough")
    if not isinstance(passthrough, list):
        return
    if _mapping(doc.data, "model").get("kind") == "tensor" and passthrough:
        yield doc.error(("batch", "passthrough"), "E205", "passthrough columns apply to dataframe"
                        " models only; remove batch.passthrough")
    outputs = {item.get("name") for _, item in _items(doc.data, "outputs")}
    seen: set[str] = set()
    for i, name in enumerate(passthrough):
        if name in seen:
            yield doc.error(("batch", "passthrough", i), "E206", f"{name!r} is listed twice")
        elif name in outputs:
            yield doc.error(("batch", "passthrough", i), "E206", f"{name!r} is also an output;"
                            " the output table cannot hold both (rename one)")
        if isinstance(name, str):
            seen.add(name)


_PATHS: tuple[tuple[Loc, str, str], ...] = (
    (("model", "artifacts"), "dir", "the artifacts folder"),
    (("model", "requirements"), "file", "the requirements file"),
    (("model", "setup"), "file", "the setup script"),
    (("examples", "input"), "file", "the example input"),
    (("examples", "output"), "file", "the example output"),
)
_EXAMPLE_SUFFIXES = {"dataframe": (".json", ".csv", ".parquet"), "tensor": (".json", ".npz")}


def _check_paths(doc: Document, root: Path) -> Iterator[Diagnostic]:
    for loc, kind, what in _PATHS:
        value = _mapping(doc.data, *map(str, loc[:-1])).get(str(loc[-1]))
        if isinstance(value, str):
            yield from _check_path(doc, root, loc, value, kind, what)
    kind = _mapping(doc.data, "model").get("kind")
    for key in ("input", "output"):
        value = _mapping(doc.data, "examples").get(key)
        suffixes = _EXAMPLE_SUFFIXES.get(str(kind), ())
        if isinstance(value, str) and suffixes and not value.endswith(suffixes):
            yield doc.error(("examples", key), "E303", f"{value!r}: a {kind} example must be one"
                            f" of {', '.join(suffixes)}")
    entrypoint = _mapping(doc.data, "model").get("entrypoint")
    if isinstance(entrypoint, str) and ":" in entrypoint:
        yield from _check_module(doc, root, entrypoint.split(":")[0])


def _check_path(doc: Document, root: Path, loc: Loc, value: str, kind: str,
                what: str) -> Iterator[Diagnostic]:
    target = root / value
    try:
        resolved = target.resolve()
        resolved.relative_to(root.resolve())
    except ValueError:
        yield doc.error(loc, "E301", f"{value!r} resolves outside the spec's folder (through a"
                        " link); keep every file inside the folder of pyml.yaml")
        return
    exists = target.is_dir() if kind == "dir" else target.is_file()
    if not exists:
        yield doc.error(loc, "E302", f"{what} {value!r} does not exist (as a {kind}) in"
                        " the spec's folder; create it or fix the path")


def _check_module(doc: Document, root: Path, module: str) -> Iterator[Diagnostic]:
    base = root.joinpath(*module.split("."))
    if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
        shown = module.replace(".", "/")
        yield doc.error(("model", "entrypoint"), "E304", f"module {module!r} not found: expected"
                        f" {shown}.py beside pyml.yaml")


def _check_ports(doc: Document, root: Path) -> Iterator[Diagnostic]:
    serving = _mapping(doc.data, "serving")
    port, metrics = serving.get("port"), serving.get("metrics_port")
    if port is not None and port == metrics:
        yield doc.error(("serving", "metrics_port"), "E207", f"metrics_port {metrics} equals port;"
                        " choose another port")


def _check_python(doc: Document, root: Path) -> Iterator[Diagnostic]:
    python = _mapping(doc.data, "model").get("python")
    base = _mapping(doc.data, "image").get("base")
    if isinstance(python, str) and isinstance(base, str) and base.startswith("python:"):
        tag = base.split(":", 1)[1]
        if not tag.startswith(python):
            yield Diagnostic(doc.file, ("image", "base"), doc.position(("image", "base")),
                             Level.WARNING, "W001", f"base image {base!r} does not look like"
                             f" Python {python} (model.python); align the two")
