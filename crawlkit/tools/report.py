"""The HTML report: one self-contained page drawn from the stats file's data (``Stats.full_dict``).

No script, font, stylesheet or image is fetched: the CSS is inline and the charts are SVG
drawn here, so the file can be mailed, archived or opened offline years later. Every figure
carries its exact value in a ``data-*`` attribute beside the formatted text, so tests (and
anyone scraping reports) read numbers, not layout. Runs in the CLI's process after the crawl.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any

TOP_HOSTS = 20  # hosts in the "pages and errors per host" chart
SLOW_HOSTS = 10  # hosts in the "slowest hosts" chart
WIDTH = 960  # SVG width in user units; the charts scale to the page

_STATUS_COLOURS = {"2": "#2e8b57", "3": "#4682b4", "4": "#e69500", "5": "#c0392b"}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0;
       background: #f6f7f9; color: #1d232b; }
main { max-width: 1000px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
p.meta { color: #5b6673; margin: 0 0 16px; font-size: 14px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 10px 12px; }
.card .label { font-size: 12px; color: #5b6673; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 22px; font-weight: 600; margin-top: 2px; font-variant-numeric: tabular-nums; }
.card.bad .value { color: #c0392b; }
section.chart { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 12px; }
svg { width: 100%; height: auto; display: block; font-size: 12px; }
svg text { fill: #1d232b; }
svg .axis { stroke: #9aa4af; stroke-width: 1; }
svg .grid { stroke: #e4e7eb; stroke-width: 1; }
svg text.muted { fill: #5b6673; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e4e7eb; }
td.n, th.n { text-align: right; }
details { margin-top: 8px; }
.none { color: #5b6673; font-style: italic; }
"""


def render_report(data: dict[str, Any], title: str = "crawlkit",
                  run: Sequence[tuple[str, Any, str]] = ()) -> str:
    """The report page for ``data`` (the dict written to the stats file) as one HTML string.

    ``run``: what produced the crawl, rows of (name, value, where it was set): the spider, the
    seeds, then every setting that is not the default.
    """
    hosts = data.get("hosts", {})
    errors = sum(data["errors"].values())
    counts = data["counts"]
    cards = [
        ("pages", "Pages", data["pages"], f"{data['pages']:,}"),
        ("pages_per_s", "Pages/s", data["pages_per_s"], f"{data['pages_per_s']:,}"),
        ("items", "Items", data["items"], f"{data['items']:,}"),
        ("elapsed_s", "Elapsed", data["elapsed_s"], _duration(data["elapsed_s"])),
        ("errors", "Errors", errors, f"{errors:,}"),
        ("bytes", "Downloaded", data["bytes"], _size(data["bytes"])),
        ("hosts", "Hosts", len(hosts), f"{len(hosts):,}"),
        ("duplicates", "Duplicates dropped", data["duplicates"], f"{data['duplicates']:,}"),
        ("redirects", "Redirects", counts.get("redirects", 0), f"{counts.get('redirects', 0):,}"),
        ("retries", "Retries", counts.get("retries", 0), f"{counts.get('retries', 0):,}"),
        (
            "robots_disallowed", "Robots disallowed",
            counts.get("robots_disallowed", 0), f"{counts.get('robots_disallowed', 0):,}",
        ),
        ("offsite", "Offsite links", counts.get("dropped_offsite", 0), f"{counts.get('dropped_offsite', 0):,}"),
    ]
    rendered, crashed = counts.get("rendered", 0), counts.get("render_crashed", 0)
    if rendered or crashed:  # a crawl that rendered pages: how many, and how its browsers fared
        cards.append(("rendered", "Rendered in a browser", rendered,
                      f"{rendered:,} <small>({counts.get('render_recycled', 0)} recycled, {crashed} crashed)</small>"))
    card_html = "".join(
        f'<div class="card{" bad" if key == "errors" and value else ""}" data-key="{key}" data-value="{value}">'
        f'<div class="label">{label}</div><div class="value">{text}</div></div>'
        for key, label, value, text in cards
    )
    title_text = html.escape(f"{title}: crawl report")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title_text}</title>',
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>{title_text}</h1>",
        f'<p class="meta" id="reason" data-reason="{html.escape(data["reason"])}">'
        f'Crawl {html.escape(data["reason"])}; started '
        f'{html.escape(data.get("started_at", "?"))}, {_duration(data["elapsed_s"])}.</p>',
        f'<div class="cards">{card_html}</div>',
        "<h2>What ran: spider, seeds and the settings that are not the defaults</h2>",
        _run_table(run),
        "<h2>Pages per second</h2>",
        f'<section class="chart">{_rate_chart(data["series"])}</section>',
        "<h2>Status codes of every response (robots.txt, redirects and retried answers too)</h2>",
        f'<section class="chart">{_status_chart(data["statuses"])}</section>',
        f"<h2>Pages and errors per host{_top_note(len(hosts), TOP_HOSTS)}</h2>",
        f'<section class="chart">{_host_chart(hosts)}'
        '<p class="meta">Blue: pages; red: errors (failed exchanges, callback errors).</p></section>',
        f"<h2>Slowest hosts (mean response time){_top_note(len(hosts), SLOW_HOSTS)}</h2>",
        f'<section class="chart">{_slow_chart(hosts)}</section>',
        *_pace_section(hosts),
        "<h2>Errors by kind</h2>",
        _table(["error", "count"], sorted(data["errors"].items(), key=lambda kv: -kv[1]), "errors"),
        *_gone(data.get("gone", []), counts.get("gone", 0)),
        "<details><summary>Every counter</summary>",
        _table(["counter", "value"], sorted(counts.items()), "counts"),
        "</details></main></body></html>",
    ]
    return "\n".join(parts)


