"""A small YAML loader that remembers where every value came from.

Data files edited by people (units, routing rules, deadlines, ...) must be rejected with a message
that names the file and the line to fix. PyYAML's ``safe_load`` returns plain values and forgets the
lines, so this module composes the node tree itself, builds the plain values from it (the same
values ``yaml.safe_load`` would give) and keeps a parallel index of line numbers::

    doc = load_yaml("rules.yaml")
    doc.data                          # plain dict / list / str / int / bool / None values
    doc.line("rules", 3, "route")     # line of the value at that path (1-based), or None
    doc.key_line("rules", 3, "route") # line of the key "route" itself
    doc.nearest_line("rules", 3, "x") # line of the deepest part of the path that exists
    doc.error("rules", 3, problem="...")  # a YamlError located at that path

A path is a sequence of mapping keys and list indices from the document root. Besides syntax errors,
loading rejects duplicate keys in one mapping (``DuplicateKeyError``: YAML says keys are unique;
PyYAML would silently keep the last one, which hides an administrator's mistake). A value PyYAML
cannot construct (``!!int seven``) is an error at its line; one exception: a date-like scalar that
is no real date (``2026-02-30``) stays text, so the caller's check can name the field it is in.
Every error is a ``YamlError`` (a ``ConfigError``) whose message is one line:
``<file>:<line>: <problem>``; modules that check the content subclass it for their own errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Hashable

import yaml

from qinglang.errors import ConfigError

__all__ = ["DuplicateKeyError", "EncodingError", "YamlDocument", "YamlError", "load_yaml", "parse_yaml", "one_line"]

PathItem = Hashable  # a mapping key (usually str) or a list index (int)


def one_line(text: object, limit: int = 200) -> str:
    """``text`` as a single line (newlines and tabs shown as spaces), shortened to ``limit`` chars."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


class YamlError(ConfigError):
    """A YAML file cannot be used (unreadable, not YAML, or, in subclasses, wrong content).

    ``str()`` is ``<file>:<line>: <problem>`` (``<file>: <problem>`` when ``line`` is None).
    """

    def __init__(self, file: str, line: int | None, problem: str) -> None:
        self.file = file
        self.line = line
        self.problem = one_line(problem, 500)
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {self.problem}")


class DuplicateKeyError(YamlError):
    """``key`` stands twice in one mapping: at ``line`` and, first, at ``first_line``."""

    def __init__(self, file: str, line: int, key: Any, first_line: int) -> None:
        self.key = key
        self.first_line = first_line
        super().__init__(file, line, f"duplicate key {key!r} (first at line {first_line})")


class EncodingError(YamlError):
    """The file is not UTF-8 text; ``line`` is where the first bad byte is."""

    def __init__(self, file: str, line: int) -> None:
        super().__init__(file, line, "the file is not valid UTF-8 text")


