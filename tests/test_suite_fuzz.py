"""Property test: a bundled suite mutated the ways people (and hostile files)
get suites wrong either plans or stops with exit 2 and one line on stderr —
never a traceback, never a hang.

The mutations: unknown and misspelt keys, wrong types, out-of-range and
non-finite numbers, empty and huge lists, deep nesting, aliases, tabs,
unicode and markup in names, duplicate keys.  CI runs a fixed set of
examples (``derandomize``); ``HARNESS_FUZZ_EXAMPLES=2000 pytest
tests/test_suite_fuzz.py`` explores that many random ones instead.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import tempfile
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402

# hypothesis caches what it learns under ./.hypothesis (from the first @given
# on): keep it out of the checkout
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "harness-hypothesis")

from harness.cli import main  # noqa: E402

SUITES = sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml"))
EXPLORE = "HARNESS_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "40"))

NUMBERS = [-1, 0, -3, -0.5, 1e300, -1e300, math.inf, -math.inf, math.nan, 2 ** 64, -2 ** 63,
           1e-320, 0.5, 1.5, 10 ** 30]
WRONG_TYPES = [None, True, False, "text", "", [], {}, [1, "a", None], {"name": 3}, {"x": [1]},
               3.5, 7, "3", "1e-3", "[1, 2]"]
NAMES = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", r"$\frac{a}{b}$_%&#{}",
         "ünïcødé", "名前", "\u202eevil", "a\tb", "emoji 🎉", "", " ", "a" * 300, "name: x",
         "- item", "*alias", "&anchor", "{x}", "[0]", "null", "~", "yes", "1e3", "..", "a/b",
         "../../etc/passwd", "line\nbreak", "--force", "%(x)s", "\\", "'\"", "\x00", "nul\x00x"]

pytestmark = pytest.mark.skipif(not SUITES, reason="no bundled suites")


def paths(node, prefix=()):
    """Every path into ``node`` (mapping keys and list indices), root first."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


def get(node, path):
    for part in path:
        node = node[part]
    return node


def put(root, path, value):
    """``root`` with the node at ``path`` replaced (the root itself for ())."""
    if not path:
        return value
    get(root, path[:-1])[path[-1]] = value
    return root


def misspell(word: str, draw) -> str:
    """``word`` with one character dropped, doubled, swapped or changed."""
    word = str(word) or "x"
    i = draw(st.integers(0, len(word) - 1))
    how = draw(st.sampled_from(["drop", "double", "swap", "change", "case"]))
    if how == "drop" and len(word) > 1:
        return word[:i] + word[i + 1:]
    if how == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if how == "change":
        return word[:i] + draw(st.sampled_from("aeioustx_-")) + word[i + 1:]
    if how == "case":
        return word.swapcase()
    return word[:i] + word[i] + word[i:]


def a_name(draw) -> str:
    return draw(st.one_of(st.sampled_from(NAMES), st.text(max_size=12)))


