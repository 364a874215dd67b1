"""Stage 1, load: read a YAML file into plain data plus a position for every node.

Only YAML's core schema is understood. The document is *composed* (a node graph), never
*constructed*, so a ``!!python/...`` tag is reported and never executed. Aliases and merge keys
are allowed, but what they add to the document is measured before anything is expanded, so an
alias bomb (or a recursive alias) is refused in milliseconds; nesting depth is bounded too, so a
``[[[[...]]]]`` file cannot exhaust the interpreter's stack. The nodes written out in the file are
bounded by its size only: a 10,000-column spec is ~70,000 nodes and no bomb.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Diagnostic, Level, Loc, Position, SpecError

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "Document",
    "items_at",
    "load_document",
    "mapping_at",
    "parse_document",
]

# Nodes that aliases and merge keys may add to those written in the file (a shared column
# template merged into 10,000 columns adds ~50,000).
MAX_ALIAS_NODES = 100_000
MAX_BYTES = 4 << 20  # 10,000 columns with a description each: ~1.5 MB
MAX_DEPTH = 64

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
        scalars: the source text of each scalar, as written (``3.10`` where data holds 3.1),
            so that a message can show what the user typed.
        text: the source text, LF line endings.
    """

    file: str
    data: Any
    text: str
    values: dict[Loc, Position] = field(default_factory=dict)
    keys: dict[Loc, Position] = field(default_factory=dict)
    scalars: dict[Loc, str] = field(default_factory=dict)

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


def mapping_at(data: Any, *keys: str) -> dict[str, Any]:
    """The mapping under ``keys`` of loaded data, or {} where the file has none (yet)."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def items_at(data: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    """The mappings in the list under ``key``, with their indexes (others are skipped)."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _pos(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """The safe loader, composing only; refuses nesting deeper than ``MAX_DEPTH``."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(mark, "E006", _TOO_DEEP)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # Refused here, in the scanner, because PyYAML looks ~1000 characters ahead for each
        # open bracket (a possible simple key): `[[[[...` would cost a second before compose.
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(self.get_mark(), "E006", _TOO_DEEP)
        super().fetch_flow_collection_start(TokenClass)


_TOO_DEEP = f"the document is nested more than {MAX_DEPTH} levels deep; pyml.yaml needs only a few"


class _Refused(Exception):
    def __init__(self, mark: yaml.Mark, code: str, message: str) -> None:
        self.position = Position(mark.line + 1, mark.column + 1)
        self.code = code
        self.message = message


def _measure(root: yaml.Node) -> int:
    """Refuse a graph that contains itself, or whose aliases add more than ``MAX_ALIAS_NODES``.

    Returns:
        How many nodes the expanded document may have: those written out plus the alias budget.
    """
    order = _distinct_post_order(root)
    budget = len(order) + MAX_ALIAS_NODES
    # Every node is reachable from the root, so no expansion is larger than the whole one: the
    # first node over budget (children come first) is where the bomb goes off. Sizes never grow
    # past the budget, so a bomb's astronomic sizes are never computed.
    size: dict[int, int] = {}
    for node in order:
        size[id(node)] = 1 + sum(size[id(c)] for c in _children(node))
        if size[id(node)] > budget:
            raise _Refused(node.start_mark, "E006", _TOO_LARGE)
    return budget


def _distinct_post_order(root: yaml.Node) -> list[yaml.Node]:
    """Each node once, children before parents; refuses a node that contains itself."""
    order: list[yaml.Node] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, done = stack.pop()
        if done:
            open_nodes.discard(id(node))
            order.append(node)
            continue
        if id(node) in seen:
            if id(node) in open_nodes:
                raise _Refused(node.start_mark, "E006", "an alias refers to the node that contains"
                               " it (a recursive alias); write the values out instead")
            continue
        seen.add(id(node))
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    return order


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


_TOO_LARGE = (f"aliases expand the document by more than {MAX_ALIAS_NODES} nodes (an alias"
              " bomb?); write the values out instead of repeating aliases")


