"""Stage 1, load: read a YAML file into plain data plus a position for every node.

Only YAML's core schema is understood. The document is *composed* (a node graph), never
*constructed*, so a ``!!python/...`` tag is reported and never executed. Aliases are allowed, but
the expanded document is bounded, so an alias bomb is refused after a few thousand nodes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Diagnostic, Level, Loc, Position, SpecError

__all__ = ["MAX_NODES", "Document", "load_document", "parse_document"]

MAX_NODES = 20_000
MAX_BYTES = 1 << 20

_CORE_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


@dataclass
class Document:
    """A loaded YAML document.

    Attributes:
        file: the file name as the user gave it (used in diagnostics).
        data: the plain Python value (dicts, lists, scalars).
        values: position of the value at each location.
        keys: position of the key at each mapping location (for unknown-key errors).
        text: the source text, LF line endings.
    """

    file: str
    data: Any
    text: str
    values: dict[Loc, Position] = field(default_factory=dict)
    keys: dict[Loc, Position] = field(default_factory=dict)

    def position(self, loc: Loc, *, key: bool = False) -> Position | None:
        """The position of ``loc``, or of its closest existing parent."""
        table = self.keys if key else self.values
        for end in range(len(loc), -1, -1):
            found = table.get(loc[:end]) or self.values.get(loc[:end])
            if found is not None:
                return found
        return None

    def error(self, loc: Loc, code: str, message: str, *, key: bool = False) -> Diagnostic:
        return Diagnostic(self.file, loc, self.position(loc, key=key), Level.ERROR, code, message)


def _pos(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, doc: Document, loader: yaml.SafeLoader) -> None:
        self.doc = doc
        self.loader = loader
        self.count = 0
        self.problems: list[Diagnostic] = []

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge(node)
        self.doc.values.setdefault(loc, _pos(node))
        if node.tag not in _CORE_TAGS:
            self.problems.append(self.doc.error(
                loc, "E002", f"unsupported YAML tag {node.tag!r}; pyml.yaml holds plain data only"
                " (remove the tag)"))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, datetime.date):
            # A bare date would silently become a date object; keep what the user wrote.
            return str(node.value)
        return value

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)  # resolves `<<` merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.build(key_node, (*loc, "<key>"))
            if not isinstance(key, str):
                self.problems.append(self.doc.error(
                    loc, "E003", f"mapping key {key!r} must be a string", key=True))
                continue
            child = (*loc, key)
            if key in result:
                self.problems.append(Diagnostic(
                    self.doc.file, child, _pos(key_node), Level.ERROR, "E004",
                    f"duplicate key {key!r}; each key may appear once (remove one)"))
                continue
            self.doc.keys[child] = _pos(key_node)
            self.doc.values[child] = _pos(value_node)
            result[key] = self.build(value_node, child)
        self.doc.values.pop((*loc, "<key>"), None)
        return result


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def parse_document(text: str, file: str) -> Document:
    """Parse YAML text into a :class:`Document`.

    Raises:
        SpecError: the text is not YAML, is empty, is too large, or uses unsupported tags.
    """
    text = text.replace("\r\n", "\n")
    doc = Document(file=file, data=None, text=text)
    if len(text.encode()) > MAX_BYTES:
        raise SpecError([doc.error((), "E001", f"file is larger than {MAX_BYTES} bytes")])
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([Diagnostic(file, (), Position(1, 1), Level.ERROR, "E005",
                                        "the file is empty; start from `pymlc init NAME`")])
        builder = _Builder(doc, loader)
        doc.data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = Position(mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise SpecError([Diagnostic(file, (), position, Level.ERROR, "E001",
                                    f"invalid YAML: {problem}{context}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([doc.error((), "E001", f"invalid YAML: {exc}")]) from None
    except _TooLarge as exc:
        raise SpecError([Diagnostic(
            file, (), _pos(exc.node), Level.ERROR, "E006",
            f"the document expands to more than {MAX_NODES} nodes (an alias bomb?);"
            " write the values out instead of repeating aliases")]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise SpecError(builder.problems)
    return doc


def load_document(path: Path, display: str | None = None) -> Document:
    """Read and parse the YAML file at ``path``; ``display`` names it in diagnostics."""
    name = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError([Diagnostic(name, (), None, Level.ERROR, "E000",
                                    f"cannot read the file: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Diagnostic(name, (), None, Level.ERROR, "E001",
                                    f"the file is not UTF-8 (byte {exc.start})")]) from None
    return parse_document(text, name)
