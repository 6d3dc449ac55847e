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


@pytest.mark.parametrize("doc", ["docs/math.md", "README.md"])
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
