"""Which modules of container/costaware/ a pytest run imports: in pytest's processes and in every
Python process they start (the real ``train`` and the toolkit, ``serve`` and its workers, the
command line), which an in-process coverage tool would miss.

    python tests/touched_modules.py                      # the fast tier: -m "not slow", no image
    python tests/touched_modules.py tests/test_data.py   # any pytest arguments instead

A ``sitecustomize`` put first on ``PYTHONPATH`` (the tests pass the environment on to what they
start) records each ``costaware`` module as a process first imports it. The script then runs
pytest, prints how many modules were imported and which were not, and exits 1 when a module was
never imported (or pytest failed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "container" / "costaware"
FAST_TIER = ["-m", "not slow", "tests", "--ignore=tests/image"]

RECORDER = '''
import os
import sys


class _ImportRecorder:
    """A finder that finds nothing: it notes each costaware module a process looks for."""

    def find_spec(self, name, path=None, target=None):
        if name == "costaware" or name.startswith("costaware."):
            with open(os.path.join(os.environ["COSTAWARE_IMPORT_LOG"], f"{os.getpid()}.txt"),
                      "a") as log:
                log.write(name + "\\n")
        return None


if os.environ.get("COSTAWARE_IMPORT_LOG"):
    sys.meta_path.insert(0, _ImportRecorder())
'''


def package_modules(package: Path = PACKAGE) -> set[str]:
    """Every module of the package, dotted (``costaware.serving.app``; a package by its name)."""
    out = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def recorded_modules(log_dir: Path) -> set[str]:
    return {line.strip() for log in log_dir.glob("*.txt")
            for line in log.read_text().splitlines() if line.strip()}


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="costaware-imports-") as work:
        hook, log_dir = Path(work) / "hook", Path(work) / "log"
        hook.mkdir()
        log_dir.mkdir()
        (hook / "sitecustomize.py").write_text(RECORDER)
        path = [str(hook), str(REPO / "container"), os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, COSTAWARE_IMPORT_LOG=str(log_dir),
                   PYTHONPATH=os.pathsep.join(p for p in path if p))
        pytest = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                                 *(argv or FAST_TIER)], cwd=REPO, env=env)
        imported = recorded_modules(log_dir)
    modules = package_modules()
    missing = sorted(modules - imported)
    print(f"touched_modules: {len(modules) - len(missing)} of {len(modules)} costaware modules "
          f"imported by the run ({' '.join(argv or FAST_TIER)})")
    for name in missing:
        print(f"  never imported: {name}")
    return 1 if missing or pytest.returncode else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
