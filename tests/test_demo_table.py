"""The README's demo table is what the demo prints: ``local_test/compare_losses.py`` on the tree
``local_test/prepare_breast_cancer.py`` lays out (the demo's first two steps), run here.

The figures depend on the XGBoost version (3.2.0 when they were measured; the README says so); its
``hist`` trees do not depend on the number of cores.
"""

import os
import re
import subprocess
import sys

from support import BIN, REPO


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


def test_the_serving_docs_predict_example_is_what_the_demo_model_serves(breast_cancer_tree):
    """docs/serving.md's `predict.sh` example: its first two rows and the policy, from the real app."""
    import json

    from costaware.serving.app import create_app

    text = (REPO / "docs" / "serving.md").read_text()
    block = re.search(r"\$ local_test/predict.sh local_test/payloads/breast_cancer.csv text/csv\n(.*?)\n```",
                      text, flags=re.S)
    assert block, "docs/serving.md's predict.sh example is missing"
    shown_rows = [json.loads(row) for row in re.findall(r'\{"score".*?\}', block.group(1))]
    shown_policy = json.loads(re.search(r'"policy":(\{.*\})\}\s*$', block.group(1)).group(1))
    payload = (REPO / "local_test" / "payloads" / "breast_cancer.csv").read_bytes()
    client = create_app(str(breast_cancer_tree / "model")).test_client()
    response = client.post("/invocations", data=payload, content_type="text/csv")
    assert response.status_code == 200, response.data
    served = json.loads(response.data)
    assert len(shown_rows) == 2 and served["predictions"][:2] == shown_rows
    assert served["policy"] == shown_policy


def _console_examples(text: str):
    """Each ``$ curl ...`` command of the console blocks (continuation lines joined) with the lines
    it shows as its output (up to the next command; blank lines at the end dropped), and the
    block's number (a block may start the server with settings: ``$ NAME=value serve &``)."""
    for number, block in enumerate(re.findall(r"```console\n(.*?)```", text, flags=re.S)):
        for example in re.split(r"\n(?=\$ )", block.strip()):
            lines = example.splitlines()
            command, more = [], True
            while lines and more:
                line = lines.pop(0).strip()
                more = line.endswith("\\")
                command.append(line.removesuffix("\\").strip())
            while lines and not lines[-1].strip():
                lines.pop()
            yield number, " ".join(command).removeprefix("$ "), lines


def test_the_serving_docs_curl_examples_are_what_the_demo_model_serves(breast_cancer_tree):
    """Every ``curl`` example in docs/serving.md, run against the real app with the demo model:
    the body shown (and any header shown with ``-D -``) is the body served, byte for byte."""
    import shlex

    from costaware.serving.app import create_app
    from costaware.serving.config import ServerSettings

    def client_with(env: dict):
        settings = ServerSettings.from_env({"COSTAWARE_MODEL_DIR": model_dir, **env})
        return create_app(model_dir, settings).test_client()

    model_dir = str(breast_cancer_tree / "model")
    rows = b"".join((REPO / "local_test" / "payloads" / "breast_cancer.csv").read_bytes()
                    .splitlines(keepends=True)[:2])  # rows.csv: the payload's first two lines
    # rows.libsvm: the same rows, cell i at index i
    libsvm = b"".join(b" ".join(b"%d:%s" % (i, cell) for i, cell in
                                enumerate(line.strip().split(b","), 1) if cell) + b"\n"
                      for line in rows.splitlines())
    examples = list(_console_examples((REPO / "docs" / "serving.md").read_text()))
    assert len(examples) >= 5
    client, block = None, None
    for number, command, shown in examples:
        if number != block:
            client, block = client_with({}), number
        settings = re.fullmatch(r"((?:[A-Z_]+=\S+ )+)serve &", command)
        if settings:
            client = client_with(dict(word.split("=", 1) for word in settings.group(1).split()))
            continue
        words = shlex.split(command)
        assert words[0] == "curl" and words[-1] == "localhost:8080/invocations", command
        headers, body, show_headers = {}, None, False
        for flag, value in zip(words, words[1:]):
            if flag == "-H":
                name, _, header_value = value.partition(": ")
                headers[name] = header_value
            elif flag == "--data-binary":
                assert value in ("@rows.csv", "@rows.libsvm"), command
                body = rows if value == "@rows.csv" else libsvm
            elif flag == "-d":
                body = value.encode()
            elif flag == "-D":
                show_headers = True
        response = client.post("/invocations", data=body, headers=headers)
        assert response.status_code == 200, (command, response.data)
        if show_headers:  # the header lines shown, a blank line, then the body
            split = shown.index("")
            for line in shown[:split]:
                name, _, value = line.partition(": ")
                assert response.headers[name] == value, command
            shown = shown[split + 1:]
        assert response.get_data(as_text=True).splitlines() == shown, command
