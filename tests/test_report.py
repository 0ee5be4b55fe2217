"""report.py: the PNG charts and the HTML report, drawn from the training result's summaries, for
two classes and for K >= 3 (one page, the charts K's own)."""

from __future__ import annotations

import re
import warnings

import matplotlib
import matplotlib.image
import numpy as np
import pytest
from sklearn.metrics import roc_curve

from costaware.training import class_kinds
from costaware.config import hyperparameters
from costaware.report import html as report
from costaware.decisions.costs import CostMatrix, RowCosts
from costaware.cluster import SOLO
from costaware.data.channel_files import Dataset
from costaware.decisions.rules import DecisionRule, ShiftHistogram
from costaware.training.channels import Channel
from costaware.training.evaluation import evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COSTS = CostMatrix(fp=1.0, fn=5.0)
FACET = "<script>alert('$x$')</script>"
SETTINGS = hyperparameters.parse({"facet_column": "f", "facet_values_or_threshold": "[1]",
                                  "fairness_metrics": "DPPL,DI"})


def make_channel(name, n=3000, seed=0, *, facet=True, rule=DecisionRule(), label=None, p=None,
                 sensitive=None, per_row=False):
    """A ChannelResult made by training's own evaluation of (label, p) at ``rule``."""
    rng = np.random.default_rng(seed)
    s = (rng.random(n) < 0.3) if sensitive is None else sensitive
    y = (rng.random(n) < np.where(s, 0.25, 0.35)).astype(np.int8) if label is None else label
    if p is None:
        p = 1 / (1 + np.exp(-(3 * (y - 0.5) + rng.normal(0, 1.3, n) - 1 - 0.4 * s)))
    costs = (RowCosts(rng.uniform(0.5, 2, n), rng.uniform(2, 10, n), np.zeros(n), np.zeros(n))
             if per_row else RowCosts.constant(COSTS, n))
    data = Dataset(np.zeros((n, 1), np.float32), np.asarray(y, np.int8), ["x"], costs, "mem",
                   False, facet=s.astype(float) if facet else None)
    channel = Channel(name, data, s if facet else None)
    settings = SETTINGS if facet else hyperparameters.parse({})
    names = ["DPPL", "DI"] if facet else []
    return evaluate(channel, np.asarray(p, float), rule, settings, names, 0, SOLO, "model",
                     ["trees"] if name == "train" else [])


def files_for(channel, facet=True):
    names = [f"roc-{channel}.png", f"cost-vs-shift-{channel}.png",
             f"margins-by-class-{channel}.png", f"reliability-{channel}.png",
             f"confusion-{channel}.png"]
    return names + ([f"margins-by-facet-{channel}.png"] if facet else [])


SUMMARY = {"cost_fp": 1.0, "cost_fn": 5.0, "num_round": 100, "missing": None, "objective": "<cost>"}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    channels = [make_channel("train", seed=1),
                make_channel("validation", seed=2, rule=DecisionRule("constrained", 0.4, -0.6, 0.1)),
                make_channel("test", seed=3, facet=False, per_row=True)]
    files = report.write_report(str(out), channels, "Credit <model> & co", SUMMARY, FACET)
    return out, channels, files, (out / "report.html").read_text(encoding="utf-8")


