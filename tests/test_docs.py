"""docs/math.md names the function computing each equation; every such reference must resolve."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REF = re.compile(r"`((?:minis2s|scripts)/[\w/]+\.py): (\w+)`")


def defined_names(path: Path) -> set[str]:
    """Top-level functions, classes and assigned names of a Python file."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def broken_references(text: str) -> list[str]:
    broken = []
    for file, name in REF.findall(text):
        path = ROOT / file
        if not path.is_file():
            broken.append(f"{file}: {name} (no such file)")
        elif name not in defined_names(path):
            broken.append(f"{file}: {name} (no such function)")
    return broken


def test_checker_catches_a_stale_reference():
    assert broken_references("`minis2s/lstm.py: cell`") == []
    assert broken_references("`minis2s/lstm.py: no_such_cell`") == ["minis2s/lstm.py: no_such_cell (no such function)"]
    assert broken_references("`minis2s/nothing.py: f`") == ["minis2s/nothing.py: f (no such file)"]


@pytest.mark.parametrize("doc", ["docs/math.md", "README.md", "docs/inference.md", "docs/performance.md", "docs/scaling.md"])
def test_every_code_reference_resolves(doc):
    text = (ROOT / doc).read_text()
    refs = REF.findall(text)
    if doc == "docs/math.md":
        assert len(refs) >= 15, "math.md should point at the code for each equation"
    assert broken_references(text) == []


def test_math_sections_end_with_exercises_and_hints():
    """Sections 1-7 and 10-14 of docs/math.md each close with exercises, every one with a hint."""
    text = (ROOT / "docs" / "math.md").read_text()
    sections = dict(re.findall(r"^## (\d+)\. .*?\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    for number in [*range(1, 8), *range(10, 15)]:
        body = sections[str(number)]
        assert "**Exercises.**" in body, number
        items = re.split(r"^\d+\. ", body.split("**Exercises.**")[1], flags=re.M)[1:]
        assert len(items) >= 3 and all("*Hint:*" in item for item in items), number


def test_notation_table_gives_each_symbol_one_meaning():
    """Section 1's tables list every symbol once (issue 22: V, U, A, c_t and z_t each had two
    meanings); the symbols the review found doubled keep the one meaning the table gives."""
    text = (ROOT / "docs" / "math.md").read_text()
    section = re.search(r"^## 1\. .*?(?=^## 2\. )", text, re.S | re.M).group(0)
    symbols = []
    for line in section.splitlines():
        if line.startswith("| $"):
            first = line.split(" | ")[0].lstrip("| ")
            symbols += re.findall(r"\$([^$]+)\$", first)
    symbols = [s.strip() for part in symbols for s in re.split(r",\s*|;\s*", part) if s.strip()]
    assert len(symbols) >= 40
    assert len(symbols) == len(set(symbols)), sorted(s for s in symbols if symbols.count(s) > 1)
    body = text[len(section):]
    assert "$A = H$" not in body and "attention units" in section
    assert not re.search(r"\$U = \[", body)  # U is the recurrent kernel only
    assert not re.search(r"c_t = \\sum", body)  # the context is gamma_t, not c_t
    assert not re.search(r"z_t = \\sigma", body)  # the GRU's update gate is u_t
