"""YAML loading that remembers where each key came from.

Suite errors must name the file and line of the offending key, so the loader
keeps a map from key path (``("methods", "focal", "loss")``) to line number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import MISSING, ConfigError

Path_ = tuple[Any, ...]


class YamlSource:
    """A parsed YAML document plus the line of every key path in it."""

    def __init__(self, file: str, data: Any, lines: dict[Path_, int]):
        self.file = file
        self.data = data
        self.lines = lines

    def line_of(self, path: Path_) -> int | None:
        """Line of ``path`` or of its nearest ancestor that YAML gave a line."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: Path_, value: Any, message: str) -> ConfigError:
        """A ``ConfigError`` located in this file."""
        return ConfigError(format_path(path), value, message, file=self.file,
                           line=self.line_of(path))


def format_path(path: Path_) -> str:
    """``("datasets", 0, "sklearn")`` -> ``datasets[0].sklearn``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_path(text: str) -> Path_:
    """Inverse of ``format_path`` for dotted keys without list indices."""
    return tuple(text.split(".")) if text else ()


#: Most nodes a document may hold once its aliases (``*name``) are expanded,
#: and how deep its collections may nest.  A suite is a few hundred nodes; the
#: budget stops an alias bomb (``b: [*a, *a, ...]`` nested nine deep expands
#: to ~10^9 nodes from 20 lines) before anything walks the expansion.
MAX_NODES = 100_000
MAX_DEPTH = 64
#: Largest suite file read at all: parsing is pure Python (0.5 to 1 s per
#: 50 kB on a laptop core), and the bundled suites are under 6 kB.
MAX_BYTES = 50_000


def _check_budget(root, file: str) -> None:
    """Raise ``ConfigError`` at the first node whose expansion exceeds
    ``MAX_NODES`` or ``MAX_DEPTH``, or that contains itself through an alias.
    Sizes are memoised by node identity, so the check is linear in the
    document, not in its expansion."""
    import yaml

    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
    open_: set[int] = set()

    def fail(node, message: str) -> ConfigError:
        return ConfigError("", MISSING, message, file=file, line=node.start_mark.line + 1)

    # an explicit stack: deep nesting must fail with a message, not RecursionError
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if done:
            open_.discard(key)
            size = 1 + sum(sizes[id(c)][0] for c in children)
            depth = 1 + max((sizes[id(c)][1] for c in children), default=0)
            if size > MAX_NODES:
                raise fail(node, f"the document expands to more than {MAX_NODES} values "
                           "(aliases '*name' repeat what their anchor '&name' holds); "
                           "a suite this large is refused")
            sizes[key] = (size, depth)
            continue
        if key in sizes:
            continue
        if key in open_:
            raise fail(node, "an alias refers to a collection that contains it (a "
                       "recursive '&anchor'); a suite must be a tree")
        if len(open_) >= MAX_DEPTH:
            raise fail(node, f"collections nest more than {MAX_DEPTH} levels deep")
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children
                     if id(c) not in sizes or id(c) in open_)


def _walk(root, lines: dict[Path_, int], file: str) -> None:
    """Record the line of every key path; a key given twice in one mapping is
    an error (YAML itself keeps the last one silently: a second ``ce:`` would
    replace the first method without a word).

    A node reached again through an alias is not walked again, so the walk
    is linear in the document: a path below an alias has no line of its own
    and ``YamlSource.line_of`` gives the nearest recorded ancestor's (the key
    that holds the alias)."""
    import yaml

    walked: set[int] = set()
    stack: list[tuple[Any, Path_]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in walked:
            continue
        walked.add(id(node))
        below: list[tuple[Any, Path_]] = []
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = _key(key_node)
                line = key_node.start_mark.line + 1
                if key in seen and key != "<<":
                    raise ConfigError(format_path((*path, key)), MISSING,
                                      f"duplicate key {key!r} (first at line {seen[key]}); "
                                      "YAML would keep only the last one", file=file, line=line)
                seen.setdefault(key, line)
                sub = (*path, key)
                lines.setdefault(sub, line)
                below.append((value_node, sub))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = (*path, i)
                lines.setdefault(sub, item.start_mark.line + 1)
                below.append((item, sub))
        # document order: an anchor comes before its aliases, so the paths under
        # it get its own lines and an alias only the line where it is used
        stack.extend(reversed(below))


def _key(key_node) -> Any:
    """A mapping key as the path names it: a scalar's text, else its value
    (a ``[1, 2]`` key becomes a tuple, hashable)."""
    import yaml

    if isinstance(key_node, yaml.ScalarNode):
        return key_node.value
    if isinstance(key_node, yaml.SequenceNode):
        return tuple(_key(n) for n in key_node.value)
    return yaml.serialize(key_node).strip()


def _unshare(value: Any) -> Any:
    """A copy in which no two places share a list or mapping: YAML builds
    ``*name`` as the very object ``&name`` holds, and a check that normalises
    one place in place would otherwise change the other.  Bounded by
    ``MAX_NODES``, so linear."""
    if isinstance(value, dict):
        return {k: _unshare(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshare(v) for v in value]
    return value


#: Parser messages that almost always mean a line is indented wrongly.
_INDENTATION = ("mapping values are not allowed", "did not find expected key",
                "expected <block end>", "could not find expected ':'",
                "did not find expected '-' indicator")


def _hint(problem: str) -> str:
    """A hint for the YAML mistakes people make most: tabs and indentation."""
    if "'\\t'" in problem or "\t" in problem:
        return " (YAML indents with spaces, not tabs)"
    if any(p in problem for p in _INDENTATION):
        return (" (check the indentation around this line: keys of one mapping start in "
                "the same column, nested keys further right; and a value holding ': ' "
                "needs quotes)")
    return ""


def load_yaml(file: str | Path) -> YamlSource:
    """Read and parse ``file``; a missing file, a YAML syntax error (with a
    hint when it looks like indentation) and a key given twice in one mapping
    raise ``ConfigError`` with the file and line in the message."""
    import yaml

    file = str(file)
    try:
        size = Path(file).stat().st_size
        if size > MAX_BYTES:
            raise ConfigError("", MISSING, f"the file has {size} bytes; a suite may have "
                              f"{MAX_BYTES} at most", file=file)
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", MISSING, "suite file not found", file=file) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", MISSING, f"not UTF-8 text (byte {exc.start})", file=file) from None
    except OSError as exc:
        raise ConfigError("", MISSING, f"cannot read suite file: {exc.strerror}",
                          file=file) from None
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        # one parse: the node tree is checked, then built into Python values
        node = loader.get_single_node()
        lines: dict[Path_, int] = {(): 1}
        if node is not None:
            _check_budget(node, file)
            # before construction: it merges '<<' keys into the nodes in place
            _walk(node, lines, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("", MISSING, f"malformed YAML: {problem}{_hint(problem)}", file=file,
                          line=mark.line + 1 if mark else None) from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise ConfigError("", MISSING, f"collections nest more than {MAX_DEPTH} levels deep",
                          file=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    data = _unshare(data)
    # Integer-looking keys are ints after safe_load; mirror them in the map.
    for path in list(lines):
        lines.setdefault(tuple(_maybe_int(p) for p in path), lines[path])
    return YamlSource(file, data, lines)


def _maybe_int(part: Any) -> Any:
    # isdecimal, not isdigit: '²' is a digit that int() refuses
    if isinstance(part, str) and part.lstrip("-").isdecimal() and part.lstrip("-").isascii():
        return int(part)
    return part