def _gone(urls: list[str], count: int) -> list[str]:
    """The pages a recrawl found gone (404 or 410), if any: what an archivist looks for first."""
    if not urls:
        return []
    listed = f" ({len(urls):,} listed)" if count > len(urls) else ""
    items = "".join(f"<li>{html.escape(url)}</li>" for url in urls)
    return [f"<h2>Gone since the last crawl (404 or 410 to a recrawl): {count:,}{listed}</h2>",
            f'<ul id="gone">{items}</ul>']


def _run_table(rows: Sequence[tuple[str, Any, str]]) -> str:
    if not rows:
        return '<p class="none" id="run">Not recorded.</p>'
    body = "".join(
        f'<tr data-key="{html.escape(name)}" data-value="{html.escape(json.dumps(value))}">'
        f"<td>{html.escape(name)}</td><td>{html.escape(str(value))}</td>"
        f'<td class="origin">{html.escape(origin)}</td></tr>'
        for name, value, origin in rows
    )
    return f'<table id="run"><tr><th>name</th><th>value</th><th>set by</th></tr>{body}</table>'


def _top_note(total: int, shown: int) -> str:
    return f" (top {shown} of {total:,})" if total > shown else ""


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):  # powers of 1024: "MB" would be 1,000,000 bytes
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return ""  # not reached


def _table(header: list[str], rows: list[tuple[str, Any]], table_id: str) -> str:
    if not rows:
        return f'<p class="none" id="{table_id}">None.</p>'
    head = f"<tr><th>{html.escape(header[0])}</th><th class=\"n\">{html.escape(header[1])}</th></tr>"
    body = "".join(
        f'<tr data-key="{html.escape(str(key))}" data-value="{value}">'
        f'<td>{html.escape(str(key))}</td><td class="n">{value:,}</td></tr>'
        for key, value in rows
    )
    return f'<table id="{table_id}">{head}{body}</table>'


