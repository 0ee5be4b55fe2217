"""The monitoring job's ``report.html``: one self-contained page (inline CSS and SVG, no script,
no network; all text escaped) with the window against the baseline: the violations, the cost
figures, calibration (with the reliability diagram), bias, drift per column, and what the reader
counted."""

from __future__ import annotations

from html import escape

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
         "padding:.25em .6em;text-align:left}td.n{text-align:right;font-variant-numeric:"
         "tabular-nums}th{background:#f2f2f2}.bad{background:#fde2e1}.ok{color:#1a7f37}")


def number_text(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def _interval(figure: dict | None) -> str:
    if not figure or figure.get("value") is None:
        return "n/a"
    if figure.get("se") is None:
        return number_text(figure["value"])
    half = 1.96 * figure["se"]
    return f"{number_text(figure['value'])} ({number_text(figure['value'] - half)} to {number_text(figure['value'] + half)})"


def html_table(header: list[str], rows: list[list[str]], bad: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=bad' if i in bad else ''}>" + "".join(
            f"<td class=n>{escape(c)}</td>" if j else f"<td>{escape(c)}</td>"
            for j, c in enumerate(row)) + "</tr>" for i, row in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _reliability_svg(bins: list[dict]) -> str:
    """Mean probability (x) against the observed rate (y) per bin, dots sized by rows."""
    size, pad = 260, 30
    scale = size - 2 * pad
    most = max([b["rows"] for b in bins] + [1])
    dots = "".join(
        f'<circle cx="{pad + b["mean_probability"] * scale:.1f}" '
        f'cy="{size - pad - b["observed"] * scale:.1f}" r="{2 + 6 * (b["rows"] / most) ** 0.5:.1f}" '
        f'fill="#0072b2"><title>{b["rows"]} rows: mean p {b["mean_probability"]:.3f}, observed '
        f'{b["observed"]:.3f}</title></circle>'
        for b in bins if b["rows"])
    return (f'<svg width="{size}" height="{size}" xmlns="http://www.w3.org/2000/svg">'
            f'<rect x="{pad}" y="{pad}" width="{scale}" height="{scale}" fill="none" stroke="#999"/>'
            f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="#bbb" '
            f'stroke-dasharray="4"/>{dots}'
            f'<text x="{size / 2}" y="{size - 8}" text-anchor="middle" font-size="11">mean '
            f'probability</text><text x="10" y="{size / 2}" font-size="11" transform="rotate(-90 '
            f'10 {size / 2})" text-anchor="middle">observed rate</text></svg>')


def render(baseline: dict, window: dict, violations: list, spec) -> str:
    own, base = window["costaware"], baseline["costaware"]
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>costaware monitoring"
             f"</title><style>{STYLE}</style></head><body><h1>costaware monitoring</h1>"]
    span = own.get("window") or {}
    parts.append(f"<p>Window {escape(str(span.get('start_time') or '-'))} to "
                 f"{escape(str(span.get('end_time') or '-'))}: {window['dataset']['item_count']:,} "
                 f"rows; baseline: {escape(str(base.get('source', '')))}.</p>")
    parts.append(f"<h2>Violations ({len(violations)})</h2>")
    parts.append(html_table(["check", "figure", "description"],
                        [[v["constraint_check_type"], v["feature_name"], v["description"]]
                         for v in violations]) if violations else "<p class=ok>none</p>")
    bu, wu = base["unlabelled"], own["unlabelled"]
    rows = [["expected cost per decision", _interval(bu.get("expected_cost")),
             _interval(wu.get("expected_cost"))]]
    for k, (b, w) in enumerate(zip(bu.get("base_rate") or [], wu.get("base_rate") or [])):
        rows.append([f"mean probability of class {spec.classes[k]}", _interval(b), _interval(w)])
    if bu.get("dppl") or wu.get("dppl"):
        rows.append(["DPPL of the decisions", _interval(bu.get("dppl")), _interval(wu.get("dppl"))])
    parts.append("<h2>Without labels</h2>" + html_table(["figure (95% interval)", "baseline",
                                                      "window"], rows))
    bl, wl = base["labelled"], own["labelled"]
    parts.append(f"<h2>With labels ({wl.get('rows', 0):,} labelled rows)</h2>")
    if wl.get("rows"):
        def pair(name, key):
            return [name, _interval(bl.get(key)), _interval(wl.get(key))]
        rows = [pair("realized cost per decision", "realized_cost"),
                pair("cost minus the cheapest trivial rule", "cost_minus_trivial"),
                ["savings against the trivial rules",
                 _interval({"value": bl.get("savings"), "se": bl.get("savings_se")}),
                 _interval({"value": wl.get("savings"), "se": wl.get("savings_se")})],
                pair("predicted minus realized cost", "cost_gap"),
                pair("log loss", "log_loss"),
                *[[f"observed share of class {spec.classes[k]}", _interval(b), _interval(w)]
                  for k, (b, w) in enumerate(zip(bl.get("observed_base_rate") or [],
                                                 wl.get("observed_base_rate") or []))], ["ECE", number_text(bl.get("ece")), number_text(wl.get("ece"))],
                pair("AUC", "auc")]
        parts.append(html_table(["figure (95% interval)", "baseline", "window"], rows))
        parts.append("<h3>Confusion matrix (rows: label, columns: decision)</h3>" + html_table(
            ["label"] + [str(c) for c in spec.classes],
            [[str(spec.classes[i])] + [f"{c:,}" for c in row]
             for i, row in enumerate(wl["confusion"])]))
        parts.append("<h3>Reliability</h3>" + _reliability_svg(wl["reliability"]))
        if wl.get("bias"):
            parts.append("<h3>Bias of the served decisions (95% bootstrap interval)</h3>" + html_table(
                ["metric", "window", "interval", "baseline"],
                [[name, number_text(v["value"]), "n/a" if not v["interval"] else
                  f"{number_text(v['interval'][0])} to {number_text(v['interval'][1])}",
                  number_text(((bl.get("bias") or {}).get(name) or {}).get("value"))]
                 for name, v in wl["bias"].items()]))
    else:
        parts.append("<p>No ground truth matched this window's captures.</p>")
    flagged = {v["feature_name"] for v in violations}
    columns = own["scores"] + window["features"]
    parts.append("<h2>Drift per column</h2>" + html_table(
        ["column", "distance", "values", "missing", "mean"],
        [[c["name"], number_text((c.get("costaware") or {}).get("distance")),
          f"{c['numerical_statistics']['common']['num_present']:,}",
          f"{c['numerical_statistics']['common']['num_missing']:,}",
          number_text(c["numerical_statistics"].get("mean"))] for c in columns],
        {i for i, c in enumerate(columns) if c["name"] in flagged}))
    counts = own.get("counts", {})
    parts.append("<h2>What was read</h2>" + html_table(
        ["", "count"], [[k, f"{v:,}"] for k, v in (counts.get("counts") or {}).items()]))
    if counts.get("first_seen"):
        parts.append(html_table(["first seen", "where"],
                            [[k, v] for k, v in counts["first_seen"].items()]))
    parts.append("</body></html>\n")
    return "".join(parts)
