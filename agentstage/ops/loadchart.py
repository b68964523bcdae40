"""The pictures of a load test: latency percentiles and failures over the run.

- :func:`html_report`: one self-contained HTML file (inline SVG, no script, nothing fetched) with
  two charts over the run's seconds — p50/p95/p99 latency, and requests/s with errors/s and
  timeouts/s — the phase boundaries marked, and a table of the step phase's steps. Each series is
  a ``<polyline>`` named by ``data-series`` so a reader (or a test) can find it.
- :func:`sparkline`: a one-line terminal chart (block characters) of a series, for the summary.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["html_report", "sparkline", "LATENCY_SERIES", "RATE_SERIES"]

#: (key in a tick, label, colour)
LATENCY_SERIES = (("p50", "p50", "#2b8a3e"), ("p95", "p95", "#e8590c"), ("p99", "p99", "#c92a2a"))
RATE_SERIES = (
    ("rps", "requests/s", "#1c7ed6"),
    ("errors_per_s", "errors/s", "#c92a2a"),
    ("timeouts_per_s", "timeouts/s", "#7048e8"),
)
WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 900, 260, 64, 16, 24, 36
_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """``values`` as block characters, lowest to highest (a gap where a value is missing)."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    span = hi - lo or 1.0
    return "".join(
        " " if v is None or not math.isfinite(v) else _BLOCKS[min(7, int((v - lo) / span * 7.999))] for v in values
    )


def _nice_top(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _chart(
    title: str,
    unit: str,
    points: list[dict[str, Any]],
    series: tuple[tuple[str, str, str], ...],
    marks: list[tuple[float, str]],
) -> str:
    t0 = points[0]["t"] if points else 0.0
    t1 = max(points[-1]["t"] - t0, 1.0) if points else 1.0
    top = _nice_top(max((p[k] for p in points for k, _, _ in series if p.get(k) is not None), default=1.0))
    inner_w, inner_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(t: float) -> float:
        return PAD_L + (t - t0) / t1 * inner_w

    def y(v: float) -> float:
        return PAD_T + inner_h - v / top * inner_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{html.escape(title)}">',
        f'<text x="{PAD_L}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i in range(5):
        v = top * i / 4
        parts.append(
            f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#dee2e6"/>'
            f'<text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:g}{unit}</text>'
        )
    for i in range(6):
        t = t1 * i / 5
        parts.append(
            f'<text x="{x(t0 + t):.1f}" y="{HEIGHT - 14}" font-size="11" text-anchor="middle">{t:.0f} s</text>'
        )
    for t, label in marks:
        parts.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{PAD_T}" y2="{PAD_T + inner_h}" stroke="#868e96" '
            f'stroke-dasharray="4 3"/><text x="{x(t) + 4:.1f}" y="{PAD_T + 12}" font-size="11">'
            f"{html.escape(label)}</text>"
        )
    legend_x = WIDTH - PAD_R - 110 * len(series)
    for i, (key, label, colour) in enumerate(series):
        coords = " ".join(f"{x(p['t']):.1f},{y(p[key]):.1f}" for p in points if p.get(key) is not None)
        parts.append(
            f'<polyline data-series="{key}" fill="none" stroke="{colour}" stroke-width="1.6" points="{coords}"/>'
        )
        lx = legend_x + 110 * i
        parts.append(
            f'<rect x="{lx}" y="6" width="12" height="4" fill="{colour}"/>'
            f'<text x="{lx + 16}" y="12" font-size="11">{html.escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _step_table(steps: list[dict[str, Any]]) -> str:
    if not steps:
        return ""

    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.0f}"

    rows = "".join(
        f'<tr class="{"ok" if s["ok"] else "bad"}"><td>{s["users"]}</td><td>{s["rps"]:.1f}</td>'
        f"<td>{s['requests']}</td><td>{s['timeouts']}</td><td>{s['errors']}</td><td>{s['error_ratio']:.2%}</td>"
        f"<td>{ms(s['p50'])}</td><td>{ms(s['p95'])}</td><td>{ms(s['p99'])}</td>"
        f"<td>{'✓' if s['ok'] else '✗'}</td></tr>"
        for s in steps
    )
    return (
        "<h2>Step phase</h2><table><tr><th>concurrent</th><th>req/s</th><th>requests</th><th>timeouts</th>"
        "<th>errors</th><th>failed</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th></th></tr>"
        f"{rows}</table>"
    )


def html_report(findings: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    """The HTML report of a run (``findings``: :func:`agentstage.ops.loadtest.findings`;
    ``results``: each phase's ``phase_end`` event with its per-second ``series``)."""
    points: list[dict[str, Any]] = []
    marks: list[tuple[float, str]] = []
    for name in ("steady", "step"):
        if name in results:
            marks.append((results[name]["started"], name))
            points += results[name]["series"]
    if points and marks:
        marks = [(max(t, points[0]["t"]), label) for t, label in marks]
    title = f"{findings['agent']} {findings['version']} at {findings['url']}"

    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.0f} ms"

    summary = []
    for name, p in findings["phases"].items():
        summary.append(
            f"<li><b>{html.escape(name)}</b>: {p['requests']} requests, {p['rps']:.1f} req/s, "
            f"{p['timeouts']} timeouts, {p['errors']} errors; p50 {ms(p['p50'])}, p95 {ms(p['p95'])}, "
            f"p99 {ms(p['p99'])}</li>"
        )
    cap = findings.get("capacity")
    if cap:
        if cap["errors_start_at_users"] is not None:
            summary.append(
                f"<li><b>capacity</b>: {cap['max_sustainable_users']} concurrent "
                f"({cap['max_sustainable_rps'] or 0:.1f} req/s) within {cap['max_error_ratio']:.2%} failures; "
                f"errors start at {cap['errors_start_at_users']} concurrent</li>"
            )
        else:
            summary.append(f"<li><b>capacity</b>: at least {cap['max_sustainable_users']} concurrent</li>")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Load test: {html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:24px;color:#212529}"
        "table{border-collapse:collapse}td,th{border:1px solid #dee2e6;padding:4px 8px;text-align:right}"
        "tr.bad td{background:#fff5f5}svg{display:block;margin:12px 0}"
        "</style></head><body>"
        f"<h1>Load test: {html.escape(title)}</h1><ul>{''.join(summary)}</ul>"
        + _chart("Latency (ms)", "", points, LATENCY_SERIES, marks)
        + _chart("Requests and failures per second", "", points, RATE_SERIES, marks)
        + _step_table((results.get("step") or {}).get("steps", []))
        + "</body></html>\n"
    )