def _ticks(top: float, count: int = 4) -> list[float]:
    """Round axis values from 0 to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.1f}"


def _rate_chart(series: dict[str, Any]) -> str:
    """Pages per second between consecutive samples, as an area over time."""
    rows = series["rows"]
    points = []
    for (t0, p0, *_), (t1, p1, *_) in zip(rows, rows[1:]):
        if t1 > t0:
            points.append((t1, (p1 - p0) / (t1 - t0)))
    if not points:
        return '<p class="none" id="rate-chart">Too short a crawl to draw a rate.</p>'
    height, left, right, top, bottom = 240, 56, 16, 12, 34
    t_start = 0.0  # the crawl's start: a late first sample must not look like a crawl that started fast
    t_end = max(points[-1][0], t_start + 1e-9)
    ticks = _ticks(max(rate for _, rate in points))
    y_max = ticks[-1]
    plot_w, plot_h = WIDTH - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + (t - t_start) / (t_end - t_start) * plot_w

    def y(v: float) -> float:
        return top + plot_h - v / y_max * plot_h

    out = [
        f'<svg id="rate-chart" data-points="{len(points)}" viewBox="0 0 {WIDTH} {height}" role="img" '
        'aria-label="pages per second over time">'
    ]
    for tick in ticks:
        out.append(f'<line class="grid" x1="{left}" x2="{WIDTH - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>')
        out.append(f'<text class="muted" x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{_number(tick)}</text>')
    for t in _ticks(t_end - t_start, 6):
        if t_start + t <= t_end + 1e-9:
            out.append(f'<text class="muted" x="{x(t_start + t):.1f}" y="{height - 14}" text-anchor="middle">'
                       f'{_number(t)} s</text>')
    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in [(t_start, points[0][1]), *points])
    area = f"{x(t_start):.1f},{y(0):.1f} {line} {x(points[-1][0]):.1f},{y(0):.1f}"
    out.append(f'<polygon points="{area}" fill="#2e8b57" fill-opacity="0.15"/>')
    out.append(f'<polyline points="{line}" fill="none" stroke="#2e8b57" stroke-width="2"/>')
    out.append(f'<line class="axis" x1="{left}" x2="{WIDTH - right}" y1="{y(0):.1f}" y2="{y(0):.1f}"/>')
    out.append("</svg>")
    return "".join(out)


def _bars(
    chart_id: str, rows: Sequence[tuple[str, Sequence[tuple[float, str]], str, str]], label_width: int = 220
) -> str:
    """Horizontal bars: per row a label, stacked (value, colour) segments, a text at the end and data attributes."""
    if not rows:
        return f'<p class="none" id="{chart_id}">None.</p>'
    bar_h, gap, top = 18, 8, 4
    height = top + len(rows) * (bar_h + gap)
    longest = max(sum(v for v, _ in segments) for _, segments, _, _ in rows) or 1
    plot_w = WIDTH - label_width - 260  # room for the text after the longest bar
    out = [f'<svg id="{chart_id}" viewBox="0 0 {WIDTH} {height}" role="img">']
    for i, (label, segments, text, attrs) in enumerate(rows):
        y = top + i * (bar_h + gap)
        out.append(f"<g {attrs}>")
        out.append(f'<text x="{label_width - 8}" y="{y + 13}" text-anchor="end">{html.escape(_clip(label, 34))}</text>')
        x = float(label_width)
        for value, colour in segments:
            w = value / longest * plot_w
            if w > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" rx="2" fill="{colour}"/>'
                )
            x += w
        out.append(f'<text x="{x + 6:.1f}" y="{y + 13}">{html.escape(text)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _status_chart(statuses: dict[str, int]) -> str:
    rows = [
        (
            code,
            [(n, _STATUS_COLOURS.get(code[:1], "#7f8c8d"))],
            f"{n:,}",
            f'class="status" data-status="{html.escape(code)}" data-count="{n}"',
        )
        for code, n in sorted(statuses.items())
    ]
    return _bars("status-chart", rows, label_width=80)


def _host_chart(hosts: dict[str, dict[str, Any]]) -> str:
    top = sorted(hosts.items(), key=lambda kv: (-kv[1]["pages"], -kv[1]["errors"], kv[0]))[:TOP_HOSTS]
    rows = [
        (
            host,
            [(f["pages"], "#4682b4"), (f["errors"], "#c0392b")],
            f"{f['pages']:,} pages, {f['errors']:,} error{'' if f['errors'] == 1 else 's'}",
            f'class="host" data-host="{html.escape(host)}" data-pages="{f["pages"]}" data-errors="{f["errors"]}" '
            f'data-requests="{f["requests"]}"',
        )
        for host, f in top
    ]
    return _bars("host-chart", rows)


def _pace_section(hosts: dict[str, dict[str, Any]]) -> list[str]:
    """The hosts adaptive politeness slowed most, at the pace it left them (nothing when it was off)."""
    paced = [(h, f) for h, f in hosts.items() if f.get("per_host")]
    if not paced:
        return []
    slowest = sorted(paced, key=lambda kv: (kv[1]["per_host"], -kv[1]["delay_s"], kv[0]))[:SLOW_HOSTS]
    rows = [
        (
            host,
            [(f["per_host"], "#16a085")],
            f"{f['per_host']} at once, {f['delay_s']:g} s between starts",
            f'class="paced-host" data-host="{html.escape(host)}" data-per-host="{f["per_host"]}" '
            f'data-delay-s="{f["delay_s"]}"',
        )
        for host, f in slowest
    ]
    return [f"<h2>Adaptive politeness: the pace of the hosts it slowed most{_top_note(len(paced), SLOW_HOSTS)}</h2>",
            f'<section class="chart">{_bars("pace-chart", rows)}</section>']


def _slow_chart(hosts: dict[str, dict[str, Any]]) -> str:
    answered = ((h, f) for h, f in hosts.items() if f["requests"])
    slow = sorted(answered, key=lambda kv: (-kv[1]["mean_s"], kv[0]))[:SLOW_HOSTS]
    rows = [
        (
            host,
            [(f["mean_s"], "#e69500")],
            f"{f['mean_s'] * 1000:,.0f} ms mean, {f['max_s'] * 1000:,.0f} ms max",
            f'class="slow-host" data-host="{html.escape(host)}" data-mean-s="{f["mean_s"]}" data-max-s="{f["max_s"]}"',
        )
        for host, f in slow
    ]
    return _bars("slow-chart", rows)
