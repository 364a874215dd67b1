"""Schema evolution: classify every difference between two versions of a spec (``pymlc diff``).

A change is *breaking* when a client or caller written against the old spec can fail, or worse
silently misread data, against the new one. Clients see the model through the typed gRPC
service (``proto/<pkg>.proto``), the Open Inference Protocol and the batch job's tables, so
the rules are those of the strictest of the three:

* inputs: removing one, adding a non-nullable one, making one non-nullable, changing a type
  other than by a safe widening (``widens_to`` in the type table) are breaking;
* outputs: removing one, any type change (clients decode the old type), making one nullable;
* tensors: any dtype change, any fixed dimension change, a rank change, and on inputs a
  size that becomes fixed; a fixed input dimension becoming ``-1`` is compatible;
* the model's kind or name; a field whose protobuf number changes or is reused (``pyml.lock``);
* a ``batch.passthrough`` column removed: readers of the output table lose it.

The compatible changes are compatible on the typed wire too, by construction of the generated
proto: every column is a ``<T>Column{values, nulls}`` message whether nullable or not, and each
``widens_to`` step keeps the wire type (int8..int32 travel as int32, a varint like int64;
float32 travels as double). ``tests/compiler/test_diff.py`` proves it with real stubs. The
server keeps the rest of the promise: a request without a nullable input (an old client's) is
null in that column, OIP inputs of a narrower type are widened, and a ``.nulls`` output once
promised is still answered; ``tests/adversarial/test_compat.py`` calls a real server of each
new spec with the old spec's stubs and with tritonclient.

Everything else (descriptions, examples, serving, batch and image settings, minor and patch
versions) is compatible. A major version bump gives a new proto package ``pyml.<name>.v<major>``,
i.e. a new service beside the old one: breaking changes are then expected (``major_bumped``).

All functions are pure; changes are sorted by path, then kind, then message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..runtime_stub.types import COLUMN_TYPES, TENSOR_DTYPES
from .lock import Lock, LockedMessage, update_lock
from .spec import FieldSpec, Spec

__all__ = ["Change", "diff_specs", "major", "major_bumped", "proto_package"]

# Top-level sections whose settings never change the model's API, compared key by key.
_SETTINGS = ("examples", "serving", "batch", "image")
_MODEL_SETTINGS = ("entrypoint", "artifacts", "requirements", "setup", "python")


@dataclass(frozen=True, order=True)
class Change:
    """One difference between two specs.

    Attributes:
        path: where, in the spec's terms: ``inputs.city.type``, ``serving.port``, ``version``.
        kind: a stable identifier of the rule, e.g. ``input-removed``, ``type-widened``.
        breaking: whether clients of the old spec can break.
        message: what changed and, when breaking, why it matters.
    """

    path: str
    kind: str
    breaking: bool
    message: str

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind, "breaking": self.breaking,
                "message": self.message}


def major(spec: Spec) -> int:
    """The major version of the spec's semver."""
    return int(spec.version.split(".")[0])


def major_bumped(old: Spec | None, new: Spec) -> bool:
    """True when ``new`` has a higher major version than ``old`` (a new proto service)."""
    return old is not None and major(new) > major(old)


def proto_package(spec: Spec) -> str:
    """The proto package of the spec's typed service; the major version is part of it."""
    return f"pyml.{spec.name.replace('-', '_')}.v{major(spec)}"


def diff_specs(old: Spec | None, new: Spec, *, old_lock: Lock | None = None,
               new_lock: Lock | None = None) -> list[Change]:
    """Every change from ``old`` to ``new``, sorted; ``old`` None means a new model.

    The locks, when both are given, catch protobuf field numbers that changed or were reused.
    """
    if old is None:
        return sorted(_new_model(new))
    changes = [
        *_identity(old, new),
        *_fields(old, new),
        *_locks(old, new, old_lock, new_lock),
        *_settings(old, new),
    ]
    return sorted(changes)


def _new_model(new: Spec) -> Iterator[Change]:
    yield Change("", "model-added", False, f"new model {new.name!r} {new.version}"
                 f" (proto package {proto_package(new)}); it has no clients yet")
    for section in ("inputs", "outputs"):
        for field in getattr(new, section):
            yield Change(f"{section}.{field.name}", f"{section[:-1]}-added", False,
                         f"{_singular(section)} {field.name!r} added with the new model")


# --- identity: name, kind, version --------------------------------------------------------

def _identity(old: Spec, new: Spec) -> Iterator[Change]:
    if old.name != new.name:
        yield Change("name", "name-changed", True, f"model name {old.name!r} -> {new.name!r}:"
                     f" the proto package becomes {proto_package(new)} and the image, service and"
                     " table names change; clients of the old name break")
    if old.model.kind != new.model.kind:
        yield Change("model.kind", "kind-changed", True, f"model kind {old.model.kind} ->"
                     f" {new.model.kind}: every field changes encoding; clients break")
    if old.version != new.version:
        yield _version(old, new)