def mutate(data, draw):
    """Apply one data mutation; return the new root."""
    all_paths = list(paths(data))
    path = draw(st.sampled_from(all_paths))
    node = get(data, path)
    kind = draw(st.sampled_from(["unknown_key", "rename_key", "wrong_type", "number", "empty",
                                 "huge", "nest", "alias", "name"]))
    if kind in ("unknown_key", "rename_key") and isinstance(node, dict):
        keys = list(node)
        if kind == "rename_key" and keys:
            old = draw(st.sampled_from(keys))
            new = draw(st.one_of(st.just(misspell(old, draw)), st.sampled_from(NAMES)))
            node[new] = node.pop(old)
        else:
            base = draw(st.sampled_from(keys)) if keys else "name"
            # a copy: a later mutation must not change the shared constants
            node[draw(st.one_of(st.just(misspell(base, draw)), st.text(max_size=10)))] = \
                copy.deepcopy(draw(st.sampled_from(WRONG_TYPES + NUMBERS)))
        return data
    if kind == "wrong_type":
        return put(data, path, copy.deepcopy(draw(st.sampled_from(WRONG_TYPES))))
    if kind == "number":
        number = draw(st.one_of(st.sampled_from(NUMBERS),
                                st.floats(allow_nan=True, allow_infinity=True),
                                st.integers(-2 ** 70, 2 ** 70)))
        return put(data, path, number)
    if kind == "empty":
        return put(data, path, [] if not isinstance(node, dict) else {})
    if kind == "huge":
        size = draw(st.sampled_from([100, 1000, 5000]))
        item = node[0] if isinstance(node, list) and node else node
        filler = draw(st.sampled_from(["copies", "range", "text"]))
        if filler == "text":  # one long scalar: over the loader's byte budget
            return put(data, path, "x" * draw(st.sampled_from([1000, 200_000])))
        if filler == "range":
            return put(data, path, list(range(size)))
        # copies of a whole subtree: bounded, so that writing the example
        # stays far inside the deadline (a large file is the "text" case)
        size = max(2, min(size, 2_000 // len(list(paths(item))),
                          100_000 // max(1, len(repr(item)))))
        return put(data, path, [copy.deepcopy(item) for _ in range(size)])
    if kind == "nest":
        depth = draw(st.integers(1, 100))
        for _ in range(depth):
            node = draw(st.sampled_from([[node], {"name": node}, {"x": node}]))
        return put(data, path, node)
    if kind == "alias":
        # the same object at two places: safe_dump writes it as &anchor / *alias
        others = [p for p in all_paths if p[:len(path)] != path and path[:len(p)] != p]
        if others:
            return put(data, path, get(data, draw(st.sampled_from(others))))
        return data
    # a name: a string value, or a key of the mapping above
    if path and isinstance(path[-1], str) and draw(st.booleans()):
        parent = get(data, path[:-1])
        parent[a_name(draw)] = parent.pop(path[-1])
        return data
    return put(data, path, a_name(draw))


def mutate_text(text: str, draw) -> str:
    """One mutation of the YAML text: a tab, a duplicated line, a stray line."""
    lines = text.splitlines()
    if not lines:
        return text
    i = draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["tab", "duplicate", "stray"]))
    if how == "tab":
        stripped = lines[i].lstrip(" ")
        lines[i] = "\t" * max(1, (len(lines[i]) - len(stripped)) // 2) + stripped
    elif how == "duplicate":
        lines.insert(i, lines[i])
    else:
        lines.insert(i, draw(st.one_of(st.sampled_from(NAMES), st.text(max_size=30))))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for every example, created (and every bundled suite
    planned once, so imports and cached data are warm) before the clock
    starts."""
    folder = tmp_path_factory.mktemp("fuzz")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    for suite in SUITES:
        plan(suite, uri)
    return folder, uri


def plan(file: Path, uri: str) -> tuple[int, str, str]:
    """``harness plan file`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["plan", str(file), "--tracking-uri", uri])
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_bundled_suites_plan(store):
    _, uri = store
    for suite in SUITES:
        code, _, err = plan(suite, uri)
        assert code == 0, (suite.name, err)


@settings(max_examples=EXAMPLES, deadline=2000, derandomize=not EXPLORE, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
          print_blob=True)
@given(st.data())
def test_mutated_suite_plans_or_exits_2_with_one_line(store, data):
    folder, uri = store
    draw = data.draw
    suite = draw(st.sampled_from(SUITES), label="suite")
    config = yaml.safe_load(suite.read_text(encoding="utf-8"))
    for _ in range(draw(st.integers(1, 3), label="mutations")):
        config = mutate(config, draw)
    text = yaml.safe_dump(config, allow_unicode=True, sort_keys=False, width=1000)
    if draw(st.booleans(), label="text mutation"):
        text = mutate_text(text, draw)
    file = folder / "mutated.yaml"
    file.write_text(text, encoding="utf-8")
    code, out, err = plan(file, uri)
    assert code in (0, 2), (code, err[-2000:])
    assert "Traceback" not in err + out, err[-2000:]
    if code == 2:
        assert err.startswith("error: ") and err.endswith("\n"), err[-2000:]
        assert err.count("\n") == 1, err[-2000:]


@pytest.mark.parametrize("suite, key", [
    # found by the fuzzer: an unknown key that is not an identifier crashed the
    # classification and denoising tasks' error messages (IndexError)
    ("quickstart.yaml", "x y"), ("quickstart.yaml", "<script>alert(1)</script>"),
    ("denoising.yaml", "a.b"), ("calibration.yaml", "batch size"),
])
def test_unknown_key_with_any_characters_is_one_line(store, suite, key):
    folder, uri = store
    config = yaml.safe_load((SUITES[0].parent / suite).read_text(encoding="utf-8"))
    config[key] = {"a": 1}
    file = folder / "found.yaml"
    file.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    code, _, err = plan(file, uri)
    assert code == 2 and err.count("\n") == 1, err
    assert f"unknown key {key!r}" in err, err
