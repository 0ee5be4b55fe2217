"""The comparison's ``report.html``: one self-contained page (inline CSS and SVG, no script, no
network; all text escaped): the recommendation, both variants' realized cost, the difference
over time with both intervals, per facet, the bias metrics that moved, and what was read."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from ..monitoring.report import STYLE, html_table, number_text


def _interval(pair) -> str:
    if not pair:
        return "n/a"
    return f"{number_text(pair[0])} to {number_text(pair[1])}"


def _over_time_svg(points: list[dict]) -> str:
    """Cumulative difference (challenger minus champion) against labelled decisions: the line,
    the one-look 95% interval (dark band) and the anytime-valid one (light band); zero dashed."""
    points = [p for p in points if p["interval"] is not None]
    if len(points) < 2:
        return "<p>Too few labelled decisions over time for a chart.</p>"
    width, height, pad = 640, 260, 40
    xs = [p["rows"] for p in points]
    lows = [p["sequence_interval"][0] for p in points] + [0.0]
    highs = [p["sequence_interval"][1] for p in points] + [0.0]
    lo, hi = min(lows), max(highs)
    span = (hi - lo) or 1.0
    x_of = (lambda r: pad + (r - xs[0]) / ((xs[-1] - xs[0]) or 1) * (width - 2 * pad))
    y_of = (lambda v: height - pad - (v - lo) / span * (height - 2 * pad))

    def band(key: str, colour: str) -> str:
        upper = [f"{x_of(p['rows']):.1f},{y_of(p[key][1]):.1f}" for p in points]
        lower = [f"{x_of(p['rows']):.1f},{y_of(p[key][0]):.1f}" for p in reversed(points)]
        return f'<polygon points="{" ".join(upper + lower)}" fill="{colour}"/>'

    line = " ".join(f"{x_of(p['rows']):.1f},{y_of(p['difference']):.1f}" for p in points)
    zero = y_of(0.0)
    return (f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
            + band("sequence_interval", "#dbe9f6") + band("interval", "#9ecae1")
            + f'<polyline points="{line}" fill="none" stroke="#08519c" stroke-width="2"/>'
            f'<line x1="{pad}" y1="{zero:.1f}" x2="{width - pad}" y2="{zero:.1f}" stroke="#555" '
            f'stroke-dasharray="4"/>'
            f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle" font-size="11">labelled '
            f'decisions ({xs[0]:,} to {xs[-1]:,})</text>'
            f'<text x="{pad}" y="{pad - 10}" font-size="11">challenger minus champion, per '
            f'decision ({number_text(lo)} to {number_text(hi)}; below the dashed line the '
            f'challenger is cheaper)</text></svg>')


def _when(seconds) -> str:
    if seconds is None:
        return "n/a"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def render(result: dict) -> str:
    r, d = result["recommendation"], result["difference"]
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>costaware compare</title>"
             f"<style>{STYLE}</style></head><body><h1>Champion or challenger</h1>",
             f"<p><b>{escape(r['action'].upper())}</b>: {escape(r['reason'])}</p>",
             f"<p>Design: {escape(result['design'])}; decisions priced at "
             f"{escape(result['priced_at'])}.</p>"]
    for flag in result.get("flags", []):
        parts.append(f"<p class=bad>Flag: {escape(flag)}</p>")
    for caveat in result.get("caveats", []):
        parts.append(f"<p class=bad>Caveat: {escape(caveat)}</p>")
    rows = []
    for name in ("champion", "challenger"):
        side = result[name]
        cost = side["realized_cost"]
        rows.append([name, f"{side['decided_rows']:,}", f"{side['labelled_rows']:,}",
                     number_text(cost["mean"]), number_text(cost["se"])])
    parts.append("<h2>Realized cost per decision</h2>" + html_table(
        ["variant", "decided", "labelled", "cost per decision", "standard error"], rows))
    parts.append("<h2>Difference (challenger minus champion)</h2>" + html_table(
        ["figure", "value"],
        [["difference per decision", number_text(d["difference"])],
         ["95% interval (one look)", _interval(d["interval"])],
         ["95% anytime-valid interval (the recommendation's)",
          _interval(r.get("sequence_interval"))],
         ["probability the challenger is cheaper",
          number_text(d["probability_challenger_cheaper"], 3)],
         ["more labelled decisions needed", "n/a" if r.get("more_labels") is None
          else f"{r['more_labels']:,}"]]))
    parts.append("<h2>Over time</h2>" + _over_time_svg(result["over_time"]))
    if result["over_time"]:
        parts.append(html_table(
            ["up to", "labelled", "difference", "95% interval", "anytime-valid interval"],
            [[_when(p["time"]), f"{p['rows']:,}", number_text(p["difference"]),
              _interval(p["interval"]), _interval(p["sequence_interval"])]
             for p in result["over_time"]]))
    if result.get("facets"):
        parts.append("<h2>Per facet</h2>" + html_table(
            ["facet", "labelled", "difference", "95% interval"],
            [[name, f"{f['rows']:,}", number_text(f["difference"]), _interval(f["interval"])]
             for name, f in result["facets"].items()]))
        for name, f in result["facets"].items():
            parts.append(f"<h3>Over time, facet {escape(name)}</h3>"
                         + _over_time_svg(f.get("over_time") or []))
        moved = {i for i, b in enumerate(result["bias"].values())
                 if b["interval"] is not None and b["interval"][0] > 0}
        parts.append("<h2>Bias of the decisions (Clarify)</h2>" + html_table(
            ["metric", "champion", "challenger", "parity at", "change in distance from parity",
             "95% interval"],
            [[name, number_text(b["champion"]), number_text(b["challenger"]),
              number_text(b["fair"]), number_text(b["change_in_distance"]),
              _interval(b["interval"])] for name, b in result["bias"].items()], moved))
    parts.append("<h2>Labels by decision</h2>" + html_table(
        ["variant", "labelled share by decision", "chi-square p"],
        [[name, ", ".join(f"{k}: {number_text(v, 3)}"
                          for k, v in t["labelled_share_by_decision"].items()),
          number_text(t["p_value"], 3)] for name, t in result["label_dependence"].items()]))
    for name, counts in result["counts"].items():
        if not isinstance(counts, dict):
            continue
        parts.append(f"<h2>What was read: {escape(name)}</h2>" + html_table(
            ["", "count"], [[k, f"{v:,}"] for k, v in counts["counts"].items()]))
        if counts.get("first_seen"):
            parts.append(html_table(["first seen", "where"],
                                    [[k, v] for k, v in counts["first_seen"].items()]))
    parts.append("</body></html>\n")
    return "".join(parts)