def test_writes_every_expected_file_and_returns_them(written):
    out, _, files, _ = written
    expected = files_for("train") + files_for("validation") + files_for("test", facet=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(expected + ["report.html"])
    assert sorted(files) == sorted(str(out / name) for name in expected + ["report.html"])


def test_every_png_is_valid_and_sensibly_sized(written):
    out, _, _, _ = written
    for path in out.glob("*.png"):
        assert path.read_bytes()[:8] == PNG_MAGIC, path.name
        image = matplotlib.image.imread(path)
        height, width = image.shape[:2]
        assert 300 <= height <= 1200 and 400 <= width <= 1400, (path.name, image.shape)
        assert image.std() > 0.01, f"{path.name} is blank"
        assert path.stat().st_size < 250_000, path.name


def test_html_embeds_every_image_by_relative_name(written):
    out, _, _, text = written
    assert sorted(re.findall(r'<img src="([^"]+)"', text)) == sorted(p.name for p in out.glob("*.png"))


def test_html_shows_the_metrics_training_computed(written):
    _, channels, _, text = written
    for ch in channels:
        m = ch.metrics
        for shown in (f"{m['auc']:.4f}", f"{m['expected_cost']:.6g}", f"{m['savings']:.4f}",
                      f"{m['brier']:.4f}", f"{m['ece']:.4f}", f"{m['logloss']:.4f}"):
            assert shown in text, (ch.name, shown)
        for k in ("tp", "fp", "fn", "tn"):
            assert f">{m['confusion_matrix'][k]:,}<" in text
        for r in m["reliability"]:
            if r["rows"]:
                assert f"{r['rows']:,} / {r['mean_probability']:.4f} / {r['observed_rate']:.4f}" in text
    # the constrained channel's alternative: the Bayes rule
    assert f"{channels[1].alternatives['bayes']['expected_cost']:.6g}" in text
    assert "Fitted on these rows: trees" in text


def test_html_has_summary_and_bias_table(written):
    _, channels, _, text = written
    assert "<h2>Bias metrics</h2>" in text
    dppl = channels[0].bias["post_training"]["DPPL"]
    assert re.search(rf"<td>DPPL</td><td class=\"num\">{re.escape(report.format_value(dppl))}</td>", text)
    assert "<td>num_round</td><td>100</td>" in text and "<td>missing</td><td>n/a</td>" in text


def test_html_escapes_text_and_needs_no_network(written):
    _, _, _, text = written
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;$x$&#x27;)&lt;/script&gt;" in text
    assert "Credit &lt;model&gt; &amp; co" in text and "&lt;cost&gt;" in text
    assert "http://" not in text and "https://" not in text


def test_output_is_deterministic(tmp_path, written):
    out, channels, _, _ = written
    report.write_report(str(tmp_path), channels, "Credit <model> & co", SUMMARY, FACET)
    for path in out.iterdir():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_uses_the_agg_backend():
    assert matplotlib.get_backend().lower() == "agg"


def test_the_roc_chart_is_the_roc_of_the_probabilities(written):
    """Drawn from the per-class histogram: every exact ROC point of the scores lies on it."""
    rng = np.random.default_rng(11)
    n = 2000
    y = (rng.random(n) < 0.3).astype(np.int8)
    p = np.round(1 / (1 + np.exp(-(2 * y + rng.normal(0, 1, n)))), 3)  # ties, bins apart
    ch = make_channel("roc", n, label=y, p=p, facet=False)
    fig = report._roc_chart(ch)
    line = next(l for l in fig.axes[0].get_lines() if l.get_label().startswith("calibrated"))
    fpr, tpr = line.get_xdata(), line.get_ydata()
    exact_fpr, exact_tpr, _ = roc_curve(y, p)
    for x, t in zip(exact_fpr, exact_tpr):
        assert np.any(np.isclose(fpr, x) & np.isclose(tpr, t)), (x, t)


def test_the_cost_chart_is_the_realised_cost_of_every_shift(written):
    ch = written[1][2]  # per-row costs
    fig = report._cost_chart(ch)
    line = fig.axes[0].get_lines()[0]
    edges, cost = line.get_xdata(), line.get_ydata()
    n = ch.metrics["rows"]
    assert np.allclose(cost * n, [ch.shifts.total_cost()[np.argmin(np.abs(ShiftHistogram.edges() - e))]
                                  for e in edges])


def test_edge_cases_say_so_and_do_not_warn(tmp_path):
    n = 400
    rng = np.random.default_rng(7)
    p = rng.random(n)
    channels = [
        make_channel("single class", n, label=np.zeros(n, np.int8), p=p),
        make_channel("all positive", n, label=np.ones(n, np.int8), p=p),
        make_channel("one row", 1, label=np.array([1], np.int8), p=np.array([0.7]),
                     sensitive=np.array([True])),
        make_channel("tied", n, p=np.full(n, 0.21)),
        make_channel("extreme", n, p=(rng.random(n) < 0.5).astype(float)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        files = report.write_report(str(tmp_path), channels, "edge cases", {}, "f")
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    for path in files[:-1]:
        assert path.endswith(".png") and open(path, "rb").read(8) == PNG_MAGIC
    assert "Only class 0 is present on this channel" in text
    assert "Only class 1 is present on this channel" in text
    assert "Facet a is empty on this channel" in text  # the one-row channel's only row is in d


CLASSES = ("low", "<mid>", "high")
CLASS_SETTINGS = hyperparameters.parse({
    "classes": '["low", "<mid>", "high"]', "cost_matrix": "[[0, 1, 4], [2, 0, 1], [9, 3, 0]]",
    "facet_column": "f", "facet_values_or_threshold": "[1]", "label_values_or_threshold": '["high"]',
    "fairness_metrics": "DPPL,DI"})


def make_class_channel(name, n=600, seed=0, *, sensitive=None):
    """A ChannelResult of K = 3 made by training's own evaluation (class_kinds.ManyClasses)."""
    rng = np.random.default_rng(seed)
    s = (rng.random(n) < 0.3) if sensitive is None else sensitive
    y = rng.integers(0, 3, n)
    margins = 2.0 * np.eye(3)[y] + rng.normal(0, 1.2, (n, 3))
    p = np.exp(margins) / np.exp(margins).sum(axis=1, keepdims=True)
    data = Dataset(np.zeros((n, 1), np.float32), y.astype(np.int8), ["x"],
                   RowCosts.constant(COSTS, n), "mem", False, facet=s.astype(float))
    kind = class_kinds.ManyClasses(CLASS_SETTINGS)
    return kind.evaluate(Channel(name, data, s), p, kind.bayes, 0, SOLO, "model",
                         ["trees"] if name == "train" else [])


@pytest.fixture(scope="module")
def written_classes(tmp_path_factory):
    out = tmp_path_factory.mktemp("report_classes")
    channels = [make_class_channel("train", seed=1), make_class_channel("test", seed=2)]
    files = report.write_report(str(out), channels, "Wine <3>", {"classes": "low, <mid>, high"},
                                "f", ["x"], CLASSES)
    return out, channels, files, (out / "report.html").read_text(encoding="utf-8")


def test_many_classes_write_their_charts_on_the_one_page(written_classes):
    out, channels, files, text = written_classes
    expected = [f"{chart}-{ch}.png" for ch in ("train", "test") for chart in ("confusion", "reliability")]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected + ["report.html"])
    assert sorted(files) == sorted(str(out / name) for name in expected + ["report.html"])
    assert sorted(re.findall(r'<img src="([^"]+)"', text)) == sorted(expected)
    for path in out.glob("*.png"):
        assert path.read_bytes()[:8] == PNG_MAGIC and matplotlib.image.imread(path).std() > 0.01
    # the one skeleton: summary, metrics from the registry, bias, channel sections
    for heading in ("<h2>Summary</h2>", "<h2>Metrics per channel</h2>", "<h2>Bias metrics</h2>",
                    '<h2 id="channel-test">Channel: test</h2>'):
        assert heading in text
    assert "<h2>Calibration</h2>" not in text  # K >= 3 draws each class's reliability instead
    assert "Wine &lt;3&gt;" in text and "&lt;mid&gt;" in text and "<mid>" not in text
    for ch in channels:
        m = ch.metrics
        for shown in (f"{m['balanced_accuracy']:.4f}", f"{m['top_label_ece']:.4f}",
                      f"{m['expected_cost']:.6g}", f"{m['cost_all'][2] / m['rows']:.6g}",
                      f"{m['recall_per_class'][1]:.4f}",
                      report.format_value(ch.bias["per_class"]["high"]["DPPL"])):
            assert shown in text, (ch.name, shown)
    for label in ("balanced accuracy (served)", "recall of &lt;mid&gt;", "decide high for all",
                  "DPPL of deciding low", "favourable (high)"):
        assert label in text
    assert "recall (served)" not in text  # class 1's recall: logged for K = 2 only


def test_many_classes_confusion_chart_shows_each_cell(written_classes):
    ch = written_classes[1][1]
    m = ch.metrics
    fig = report.ManyClassPage(CLASSES).charts(ch, "test")[0][2](ch)
    cells = [t.get_text() for t in fig.axes[0].texts]
    counts, costs = np.array(m["confusion"]), np.array(m["cell_costs"])
    assert len(cells) == 9 and counts.sum() == m["rows"]
    for (i, j), text in zip(np.ndindex(3, 3), cells):
        assert text.startswith(f"{counts[i, j]:,}\n") and f"cost {costs[i, j] / m['rows']:.4g}" in text


def test_many_classes_note_an_empty_facet(tmp_path):
    channel = make_class_channel("test", 200, sensitive=np.zeros(200, bool))
    report.write_report(str(tmp_path), [channel], "t", {}, "f", ["x"], CLASSES)
    assert "Facet d has no row on this channel" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("classes", [report.BINARY_CLASSES, CLASSES])
def test_rejects_two_channels_with_one_file_name(tmp_path, classes):
    """For any K: channels "a b" and "a_b" would overwrite each other's charts."""
    make = make_channel if classes == report.BINARY_CLASSES else make_class_channel
    with pytest.raises(ValueError, match="same file names"):
        report.write_report(str(tmp_path), [make("a b", 100), make("a_b", 100)], "t", {},
                            classes=classes)
    assert not list(tmp_path.iterdir())  # refused before anything is written


@pytest.mark.parametrize("given, served", [
    ({}, "the average of the fold models"),
    ({"served_model": "refit"}, "refit on every fit row"),
    ({"calibration_data": "validation"}, "trained on train (the validation channel held out)"),
])
def test_the_summary_names_the_model_the_job_serves(given, served):
    """With calibration_data 'validation' there are no fold models and nothing is refit: the
    model is the one trained on train."""
    from costaware.training import pipeline as training

    rng = np.random.default_rng(5)

    def rows(n):
        x = rng.normal(size=(n, 3)).astype(np.float32)
        y = (x[:, 0] + rng.normal(size=n) > 0.5).astype(np.int8)
        return Dataset(x, y, ["a", "b", "c"], RowCosts.constant(COSTS, n), "mem", True)

    settings = hyperparameters.parse({"num_round": "3", "max_depth": "2", **given})
    result = training.train(settings, rows(400), rows(200), log=lambda line: None)
    assert report.job_summary(result, settings)["served model"] == served
