"""report.py: the PNG charts and the HTML report written to /opt/ml/output/data/."""

from __future__ import annotations

import re
import warnings

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from costaware.costs import CostMatrix, RowCosts, realised_costs
from costaware.metrics import evaluate
from costaware.report import ChannelView, _cost_steps, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COSTS = CostMatrix(fp=1.0, fn=5.0)
FACET = "<script>alert('$x$')</script>"
BIAS = {"DPPL": 0.0812, "DI": 0.743125, "DCA": None, "TE": float("inf"), "AD": float("nan")}


def make_view(name, n=3000, seed=0, *, facet=True, group=None, bias=None, label=None, score=None,
              sensitive=None):
    rng = np.random.default_rng(seed)
    sens = rng.random(n) < 0.3 if sensitive is None else sensitive
    y = (rng.random(n) < np.where(sens, 0.25, 0.35)).astype(int) if label is None else label
    if score is None:
        score = 1 / (1 + np.exp(-(3 * (y - 0.5) + rng.normal(0, 1.3, n) - 1 - 0.4 * sens)))
    return ChannelView(name=name, label=np.asarray(y), score=np.asarray(score, dtype=float),
                       row_costs=RowCosts.build(COSTS, len(y)), threshold=0.21,
                       bayes_threshold=COSTS.bayes_threshold(),
                       sensitive=sens if facet else None, facet_name=FACET if facet else "",
                       group_thresholds=group, bias=bias)


def files_for(channel, facet=True):
    names = [f"roc-{channel}.png", f"cost-vs-threshold-{channel}.png", f"scores-by-class-{channel}.png",
             f"confusion-{channel}.png"]
    return names + ([f"scores-by-facet-{channel}.png"] if facet else [])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    views = [make_view("train", seed=1, bias=BIAS),
             make_view("validation", seed=2, group={"a": 0.22, "d": 0.16}, bias=BIAS),
             make_view("test", seed=3, facet=False)]
    written = write_report(str(out), views, "Credit <model> & co", {
        "cost_fp": 1.0, "cost_fn": 5.0, "num_round": 100, "missing": None, "objective": "<cost>"})
    return out, views, written, (out / "report.html").read_text(encoding="utf-8")


