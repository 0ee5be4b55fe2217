"""The test suite's own rules: shared helpers live in tests/support.py, so no test file imports
another; no test asserts how long something took (benchmarks/ measures time; a deadline that only
bounds a hang is not a timing assertion); every name in conftest.py's SLOW is a test of its file,
so a renamed slow test cannot slip into the fast tier unnoticed."""

import ast
import re
from pathlib import Path

from conftest import SLOW
from support import REPO

TESTS = REPO / "tests"
# a duration measured and compared: `elapsed`, `perf_counter()`, `time.monotonic() - start`
DURATION = re.compile(r"\belapsed\b|perf_counter|\b(?:monotonic|time)\(\)\s*-")


def python_files(directory: Path = TESTS) -> list[Path]:
    return sorted(directory.rglob("*.py"))


def imported_test_modules(path: Path) -> list[str]:
    """The test modules ``path`` imports (``test_x``, ``tests.test_x``, ``from tests import test_x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [name for name in names if re.fullmatch(r"(?:tests\.)?test_\w+", name)]
    return found


def timing_asserts(path: Path) -> list[str]:
    """``file:line: source`` of each ``assert`` that compares a measured duration."""
    text = path.read_text()
    return [f"{path.name}:{node.lineno}: {ast.get_source_segment(text, node)}"
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Assert) and DURATION.search(ast.get_source_segment(text, node))]


def test_no_test_file_imports_another():
    offenders = {path.name: names for path in python_files()
                 if (names := imported_test_modules(path))}
    assert not offenders, f"move what they share to tests/support.py: {offenders}"


def test_no_test_asserts_a_duration():
    found = [line for path in python_files() for line in timing_asserts(path)]
    assert not found, found


def test_the_rules_see_what_they_forbid(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("import time\nfrom test_serving import Server\nimport tests.test_data\n"
                      "from support import csv_body\n"
                      "start = time.monotonic()\nelapsed = time.monotonic() - start\n"
                      "assert elapsed < 3\nassert time.perf_counter() - start < 1.0\n"
                      "assert time.monotonic() - start < 15\n"
                      "deadline = time.monotonic() + 60\nassert time.monotonic() < deadline\n")
    assert imported_test_modules(sample) == ["test_serving", "tests.test_data"]
    assert [line.split(":")[1] for line in timing_asserts(sample)] == ["7", "8", "9"]


def test_every_slow_name_is_a_test_of_its_file():
    missing = []
    for file_name, names in SLOW.items():
        tree = ast.parse((TESTS / file_name).read_text())
        defined = {node.name for node in ast.walk(tree)
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        missing += [f"{file_name}::{name}" for name in names if name not in defined]
    assert not missing, f"conftest.py's SLOW names tests that do not exist: {missing}"
