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


def _walk(node, path: Path_, lines: dict[Path_, int], file: str) -> None:
    """Record the line of every key path; a key given twice in one mapping is
    an error (YAML itself keeps the last one silently: a second ``ce:`` would
    replace the first method without a word)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node)) if not isinstance(
                key_node, yaml.ScalarNode) else key_node.value
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                raise ConfigError(format_path((*path, key)), MISSING,
                                  f"duplicate key {key!r} (first at line {seen[key]}); YAML "
                                  "would keep only the last one", file=file, line=line)
            seen.setdefault(key, line)
            sub = (*path, key)
            lines[sub] = line
            _walk(value_node, sub, lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*path, i)
            lines[sub] = item.start_mark.line + 1
            _walk(item, sub, lines, file)


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
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", MISSING, "suite file not found", file=file) from None
    except OSError as exc:
        raise ConfigError("", MISSING, f"cannot read suite file: {exc.strerror}",
                          file=file) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("", MISSING, f"malformed YAML: {problem}{_hint(problem)}", file=file,
                          line=mark.line + 1 if mark else None) from None
    lines: dict[Path_, int] = {(): 1}
    if node is not None:
        _walk(node, (), lines, file)
    # Integer-looking keys are ints after safe_load; mirror them in the map.
    for path in list(lines):
        lines.setdefault(tuple(_maybe_int(p) for p in path), lines[path])
    return YamlSource(file, data, lines)


def _maybe_int(part: Any) -> Any:
    if isinstance(part, str) and part.lstrip("-").isdigit():
        return int(part)
    return part
