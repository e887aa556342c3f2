"""Suite loading stays linear in the document: aliases are walked once, and a
document whose expansion or nesting exceeds the budget stops with one line
naming file and line (an alias bomb used to hang ``harness plan``)."""

from __future__ import annotations

import pytest

from harness import ConfigError
from harness.cli import main
from harness.yamlsource import MAX_BYTES, MAX_DEPTH, MAX_NODES, load_yaml

SUITE_TAIL = "datasets: [{sklearn: iris}]\nmethods: {ce: {}}\n"


def bomb(levels: int, width: int = 9) -> str:
    """``levels`` lists, each holding ``width`` aliases of the one above: the
    last expands to width**levels scalars from levels lines."""
    rows = ["name: bomb", f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        rows.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(rows) + "\n" + SUITE_TAIL


def expanded_size(value) -> int:
    """Values in ``value`` with every alias expanded (a scalar counts 1)."""
    if isinstance(value, dict):
        return 1 + sum(1 + expanded_size(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(expanded_size(v) for v in value)
    return 1


@pytest.mark.timeout(30)
def test_alias_bomb_stops_at_the_first_list_over_budget(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb(9))
    with pytest.raises(ConfigError) as exc:
        load_yaml(f)
    # l5 is the first list over budget: 9**5 * 9 scalars > MAX_NODES > 9**5
    assert 9 ** 5 < MAX_NODES < 9 ** 6
    assert exc.value.line == 7
    text = str(exc.value)
    assert text.startswith(f"{f}:7: ") and f"more than {MAX_NODES} values" in text
    assert "\n" not in text


@pytest.mark.timeout(30)
def test_alias_bomb_in_harness_plan_exits_2_with_one_line(tmp_path, capsys):
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb(9))
    code = main(["plan", str(f), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: {f}:7: "), err
    assert "Traceback" not in err


def test_walk_records_document_paths_not_expanded_ones(tmp_path):
    """An expansion under the budget is accepted, and the line map holds one
    entry per path written in the file (plus one per alias use), not one per
    expanded path: the walk is linear in the document."""
    f = tmp_path / "wide.yaml"
    f.write_text(bomb(5))  # 9**5 = 59049 scalars once expanded
    src = load_yaml(f)
    assert expanded_size(src.data["l4"]) > 9 ** 5
    # 5 keys of 9 items + name/datasets/methods and their few children
    assert len(src.lines) < 200, len(src.lines)
    assert src.line_of(("l0", 4)) == 2
    # PyYAML gives an alias its anchor's node: a list item that is an alias
    # keeps the anchor's line, the paths below it fall back to that
    assert src.line_of(("l4", 3, 2, 1)) == 5


def test_path_below_an_aliased_value_takes_the_key_line(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("base: &l {name: focal, gamma: 2}\nmethods:\n  a:\n    loss: *l\n")
    src = load_yaml(f)
    assert src.line_of(("base", "gamma")) == 1
    assert src.line_of(("methods", "a", "loss", "gamma")) == 4


def test_aliases_become_independent_copies(tmp_path):
    """YAML builds ``*l`` as the object ``&l`` holds; checks that normalise a
    spec in place must not change the other method through it."""
    f = tmp_path / "s.yaml"
    f.write_text("methods:\n  a: {loss: &l {name: focal}}\n  b: {loss: *l}\n")
    data = load_yaml(f).data
    a, b = data["methods"]["a"]["loss"], data["methods"]["b"]["loss"]
    assert a == b == {"name": "focal"}
    a["gamma"] = 1.0
    assert b == {"name": "focal"}


def test_recursive_alias_is_refused_with_its_line(tmp_path):
    f = tmp_path / "rec.yaml"
    f.write_text("name: r\nx: 1\nloop: &a [1, *a]\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(f)
    assert exc.value.line == 3 and "recursive" in str(exc.value)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 2000])
def test_deep_nesting_is_refused(tmp_path, depth):
    """Past the budget, and past PyYAML's own recursion (2000 levels)."""
    f = tmp_path / "deep.yaml"
    f.write_text("name: d\nx: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(f)
    assert f"more than {MAX_DEPTH} levels" in str(exc.value)
    assert str(exc.value).startswith(str(f))


def test_nesting_within_budget_loads(tmp_path):
    f = tmp_path / "ok.yaml"
    depth = MAX_DEPTH - 2  # the root mapping and the key's value add levels
    f.write_text("x: " + "[" * depth + "]" * depth + "\n")
    data = load_yaml(f).data
    levels = 0
    node = data["x"]
    while node:
        node, levels = node[0], levels + 1
    assert levels == depth - 1


def test_merge_key_with_an_alias_still_loads(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("base: &b {lr: 0.1, momentum: 0.9}\nopt:\n  <<: *b\n  lr: 0.5\n")
    src = load_yaml(f)
    assert src.data["opt"] == {"lr": 0.5, "momentum": 0.9}
    assert src.line_of(("opt", "lr")) == 4


def test_duplicate_key_is_still_an_error(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(f)
    assert exc.value.line == 3 and "duplicate key 'a' (first at line 1)" in str(exc.value)


def test_a_file_over_the_size_budget_is_refused_before_parsing(tmp_path, monkeypatch):
    import yaml

    f = tmp_path / "big.yaml"
    f.write_text("x: [" + ", ".join(["1"] * (MAX_BYTES // 3)) + "]\n")
    monkeypatch.setattr(yaml, "SafeLoader", None)  # parsing would fail loudly
    with pytest.raises(ConfigError) as exc:
        load_yaml(f)
    assert f"a suite may have {MAX_BYTES} at most" in str(exc.value)
    assert str(exc.value).startswith(f"{f}: the file has ")


def test_a_file_that_is_not_utf8_is_one_error(tmp_path):
    f = tmp_path / "latin1.yaml"
    f.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_yaml(f)


def test_a_nul_character_is_malformed_yaml(tmp_path):
    f = tmp_path / "nul.yaml"
    f.write_text("name: a\x00b\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_yaml(f)
