"""The README's demo table is what the demo prints: ``local_test/compare_losses.py`` on the tree
``local_test/prepare_breast_cancer.py`` lays out (the demo's first two steps), run here.

The figures depend on the XGBoost version (3.2.0 when they were measured; the README says so); its
``hist`` trees do not depend on the number of cores.
"""

import os
import re
import subprocess
import sys

from conftest import BIN, REPO


def readme_table() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- demo table: printed by `python local_test/compare_losses.py` -->\n"
                      r"(.*?)\n<!-- end of demo table -->", text, flags=re.S)
    assert block, "the README's demo table markers are missing"
    return block.group(1).splitlines()


def test_the_readme_demo_table_is_what_the_demo_prints(breast_cancer_tree, tmp_path):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run([sys.executable, str(REPO / "local_test" / "compare_losses.py"),
                             "--tree", str(breast_cancer_tree), "--work", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    printed = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert printed == readme_table()


def test_the_demo_tree_is_the_committed_one(breast_cancer_tree):
    """local_test/test_dir (committed, used by the image test) is what the preparation writes."""
    for channel in ("train", "validation", "test"):
        committed = (REPO / "local_test" / "test_dir" / "input" / "data" / channel / f"{channel}.csv")
        fresh = breast_cancer_tree / "input" / "data" / channel / f"{channel}.csv"
        assert committed.read_text() == fresh.read_text(), channel
    config = REPO / "local_test" / "test_dir" / "input" / "config" / "hyperparameters.json"
    assert config.read_text() == (breast_cancer_tree / "input" / "config" /
                                  "hyperparameters.json").read_text()