# libyaml's parser when PyYAML was built with it (several times faster; every start-up and every
# rules check parses the units, routing and deadline files); the pure-Python one otherwise.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):
    """A safe loader whose failures to construct a value name the value's line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # e.g. !!int seven
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.value!r} as {kind} ({exc})", node.start_mark
            ) from None

    def construct_yaml_timestamp(self, node: yaml.Node) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:  # looks like a date but is none (2026-02-30): text, for the caller to reject
            return self.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


@dataclass
class _Lines:
    """Line index of one node: its own line and, for collections, the lines of its children."""

    line: int
    # mapping: key -> (line of the key, index of the value); sequence: list of item indexes
    keys: dict[Any, tuple[int, "_Lines"]] | None = None
    items: list["_Lines"] | None = None


@dataclass(frozen=True)
class YamlDocument:
    """Plain data of one YAML document plus the line of every node in it."""

    name: str  # how the file is named in messages (usually the path as given)
    data: Any
    _index: _Lines | None = field(default=None, repr=False, compare=False)

    def _walk(self, path: tuple[PathItem, ...]) -> tuple[_Lines | None, int | None, int]:
        """Return (node at path or None, key line of the last step, number of steps that exist)."""
        node = self._index
        key_line: int | None = None
        for depth, step in enumerate(path):
            if node is None:
                return None, None, depth
            if node.keys is not None:
                found = None
                try:
                    found = node.keys.get(step)
                except TypeError:  # unhashable step
                    found = None
                if found is None:
                    return None, None, depth
                key_line, node = found
            elif node.items is not None:
                if isinstance(step, bool) or not isinstance(step, int) or not -len(node.items) <= step < len(node.items):
                    return None, None, depth
                node, key_line = node.items[step], None
            else:
                return None, None, depth
        return node, key_line, len(path)

    def line(self, *path: PathItem) -> int | None:
        """Line (1-based) where the value at ``path`` starts; None if there is no such value."""
        node, _, _ = self._walk(path)
        return node.line if node is not None else None

    def key_line(self, *path: PathItem) -> int | None:
        """Line of the mapping key that is the last step of ``path`` (for a list item: the item's line)."""
        node, key_line, _ = self._walk(path)
        if node is None:
            return None
        return key_line if key_line is not None else node.line

    def nearest_line(self, *path: PathItem) -> int:
        """Line of the deepest existing node along ``path`` (1 for an empty document)."""
        for cut in range(len(path), -1, -1):
            node, key_line, _ = self._walk(path[:cut])
            if node is not None:
                # a key that exists: prefer the key's own line (a missing child is reported there)
                return key_line if key_line is not None and cut < len(path) else node.line
        return 1

    def error(self, *path: PathItem, problem: str, key: bool = False) -> YamlError:
        """A ``YamlError`` for the value at ``path`` (``key=True``: at its key) or its nearest parent."""
        line = self.key_line(*path) if key else self.line(*path)
        if line is None:
            line = self.nearest_line(*path)
        return YamlError(self.name, line, problem)


def _mark_line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


def _check_duplicate_keys(node: yaml.Node, loader: yaml.SafeLoader, name: str, seen: set[int]) -> None:
    if id(node) in seen:  # an alias already checked (or a recursive structure)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _check_duplicate_keys(value_node, loader, name, seen)
                continue
            if isinstance(key_node, yaml.ScalarNode):
                key = loader.construct_object(key_node)
                line = _mark_line(key_node.start_mark) or 1
                try:
                    if key in first:
                        raise DuplicateKeyError(name, line, key, first[key])
                    first[key] = line
                except TypeError:
                    pass
            _check_duplicate_keys(key_node, loader, name, seen)
            _check_duplicate_keys(value_node, loader, name, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, loader, name, seen)


def _index(node: yaml.Node, loader: yaml.SafeLoader, active: set[int]) -> _Lines:
    lines = _Lines(line=_mark_line(node.start_mark) or 1)
    if id(node) in active:  # recursive alias: stop here
        return lines
    active.add(id(node))
    try:
        if isinstance(node, yaml.MappingNode):
            lines.keys = {}
            # construct_document() already flattened merge keys (<<) into node.value
            for key_node, value_node in node.value:
                try:
                    key = loader.construct_object(key_node, deep=True)
                    hash(key)
                except Exception:  # unhashable key: the constructor rejected it already
                    continue
                lines.keys[key] = (_mark_line(key_node.start_mark) or lines.line, _index(value_node, loader, active))
        elif isinstance(node, yaml.SequenceNode):
            lines.items = [_index(item, loader, active) for item in node.value]
    finally:
        active.discard(id(node))
    return lines


def parse_yaml(text: str, name: str = "<string>") -> YamlDocument:
    """Parse one YAML document from ``text``; ``name`` is used in error messages."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        root = loader.get_single_node()
        if root is None:
            return YamlDocument(name=name, data=None, _index=None)
        _check_duplicate_keys(root, loader, name, set())
        data = loader.construct_document(root)
        index = _index(root, loader, set())
    except YamlError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        kind = "YAML error" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error"
        raise YamlError(name, _mark_line(mark), f"{kind}: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a control character or similar that YAML does not allow
        line = text[: exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise YamlError(name, line, f"YAML syntax error: character {char} is not allowed in YAML") from None
    except yaml.YAMLError as exc:
        raise YamlError(name, None, f"YAML error: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDocument(name=name, data=data, _index=index)


def load_yaml(path: str | PathLike[str], name: str | None = None) -> YamlDocument:
    """Read and parse a UTF-8 YAML file (a BOM is allowed). ``name`` defaults to the path as given."""
    shown = name if name is not None else str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise YamlError(shown, None, "cannot read the file: not found") from None
    except OSError as exc:
        raise YamlError(shown, None, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EncodingError(shown, raw[: exc.start].count(b"\n") + 1) from None
    return parse_yaml(text, shown)
