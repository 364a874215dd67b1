"""Stage 2b, validate: the loaded document becomes a :class:`Spec`, or every problem is reported.

Pydantic errors are rewritten into messages that say what is wrong and how to fix it, and placed
at the line and column of the offending key or value. Then semantic passes check what relates
several fields: kind vs. field keys, unique names, paths that exist inside the spec's folder.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..runtime_stub.types import COLUMN_TYPES, TENSOR_DTYPES
from .errors import Diagnostic, Level, Loc, SpecError
from .field_names import check_generated_names, check_tensor_count, check_unique_names
from .load import Document, items_at, mapping_at
from .shipping import scan_model_folder
from .spec import _ENTRYPOINT, FORMAT_VERSION, Spec, _relative_path

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
        got = _describe(doc, (), doc.data)
        raise SpecError([doc.error((), "E007", f"the top level must be a mapping of keys such as"
                                   f" `name: ...`, got {got}; start from `pymlc init NAME`")])
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
    problem = _format_version(doc)
    if problem is not None:
        yield problem
        return  # a file of another format version would only produce noise below
    try:
        Spec.model_validate(doc.data)
    except ValidationError as exc:
        for error in exc.errors():
            yield _from_pydantic(doc, error)


def _format_version(doc: Document) -> Diagnostic | None:
    if "pyml" not in doc.data:
        return None  # reported by pydantic as a missing key
    version = doc.data["pyml"]
    if type(version) is int and version == FORMAT_VERSION:
        return None
    if type(version) is int:
        message = (f"unsupported format version {version}; this pymlc reads format"
                   f" {FORMAT_VERSION} only (upgrade pymlc, or write `pyml: {FORMAT_VERSION}`)")
    else:
        message = (f"expected the format version, the number {FORMAT_VERSION}, got"
                   f" {_describe(doc, ('pyml',), version)}; write `pyml: {FORMAT_VERSION}`")
    return doc.error(("pyml",), "E100", message)


# What to write when a required key is missing, by location (list indexes left out).
_REQUIRED_EXAMPLES = {
    ("pyml",): "pyml: 1",
    ("name",): "name: fare-estimator",
    ("version",): 'version: "1.0.0"',
    ("model",): "model: {kind: dataframe, entrypoint: model:MyModel}",
    ("model", "kind"): "kind: dataframe",
    ("model", "entrypoint"): "entrypoint: model:MyModel",
    ("inputs",): "inputs: [{name: x, type: float64}]",
    ("outputs",): "outputs: [{name: y, type: float64}]",
    ("inputs", "name"): "name: x",
    ("outputs", "name"): "name: y",
    ("examples", "input"): "input: examples/input.json",
}


def _from_pydantic(doc: Document, error: Any) -> Diagnostic:
    loc: Loc = tuple(error["loc"])
    kind: str = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return doc.error(loc, "E101", _unknown_key(loc), key=True)
    if kind == "missing":
        return doc.error(loc[:-1], "E102", _missing(loc), key=True)
    if kind in _TYPE_NAMES:
        return doc.error(loc, "E103", _wrong_type(doc, loc, kind, value))
    if kind in _BOUNDS:
        sign, key = _BOUNDS[kind]
        limit = error["ctx"][key]
        return doc.error(loc, "E104", f"must be {sign} {limit}, got {_describe(doc, loc, value)}")
    if kind == "literal_error":
        return doc.error(loc, "E105", _not_allowed(doc, loc, value, error["ctx"]["expected"]))
    if kind == "string_pattern_mismatch" and loc == ("name",):
        return doc.error(loc, "E106", f"model name {value!r} must be lowercase letters, digits and"
                         " '-', starting with a letter and not ending with '-'"
                         " (e.g. 'fare-estimator')")
    if kind == "string_too_long":
        return doc.error(loc, "E107", f"{value!r} is longer than {error['ctx']['max_length']}"
                         " characters; shorten it")
    if kind == "too_short":
        example = _REQUIRED_EXAMPLES.get(_shape(loc))
        hint = f", e.g. `{example}`" if example else ""
        return doc.error(loc, "E108", f"must list at least one item{hint}")
    if kind.startswith("pyml_"):
        return doc.error(loc, "E110", error["msg"])
    return doc.error(loc, "E199", f"{error['msg']} (got {_describe(doc, loc, value)})")


def _shape(loc: Loc) -> tuple[str, ...]:
    return tuple(part for part in loc if isinstance(part, str))


def _missing(loc: Loc) -> str:
    example = _REQUIRED_EXAMPLES.get(_shape(loc))
    hint = f", e.g. `{example}`" if example else ""
    return f"required key {loc[-1]!r} is missing; add it{hint}"


def _not_allowed(doc: Document, loc: Loc, value: Any, expected: str) -> str:
    choices = [c.strip().strip("'") for c in expected.replace(" or ", ", ").split(",")]
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6) if isinstance(
        value, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else f"; use {expected}"
    return f"{_describe(doc, loc, value)} is not allowed{hint}"


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


def _describe(doc: Document, loc: Loc, value: Any) -> str:
    """The value as the user wrote it, and what YAML made of it when that differs."""
    raw = doc.scalars.get(loc)
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{raw} (a boolean in YAML)" if raw and raw not in ("true", "false") else (
            str(value).lower())
    if isinstance(value, int | float):
        return f"the number {raw if raw is not None else value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_FLOAT_TEXT = re.compile(r"^([+-]?\d+)(?:\.(\d*))?[eE]([+-]?\d+)$")


def _wrong_type(doc: Document, loc: Loc, kind: str, value: Any) -> str:
    hint = _type_hint(doc, loc, kind, value)
    return f"expected {_TYPE_NAMES[kind]}, got {_describe(doc, loc, value)}{hint}"


def _type_hint(doc: Document, loc: Loc, kind: str, value: Any) -> str:
    raw = doc.scalars.get(loc)
    if value is None:
        example = _REQUIRED_EXAMPLES.get(_shape(loc))
        return f"; write e.g. `{example}`" if example else "; give it a value or remove the key"
    if kind == "list_type" and isinstance(value, dict):
        return "; start each item on its own line with '- '"
    if kind == "string_type" and isinstance(value, int | float) and raw is not None:
        problem = _quoted_problem(doc, loc, raw)
        return f"; {problem}" if problem else f'; quote it: "{raw}"'
    if not isinstance(value, str):
        return ""
    if kind == "bool_type" and value.lower() in ("true", "false"):
        return f"; remove the quotes: {value.lower()}"
    if kind == "int_type" and re.fullmatch(r"[+-]?\d+", value):
        return f"; remove the quotes: {int(value)}"
    if kind == "float_type":
        match = _FLOAT_TEXT.match(value)
        if match:  # YAML 1.1 reads 1e-6 as text: a float needs a dot
            whole, fraction, exponent = match.groups()
            return f"; YAML needs a dot in a number: write {whole}.{fraction or 0}e{exponent}"
        if re.fullmatch(r"[+-]?\d+(\.\d*)?", value):
            return f"; remove the quotes: {value}"
    return ""


def _quoted_problem(doc: Document, loc: Loc, raw: str) -> str | None:
    """What would still be wrong if the user quoted ``raw``: e.g. ``1.4`` is no semver."""
    model = _model_at(loc[:-1])
    field = model.model_fields.get(loc[-1]) if model and isinstance(loc[-1], str) else None
    if field is None:
        return None
    try:
        TypeAdapter(field.rebuild_annotation()).validate_python(raw)
    except ValidationError as exc:
        inner = _from_pydantic(doc, {**exc.errors()[0], "loc": loc})
        return inner.message
    return None


# --- semantic: relations between fields -------------------------------------------------------

Check = Callable[[Document, Path], Iterator[Diagnostic]]


def _semantic(doc: Document, root: Path) -> Iterator[Diagnostic]:
    checks: tuple[Check, ...] = (_check_fields, check_generated_names, check_tensor_count,
                                 _check_passthrough, _check_paths, _check_links, _check_serving,
                                 _check_python)
    for check in checks:
        yield from check(doc, root)


_mapping = mapping_at
_items = items_at


_COLUMN_KEYS = ("type", "nullable")
_TENSOR_KEYS = ("dtype", "shape")


def _check_fields(doc: Document, root: Path) -> Iterator[Diagnostic]:
    kind = _mapping(doc.data, "model").get("kind")
    for section in ("inputs", "outputs"):
        yield from check_unique_names(doc, section)
        for i, item in _items(doc.data, section):
            loc: Loc = (section, i)
            if kind == "dataframe":
                yield from _kind_keys(doc, loc, item, "dataframe", _TENSOR_KEYS, "type")
            elif kind == "tensor":
                yield from _kind_keys(doc, loc, item, "tensor", _COLUMN_KEYS, "dtype")
                yield from _check_shape(doc, loc, item)


def _kind_keys(doc: Document, loc: Loc, item: dict[str, Any], kind: str,
               foreign: tuple[str, ...], required: str) -> Iterator[Diagnostic]:
    for key in foreign:
        if key in item:
            own = "type (and nullable)" if kind == "dataframe" else "dtype and shape"
            yield doc.error((*loc, key), "E202", f"{key!r} is a {_other(kind)} field, but"
                            f" model.kind is {kind}; a {kind} model's fields use {own}", key=True)
    if required not in item:
        choices = ", ".join(COLUMN_TYPES if kind == "dataframe" else TENSOR_DTYPES)
        yield doc.error(loc, "E203", f"a {kind} model's field needs {required!r}; add it, one of:"
                        f" {choices}", key=True)
    if kind == "tensor" and "shape" not in item:
        yield doc.error(loc, "E203", "a tensor model's field needs 'shape'; add it, e.g."
                        " `shape: [-1, 28, 28]` (-1 = any size)", key=True)


def _other(kind: str) -> str:
    return "tensor" if kind == "dataframe" else "dataframe column"


def _check_shape(doc: Document, loc: Loc, item: dict[str, Any]) -> Iterator[Diagnostic]:
    shape = item.get("shape")
    if not isinstance(shape, list):
        return
    if not 1 <= len(shape) <= 8:
        yield doc.error((*loc, "shape"), "E204", f"a shape has 1 to 8 dimensions, got {len(shape)};"
                        " e.g. [-1, 28, 28] (-1 = any size)")
    for j, dim in enumerate(shape):
        if isinstance(dim, int) and not isinstance(dim, bool) and (dim == 0 or dim < -1):
            yield doc.error((*loc, "shape", j), "E204", f"dimension {dim} is invalid; use a size"
                            " >= 1, or -1 for any size")


def _check_passthrough(doc: Document, root: Path) -> Iterator[Diagnostic]:
    passthrough = _mapping(doc.data, "batch").get("passthrough")
    if not isinstance(passthrough, list):
        return
    outputs = {str(item.get("name")).lower(): item.get("name")
               for _, item in _items(doc.data, "outputs")}
    seen: set[str] = set()
    for i, name in enumerate(passthrough):
        if not isinstance(name, str):
            continue
        if name.lower() in seen:
            yield doc.error(("batch", "passthrough", i), "E206", f"{name!r} is listed twice;"
                            " remove one")
        elif name.lower() in outputs:
            yield doc.error(("batch", "passthrough", i), "E206", f"passthrough column {name!r}"
                            f" clashes with output {outputs[name.lower()]!r}; the output table"
                            " cannot hold both (rename the output, or drop the passthrough)")
        seen.add(name.lower())


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
        if isinstance(value, str) and _is_relative_path(value):
            yield from _check_path(doc, root, loc, value, kind, what)
    model_kind = _mapping(doc.data, "model").get("kind")
    suffixes = _EXAMPLE_SUFFIXES.get(str(model_kind), ())
    for key in ("input", "output"):
        value = _mapping(doc.data, "examples").get(key)
        if (isinstance(value, str) and _is_relative_path(value) and suffixes
                and not value.endswith(suffixes)):
            yield doc.error(("examples", key), "E303", f"{value!r}: a {model_kind} model's"
                            f" example must be a {', '.join(suffixes)} file; convert it or fix"
                            " the path")
    entrypoint = _mapping(doc.data, "model").get("entrypoint")
    if isinstance(entrypoint, str) and _ENTRYPOINT.match(entrypoint):
        yield from _check_module(doc, root, entrypoint.split(":")[0])


def _is_relative_path(value: str) -> bool:
    """Whether the syntax check in spec.py passes (else that check has already reported it)."""
    try:
        _relative_path(value)
    except ValueError:
        return False
    return True


def _inside(root: Path, target: Path) -> bool:
    return target.resolve().is_relative_to(root.resolve())


def _check_path(doc: Document, root: Path, loc: Loc, value: str, kind: str,
                what: str) -> Iterator[Diagnostic]:
    target = root / value
    if not _inside(root, target):
        yield doc.error(loc, "E301", f"{what} {value!r} resolves outside the spec's folder"
                        " through a symbolic link; keep every file inside the folder of"
                        " pyml.yaml (copy it in instead of linking)")
        return
    if kind == "dir" and target.is_file():
        yield doc.error(loc, "E302", f"{what} {value!r} is a file; point it at a folder")
    elif kind == "file" and target.is_dir():
        yield doc.error(loc, "E302", f"{what} {value!r} is a folder; point it at a file")
    elif not target.exists():
        yield doc.error(loc, "E302", f"{what} {value!r} does not exist in the spec's folder;"
                        " create it or fix the path")


def _check_module(doc: Document, root: Path, module: str) -> Iterator[Diagnostic]:
    base = root.joinpath(*module.split("."))
    found = [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()]
    shown = module.replace(".", "/")
    if not found:
        yield doc.error(("model", "entrypoint"), "E304", f"module {module!r} not found: expected"
                        f" {shown}.py (or {shown}/__init__.py) beside pyml.yaml; create it or"
                        " fix the entrypoint")
    elif not _inside(root, found[0]):
        yield doc.error(("model", "entrypoint"), "E301", f"module {module!r} resolves outside the"
                        " spec's folder through a symbolic link; keep the model code inside the"
                        " folder of pyml.yaml")


def _check_links(doc: Document, root: Path) -> Iterator[Diagnostic]:
    """Every symbolic link the image would ship must stay inside the folder (not only the paths
    the spec names: those are checked above, with their own position)."""
    named = {posixpath.normpath(value) for value in _named_paths(doc)}
    for link in scan_model_folder(root, contents=False).outside:
        if link.path not in named:
            yield doc.error((), "E301", link.message())


def _named_paths(doc: Document) -> Iterator[str]:
    for loc, _kind, _what in _PATHS:
        value = _mapping(doc.data, *map(str, loc[:-1])).get(str(loc[-1]))
        if isinstance(value, str):
            yield value
    entrypoint = _mapping(doc.data, "model").get("entrypoint")
    if isinstance(entrypoint, str):
        module = entrypoint.split(":")[0].replace(".", "/")
        yield from (f"{module}.py", f"{module}/__init__.py")


# Folders of the image the serving stage must not chown to the model's user.
_SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64",
                "/opt", "/opt/pyml", "/proc", "/root", "/sbin", "/sys", "/usr", "/var")


def _check_serving(doc: Document, root: Path) -> Iterator[Diagnostic]:
    serving = _mapping(doc.data, "serving")
    port, metrics = serving.get("port"), serving.get("metrics_port")
    if port is not None and port == metrics:
        yield doc.error(("serving", "metrics_port"), "E207", f"metrics_port {metrics} equals port;"
                        " choose another port")
    socket = serving.get("socket")
    if isinstance(socket, str) and socket.startswith("/"):
        folder = posixpath.dirname(socket.rstrip("/")) or "/"
        system = [d for d in _SYSTEM_DIRS if folder == d or (
            d not in ("/", "/opt", "/home", "/var") and folder.startswith(d + "/"))]
        if system or socket.endswith("/"):
            yield doc.error(("serving", "socket"), "E208", f"socket {socket!r} must be a file in a"
                            " folder of its own (the image gives that folder to the model's"
                            " user), not in a system folder; e.g. /run/pyml/model.sock")


def _check_python(doc: Document, root: Path) -> Iterator[Diagnostic]:
    python = _mapping(doc.data, "model").get("python")
    base = _mapping(doc.data, "image").get("base")
    if isinstance(python, str) and isinstance(base, str) and base.startswith("python:"):
        tag = base.split(":", 1)[1]
        if not tag.startswith(python):
            yield Diagnostic(doc.file, ("image", "base"), doc.position(("image", "base")),
                             Level.WARNING, "W001", f"base image {base!r} does not look like"
                             f" Python {python} (model.python); align the two")