def _version(old: Spec, new: Spec) -> Change:
    text = f"version {old.version} -> {new.version}"
    if major(new) > major(old):
        return Change("version", "major-bump", False, f"{text}: a major bump, so the typed API is"
                      f" a new service, proto package {proto_package(new)} beside"
                      f" {proto_package(old)}; breaking changes are expected, and clients of"
                      f" v{major(old)} work only while a v{major(old)} deployment is kept")
    if major(new) < major(old):
        return Change("version", "major-lowered", True, f"{text}: the major version went down,"
                      f" so proto package {proto_package(new)} is reused for a different API")
    return Change("version", "version-changed", False, text)


# --- inputs and outputs -------------------------------------------------------------------

def _fields(old: Spec, new: Spec) -> Iterator[Change]:
    same_kind = old.model.kind == new.model.kind
    for section in ("inputs", "outputs"):
        before = {f.name: f for f in getattr(old, section)}
        after = {f.name: f for f in getattr(new, section)}
        for name in before.keys() - after.keys():
            yield _removed(section, before[name])
        for name in after.keys() - before.keys():
            yield _added(section, after[name], new.model.kind)
        for name in before.keys() & after.keys():
            if same_kind:
                yield from _field(section, before[name], after[name], new.model.kind)
        if same_kind:
            yield from _order(section, list(before), list(after))


def _singular(section: str) -> str:
    return section[:-1]


def _removed(section: str, field: FieldSpec) -> Change:
    who = "callers still send it" if section == "inputs" else "clients still read it"
    return Change(f"{section}.{field.name}", f"{_singular(section)}-removed", True,
                  f"{_singular(section)} {field.name!r} removed; {who}")


def _added(section: str, field: FieldSpec, kind: str) -> Change:
    path, what = f"{section}.{field.name}", f"{_singular(section)} {field.name!r} added"
    if section == "outputs":
        return Change(path, "output-added", False, what)
    if kind == "dataframe" and field.nullable:
        return Change(path, "input-added", False, f"{what}, nullable: old callers leave it out"
                      " and the model sees nulls")
    return Change(path, "input-added", True, f"{what}, required: old callers do not send it"
                  + ("" if kind == "tensor" else " (make it nullable to stay compatible)"))


def _field(section: str, old: FieldSpec, new: FieldSpec, kind: str) -> Iterator[Change]:
    path = f"{section}.{old.name}"
    if old.description != new.description:
        yield Change(f"{path}.description", "description-changed", False, "description changed")
    if kind == "tensor":
        yield from _tensor(section, path, old, new)
    else:
        yield from _column(section, path, old, new)


def _column(section: str, path: str, old: FieldSpec, new: FieldSpec) -> Iterator[Change]:
    old_type, new_type = old.type or "", new.type or ""
    if old_type != new_type:
        yield _type_change(section, f"{path}.type", old_type, new_type)
    if bool(old.nullable) != bool(new.nullable):
        yield _nullability(section, f"{path}.nullable", bool(new.nullable))


def _type_change(section: str, path: str, old: str, new: str) -> Change:
    text = f"type {old} -> {new}"
    if section == "outputs":
        return Change(path, "type-changed", True, f"{text}: clients decode the old type")
    if new not in COLUMN_TYPES[old].widens_to:
        return Change(path, "type-changed", True, f"{text} is not a safe widening; callers"
                      f" send {old} values")
    return Change(path, "type-widened", False, f"{text}: a safe widening")


def _nullability(section: str, path: str, nullable: bool) -> Change:
    if section == "inputs" and not nullable:
        return Change(path, "made-required", True, "input made non-nullable: callers may send"
                      " nulls")
    if section == "outputs" and nullable:
        return Change(path, "made-nullable", True, "output made nullable: clients do not"
                      " expect nulls")
    what = "input made nullable" if nullable else "output made non-nullable"
    return Change(path, "made-nullable" if nullable else "made-required", False,
                  f"{what}: every old value stays valid")


def _tensor(section: str, path: str, old: FieldSpec, new: FieldSpec) -> Iterator[Change]:
    if old.dtype != new.dtype:
        row = TENSOR_DTYPES.get(old.dtype or "")
        widening = row is not None and new.dtype in row.widens_to
        note = (" (a widening of the values, but tensors travel as raw bytes of the exact"
                " dtype)" if widening else "")
        yield Change(f"{path}.dtype", "dtype-changed", True,
                     f"dtype {old.dtype} -> {new.dtype}{note}: old clients send or read"
                     f" {old.dtype} bytes")
    yield from _shape(section, f"{path}.shape", list(old.shape or ()), list(new.shape or ()))