class _Builder:
    def __init__(self, doc: Document, loader: yaml.SafeLoader, budget: int) -> None:
        self.doc = doc
        self.loader = loader
        self.budget = budget
        self.count = 0
        self.problems: list[Diagnostic] = []

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        if self.count > self.budget:  # a second guard; _measure() has already bounded this
            raise _Refused(node.start_mark, "E006", _TOO_LARGE)
        self.doc.values.setdefault(loc, _pos(node))
        if node.tag not in _CORE_TAGS:
            self.problems.append(Diagnostic(
                self.doc.file, loc, _pos(node), Level.ERROR, "E002",
                f"unsupported YAML tag {node.tag!r}; pyml.yaml holds plain data only"
                " (remove the tag; it is never executed)"))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        self.doc.scalars.setdefault(loc, str(node.value))
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, datetime.date):
            # A bare date would silently become a date object; keep what the user wrote.
            return str(node.value)
        return value

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        own = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
        self.loader.flatten_mapping(node)  # resolves `<<` merge keys: merged pairs come first
        result: dict[Any, Any] = {}
        written: dict[Any, bool] = {}  # key -> whether it was written in this mapping itself
        for key_node, value_node in node.value:
            key = self.build(key_node, (*loc, "<key>"))
            if not isinstance(key, str):
                shown = "nothing" if key is None else repr(key)
                self.problems.append(Diagnostic(
                    self.doc.file, loc, _pos(key_node), Level.ERROR, "E003",
                    f"mapping key {shown} must be a plain word such as 'name'"))
                continue
            child = (*loc, key)
            if written.get(key):
                self.problems.append(Diagnostic(
                    self.doc.file, child, _pos(key_node), Level.ERROR, "E004",
                    f"duplicate key {key!r}; each key may appear once (remove one)"))
                continue
            # A key written here overrides the same key merged in with `<<`.
            written[key] = id(key_node) in own
            self.doc.keys[child] = _pos(key_node)
            self.doc.values[child] = _pos(value_node)
            self.doc.scalars.pop(child, None)  # a merged value may have been overridden
            result[key] = self.build(value_node, child)
        self.doc.values.pop((*loc, "<key>"), None)
        self.doc.scalars.pop((*loc, "<key>"), None)
        return result


def parse_document(text: str, file: str) -> Document:
    """Parse YAML text into a :class:`Document`.

    Raises:
        SpecError: the text is not YAML, is empty, is too large or too deep, or uses
            unsupported tags.
    """
    text = text.replace("\r\n", "\n")
    doc = Document(file=file, data=None, text=text)
    if len(text.encode()) > MAX_BYTES:
        raise SpecError([doc.error((), "E001", f"the file is larger than {MAX_BYTES} bytes;"
                                   " a spec is a page of YAML")])
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None or (node.tag == "tag:yaml.org,2002:null" and not node.value):
            raise SpecError([Diagnostic(file, (), Position(1, 1), Level.ERROR, "E005",
                                        "the file is empty; start from `pymlc init NAME`")])
        builder = _Builder(doc, loader, _measure(node))
        doc.data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_yaml_error(file, exc)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([doc.error((), "E001", f"invalid YAML: {exc}")]) from None
    except _Refused as exc:
        raise SpecError([Diagnostic(file, (), exc.position, Level.ERROR, exc.code,
                                    exc.message)]) from None
    except RecursionError:  # a last resort; MAX_DEPTH and _measure() should prevent it
        raise SpecError([doc.error((), "E006", "the document is nested too deeply")]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise SpecError(builder.problems)
    return doc


def _yaml_error(file: str, exc: yaml.MarkedYAMLError) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    position = Position(mark.line + 1, mark.column + 1) if mark else None
    problem = exc.problem or "not valid YAML"
    start = exc.context_mark
    where = f" (started at {start.line + 1}:{start.column + 1})" if start else ""
    if exc.context and problem.startswith("but "):  # "expected X ..., but found Y"
        message = f"{exc.context}{where}, {problem}"
    elif exc.context:
        message = f"{problem} ({exc.context}{where.replace(' (', ' ').rstrip(')')})"
    else:
        message = problem
    hint = next((fix for text, fix in _YAML_HINTS if text in message), "")
    return Diagnostic(file, (), position, Level.ERROR, "E001", f"invalid YAML: {message}{hint}")


# Short fixes for the YAML mistakes people make most: (part of PyYAML's problem, fix).
_YAML_HINTS = (
    ("'\\t' that cannot start any token", "; indent with spaces, not tabs"),
    ("mapping values are not allowed here", "; quote a value that contains ': '"),
    ("expected a single document", "; keep one document per file (remove the extra '---')"),
)


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