def test_writes_every_expected_file_and_returns_them(report):
    out, _, written, _ = report
    expected = files_for("train") + files_for("validation") + files_for("test", facet=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(expected + ["report.html"])
    assert sorted(written) == sorted(str(out / name) for name in expected + ["report.html"])
    assert not (out / "scores-by-facet-test.png").exists()


def test_every_png_is_valid_and_sensibly_sized(report):
    out, _, _, _ = report
    for path in out.glob("*.png"):
        assert path.read_bytes()[:8] == PNG_MAGIC, path.name
        image = matplotlib.image.imread(path)
        height, width = image.shape[:2]
        assert 300 <= height <= 1200 and 400 <= width <= 1400, (path.name, image.shape)
        assert image.shape[2] in (3, 4)
        assert image.std() > 0.01, f"{path.name} is blank"
        assert path.stat().st_size < 250_000, path.name


def test_html_embeds_every_image_by_relative_name(report):
    out, _, _, text = report
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert sorted(sources) == sorted(p.name for p in out.glob("*.png"))


def test_html_shows_the_metrics(report):
    _, views, _, text = report
    for view in views:
        m = evaluate(view.label, view.score, view.threshold, view.row_costs)
        assert f"{m['auc']:.4f}" in text
        assert f"{m['expected_cost']:.6g}" in text
        for k in ("tp", "fp", "fn", "tn"):
            assert f">{m['confusion_matrix'][k]:,}<" in text
    # the group rule of the validation channel: decide facet a at t_a, facet d at t_d
    v = views[1]
    decision = (v.score >= np.where(v.sensitive, 0.16, 0.22)).astype(int)
    group_cost = realised_costs(v.label, decision, v.row_costs).sum() / len(v.label)
    assert "expected cost per prediction (group thresholds)" in text
    assert f"{group_cost:.6g}" in text


def test_html_has_summary_and_bias_table(report):
    _, _, _, text = report
    assert "<h2>Bias metrics</h2>" in text
    for name, shown in (("DPPL", "0.0812"), ("DI", "0.743125"), ("DCA", "n/a"), ("TE", "inf"),
                        ("AD", "NaN")):
        assert re.search(rf"<td>{name}</td><td class=\"num\">{re.escape(shown)}</td>", text), name
    assert "<td>num_round</td><td>100</td>" in text
    assert "<td>missing</td><td>n/a</td>" in text


def test_html_escapes_text_and_needs_no_network(report):
    _, _, _, text = report
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;$x$&#x27;)&lt;/script&gt;" in text
    assert "Credit &lt;model&gt; &amp; co" in text
    assert "&lt;cost&gt;" in text
    assert "http://" not in text and "https://" not in text


def test_output_is_deterministic(tmp_path, report):
    out, views, _, _ = report
    write_report(str(tmp_path), views, "Credit <model> & co", {
        "cost_fp": 1.0, "cost_fn": 5.0, "num_round": 100, "missing": None, "objective": "<cost>"})
    for path in out.iterdir():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_uses_the_agg_backend():
    assert matplotlib.get_backend().lower() == "agg"


@pytest.mark.parametrize("seed", range(5))
def test_cost_steps_are_the_realised_cost_at_every_threshold(seed):
    """The drawn step function equals the cost of ``decide 1 iff score >= t`` everywhere (no thinning
    at this size), including just at and next to each score."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    score = np.round(rng.random(n), 2)  # ties
    label = (rng.random(n) < 0.4).astype(int)
    costs = RowCosts.build(CostMatrix(fp=1.0, fn=3.0, tp=0.5, tn=0.1), n, multiplier=rng.random(n) + 0.5)
    curve = _cost_steps(score, label == 1, costs, 0.0, 1.0)
    probes = np.concatenate([np.linspace(0, 1, 101), score, np.nextafter(score, 2), np.nextafter(score, -1)])
    probes = probes[(probes > 0) & (probes <= 1)]
    # rule i holds on (edges[i], edges[i+1]]
    i = np.searchsorted(curve.edges, probes, side="left") - 1
    drawn = curve.steps[i]
    truth = np.array([realised_costs(label, (score >= t).astype(int), costs).sum() / n for t in probes])
    np.testing.assert_allclose(drawn, truth, rtol=1e-12, atol=1e-12)


def edge_case_views():
    n = 400
    rng = np.random.default_rng(7)
    score = rng.random(n)
    return [
        make_view("single class", n, label=np.zeros(n, int), score=score, bias={"DPPL": None}),
        make_view("all positive", n, label=np.ones(n, int), score=score),
        make_view("empty facet d", n, sensitive=np.zeros(n, bool), group={"a": 0.3, "d": 0.2},
                  bias={"DPPL": None, "DI": None}),
        make_view("empty facet a", n, sensitive=np.ones(n, bool)),
        make_view("empty", 0, label=np.zeros(0, int), score=np.zeros(0), sensitive=np.zeros(0, bool),
                  group={"a": 0.3, "d": 0.2}),
        make_view("group without mask", n, facet=False, group={"a": 0.3}),
        make_view("one row", 1, label=np.array([1]), score=np.array([0.7]), sensitive=np.array([True])),
        make_view("tied scores", n, score=np.full(n, 0.21)),
        make_view("extreme scores", n, score=(rng.random(n) < 0.5).astype(float)),
    ]


def test_edge_cases_do_not_raise_or_warn(tmp_path):
    views = edge_case_views()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = write_report(str(tmp_path), views, "edge cases", {})
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    for path in written[:-1]:
        assert path.endswith(".png") and open(path, "rb").read(8) == PNG_MAGIC
    assert "Only class 0 is present" in text and "Only class 1 is present" in text
    assert "ROC curve and AUC are undefined" in text
    assert "Facet d is empty" in text and "Facet a is empty" in text
    assert "This channel has no rows" in text
    assert "Group thresholds are given without a sensitive mask" in text
    assert (tmp_path / "roc-single_class.png").exists()          # a placeholder that says so
    assert (tmp_path / "scores-by-facet-empty_facet_d.png").exists()
    assert not (tmp_path / "scores-by-facet-group_without_mask.png").exists()


def test_rejects_inconsistent_input(tmp_path):
    view = make_view("train", 100)
    with pytest.raises(ValueError, match="differ in length"):
        write_report(str(tmp_path), [ChannelView("x", view.label, view.score[:-1], view.row_costs, 0.5, 0.5)],
                     "t", {})
    with pytest.raises(ValueError, match="sensitive mask"):
        bad = make_view("x", 100, sensitive=np.zeros(99, bool), label=np.zeros(100, int), score=np.zeros(100))
        write_report(str(tmp_path), [bad], "t", {})
    with pytest.raises(ValueError, match="same file names"):
        write_report(str(tmp_path), [make_view("a b", 100), make_view("a_b", 100)], "t", {})
