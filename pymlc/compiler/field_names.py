"""Stage 2b, validate: the rules for input and output names, beyond being identifiers (spec.py).

A name becomes a protobuf field, a Python attribute of the generated classes, a key of the
typed service's JSON form, an OIP tensor name and a Spark column. So names must differ exactly,
ignoring case (Spark, Hive) and as protobuf JSON names (E201), and must not be a name the
generated code already uses (E209): a member of protobuf's message classes (``HasField``), a
generated message (``DoubleColumn``), an alias the type stubs import, a block of a wide message
(``block_1``) or a field-number constant (``X_FIELD_NUMBER``). Such names are refused, not
mangled: a mangled name would differ between the spec, the proto and every client's code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from pydantic_core import PydanticCustomError

from ..runtime_stub.types import COLUMN_TYPES
from ..runtime_stub.wire import BLOCK_FIELDS, MESSAGES, TENSOR_MESSAGE, column_message
from .errors import Diagnostic, Loc
from .load import Document, items_at, mapping_at
from .spec import _identifier

__all__ = ["check_generated_names", "check_tensor_count", "check_unique_names"]


def check_unique_names(doc: Document, section: str) -> Iterator[Diagnostic]:
    """Names must differ exactly, case-insensitively (Spark, Hive) and as protobuf JSON names."""
    seen: dict[str, tuple[int, str]] = {}
    for i, item in items_at(doc.data, section):
        name = item.get("name")
        if not isinstance(name, str):
            continue
        loc: Loc = (section, i, "name")
        for key, why in ((name, ""), (name.lower(), " ignoring case (Spark and Hive column"
                         " names are case-insensitive)"), (_json_name(name), " as a protobuf JSON"
                         " name (camelCase)")):
            if key in seen:
                j, other = seen[key]
                yield doc.error(loc, "E201", f"duplicate name {name!r}: the same as {section}[{j}]"
                                f" ({other!r}){why}; names must be unique, rename one")
                break
        else:
            for key in {name, name.lower(), _json_name(name)}:
                seen[key] = (i, name)


def _json_name(name: str) -> str:
    """protoc's default JSON name: drop each '_' and capitalise the letter after it."""
    parts = name.split("_")
    return parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:]) + "\0json"


# Every member of a generated protobuf message class, in the upb and the pure-Python runtime
# (tests/adversarial/test_names.py derives them from protobuf itself): a field of that name
# hides the member, so `HasField` as a column made every typed Predict fail.
_PROTOBUF_MEMBERS = frozenset({
    "ByteSize", "Clear", "ClearExtension", "ClearField", "CopyFrom", "DESCRIPTOR",
    "DiscardUnknownFields", "Extensions", "FindInitializationErrors", "FromString",
    "HasExtension", "HasField", "IsInitialized", "ListFields", "MergeFrom", "MergeFromString",
    "ParseFromString", "RegisterExtension", "SerializePartialToString", "SerializeToString",
    "SetInParent", "UnknownFields", "WhichOneof", "_CheckCalledFromGeneratedFile",
    "_InternalParse", "_InternalSerialize", "_ListFieldsItemKey", "_Modified", "_SetListener",
    "_UpdateOneofState", "_cached_byte_size", "_cached_byte_size_dirty", "_fields",
    "_fields_by_tag", "_is_present_in_parent", "_listener", "_listener_for_children",
    "_message_set_decoders_by_tag", "_oneofs", "_unknown_fields",
})
# The aliases grpcio-tools' type stubs (.pyi) import: a field of that name shadows them there.
_STUB_ALIASES = frozenset({"_ClassVar", "_Iterable", "_Mapping", "_Optional", "_Union",
                           "_containers", "_descriptor", "_message"})
_GENERATED_MESSAGES = frozenset({*MESSAGES, TENSOR_MESSAGE,
                                 *(column_message(row.proto) for row in COLUMN_TYPES.values())})
_BLOCK_MESSAGE = re.compile(rf"^({'|'.join(MESSAGES)})Block\d+$")
_BLOCK_FIELD = re.compile(r"^block_?\d+$", re.IGNORECASE)  # block_1, and its JSON name block1


def check_generated_names(doc: Document, root: Path) -> Iterator[Diagnostic]:
    """Field names that the generated proto, stubs or Python classes already use."""
    for section in ("inputs", "outputs"):
        items = items_at(doc.data, section)
        taken = {str(item.get("name")).lower() for _, item in items}
        for i, item in items:
            name = item.get("name")
            if not isinstance(name, str) or _refused_by_spec(name):
                continue
            why = _generated_use(name)
            if why:
                yield doc.error((section, i, "name"), "E209", f"{name!r} {why}; rename it, e.g."
                                f" {_rename(name, taken - {name.lower()})!r}")


def _generated_use(name: str) -> str:
    if name in _PROTOBUF_MEMBERS:
        return (f"is a member of every protobuf message class (Message.{name}): a field of"
                " that name hides it and the typed service fails")
    if name in _GENERATED_MESSAGES or _BLOCK_MESSAGE.match(name):
        return "is the name of a message of the generated proto: it breaks the type stubs (.pyi)"
    if name in _STUB_ALIASES:
        return "is a name the generated type stubs (.pyi) import: it breaks them"
    if _BLOCK_FIELD.match(name):
        return ("is how the typed proto names the blocks of a wide message (block_1, block_2,"
                " ...)")
    if name.endswith("_FIELD_NUMBER") and name == name.upper():
        return ("is how protobuf names the field-number constants of the generated classes"
                " (X_FIELD_NUMBER for a field x)")
    return ""


def _refused_by_spec(name: str) -> bool:
    """Whether spec.py already reports the name (not an identifier, or a reserved word)."""
    with suppress(PydanticCustomError):
        _identifier(name)
        return False
    return True


def _rename(name: str, taken: set[str]) -> str:
    """A name in snake_case that nothing generated uses and no other field has."""
    base = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower().strip("_")[:50] or "column"
    candidates = (base, *(f"{base}_value{i or ''}" for i in range(len(taken) + 1)))
    return next(c for c in candidates if c not in taken and not _generated_use(c)
                and not _refused_by_spec(c))


def check_tensor_count(doc: Document, root: Path) -> Iterator[Diagnostic]:
    """A tensor model's messages stay flat: at most ``BLOCK_FIELDS`` tensors each."""
    if mapping_at(doc.data, "model").get("kind") != "tensor":
        return
    for section in ("inputs", "outputs"):
        items = items_at(doc.data, section)
        if len(items) > BLOCK_FIELDS:
            yield doc.error((section,), "E210", f"a tensor model has at most {BLOCK_FIELDS}"
                            f" {section}, got {len(items)}; stack tensors of one shape into one")