def _shape(section: str, path: str, old: list[int], new: list[int]) -> Iterator[Change]:
    if old == new:
        return
    text = f"shape {old} -> {new}"
    if len(old) != len(new):
        yield Change(path, "rank-changed", True, f"{text}: the number of dimensions changed")
        return
    for i, (a, b) in enumerate(zip(old, new, strict=True)):
        if a == b:
            continue
        where = f"{path}[{i}]"
        if section == "inputs" and b == -1:
            yield Change(where, "dim-relaxed", False, f"{text}: dimension {i} accepts any size")
        elif section == "outputs" and a == -1:
            yield Change(where, "dim-fixed", False, f"{text}: dimension {i} is now always {b}")
        elif section == "inputs":
            yield Change(where, "dim-changed", True, f"{text}: dimension {i} must now be {b};"
                         " old callers send other sizes")
        else:
            yield Change(where, "dim-changed", True, f"{text}: dimension {i} is no longer"
                         f" always {a}; clients expect it")


def _order(section: str, before: Sequence[str], after: Sequence[str]) -> Iterator[Change]:
    kept = set(before) & set(after)
    old_order = [n for n in before if n in kept]
    new_order = [n for n in after if n in kept]
    if old_order != new_order:
        yield Change(section, "order-changed", False, f"{section} reordered; fields are matched"
                     " by name and protobuf number, never by position")


# --- field numbers (pyml.lock) ------------------------------------------------------------

def _locks(old: Spec, new: Spec, old_lock: Lock | None,
           new_lock: Lock | None) -> Iterator[Change]:
    if old_lock is None or new_lock is None:
        return
    # Compare the locks as the next build would write them, so a stale lock cannot hide a
    # renumbering that the build is about to make.
    before = _effective(old, old_lock)
    after = _effective(new, new_lock)
    for section in ("inputs", "outputs"):
        yield from _numbers(section, before.section(section), after.section(section))


def _effective(spec: Spec, lock: Lock) -> Lock:
    return update_lock(lock, [f.name for f in spec.inputs], [f.name for f in spec.outputs])


def _numbers(section: str, old: LockedMessage, new: LockedMessage) -> Iterator[Change]:
    before = dict(old.fields)
    owner = {number: name for name, number in (*old.fields, *old.reserved)}
    for name, number in new.fields:
        path = f"{section}.{name}"
        if name in before and before[name] != number:
            yield Change(path, "number-changed", True, f"protobuf field number {before[name]} ->"
                         f" {number} (pyml.lock): old stubs use {before[name]}; restore the lock"
                         " from version control")
        elif name not in before and owner.get(number, name) != name:
            yield Change(path, "number-reused", True, f"protobuf field number {number} belonged"
                         f" to {owner[number]!r} (pyml.lock): old stubs would read one as the"
                         " other; restore the lock from version control")


# --- settings that never change the API ---------------------------------------------------

def _settings(old: Spec, new: Spec) -> Iterator[Change]:
    if old.description != new.description:
        yield Change("description", "description-changed", False, "description changed")
    for key in _MODEL_SETTINGS:
        yield from _setting(f"model.{key}", getattr(old.model, key), getattr(new.model, key))
    for section in _SETTINGS:
        before, after = _dump(getattr(old, section)), _dump(getattr(new, section))
        for key in sorted(before.keys() | after.keys()):
            if (section, key) == ("batch", "passthrough"):
                yield from _passthrough(before.get(key) or [], after.get(key) or [])
            else:
                yield from _setting(f"{section}.{key}", before.get(key), after.get(key))


def _passthrough(old: list[str], new: list[str]) -> Iterator[Change]:
    """Passthrough columns are columns of the output table, which readers select by name."""
    for name in sorted(set(old) - set(new)):
        yield Change(f"batch.passthrough.{name}", "passthrough-removed", True,
                     f"passthrough column {name!r} removed: readers of the output table still"
                     " select it")
    for name in sorted(set(new) - set(old)):
        yield Change(f"batch.passthrough.{name}", "passthrough-added", False,
                     f"passthrough column {name!r} added to the output table")
    if [n for n in old if n in new] != [n for n in new if n in old]:
        yield Change("batch.passthrough", "setting-changed", False, "passthrough columns"
                     " reordered")


def _dump(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    dumped: dict[str, Any] = value.model_dump(exclude_none=True)
    return dumped


def _setting(path: str, old: Any, new: Any) -> Iterator[Change]:
    if old != new:
        yield Change(path, "setting-changed", False, f"{_show(old)} -> {_show(new)}")


def _show(value: Any) -> str:
    return "(unset)" if value is None else repr(value)
