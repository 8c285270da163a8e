"""Draw a PNG preview of each dashboard from real Prometheus query results (Grafana itself is not needed).

``python grafana/preview.py --prometheus http://localhost:9090 --pipeline orders`` runs every panel query of
``grafana/dashboards/*.json`` with the template variables substituted (range queries for time series and state
timelines, instant queries for stats, bar gauges and tables) and writes ``docs/img/<dashboard uid>.png``: the
panels laid out on Grafana's 24-column grid with their titles and units.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
IMG_DIR = ROOT / "docs" / "img"

Json = dict[str, Any]

ALL = ".*"
"""What a multi-select variable set to All becomes in a regex matcher (the dashboards' ``allValue``)."""


# --- queries --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    panel_id: int
    title: str
    kind: str
    ref_id: str
    expr: str
    legend: str
    instant: bool


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, Json]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def data_panels(dashboard: Json) -> list[Json]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def panel_queries(dashboard: Json) -> list[PanelQuery]:
    return [
        PanelQuery(
            panel["id"],
            panel["title"],
            panel["type"],
            target["refId"],
            target["expr"],
            target.get("legendFormat", ""),
            bool(target.get("instant")),
        )
        for panel in data_panels(dashboard)
        for target in panel["targets"]
    ]


def variable_values(dashboard: Json, pipeline: str, *, rate_interval: str, time_range: str) -> dict[str, str]:
    """Values for every variable of ``dashboard``: All for multi-selects, ``pipeline`` for a single pipeline."""
    values = {"__rate_interval": rate_interval, "__range": time_range, "__interval": rate_interval}
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        if name == "datasource":
            continue
        if name == "pipeline_name" and not variable.get("multi"):
            values[name] = pipeline
        else:
            values[name] = variable.get("allValue") or ALL
    return values


_VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\$([A-Za-z_]\w*)")


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` / ``${name}`` / ``${name:format}`` by its value; unknown names are an error."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"variable ${name} has no value")
        return values[name]

    return _VARIABLE.sub(replace, expr)


class Prometheus:
    """The two Prometheus HTTP API calls the dashboards need."""

    def __init__(self, url: str, client: httpx.Client) -> None:
        self.url = url.rstrip("/")
        self.client = client

    def instant(self, expr: str, at: float) -> httpx.Response:
        return self.client.get(f"{self.url}/api/v1/query", params={"query": expr, "time": at})

    def range(self, expr: str, start: float, end: float, step: float) -> httpx.Response:
        params = {"query": expr, "start": start, "end": end, "step": step}
        return self.client.get(f"{self.url}/api/v1/query_range", params=params)


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    legend: str
    ref_id: str
    points: tuple[tuple[float, float], ...]
    """(time, value); one point for instant queries."""


def legend_of(template: str, labels: Mapping[str, str]) -> str:
    if template and template != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()
    shown = {k: v for k, v in labels.items() if k not in ("job", "instance", "__name__")}
    name = labels.get("__name__", "")
    return name + ("{" + ", ".join(f"{k}={v}" for k, v in shown.items()) + "}" if shown else "") or "value"


def parse_result(query: PanelQuery, body: Json) -> list[Series]:
    result = body["data"]["result"]
    if body["data"]["resultType"] == "scalar":
        result = [{"metric": {}, "value": result}]
    series = []
    for item in result:
        labels = item["metric"]
        raw = item["values"] if "values" in item else [item["value"]]
        points = tuple((float(t), float(v)) for t, v in raw)
        series.append(Series(labels, legend_of(query.legend, labels), query.ref_id, points))
    return series


def run_queries(
    prometheus: Prometheus, dashboard: Json, values: Mapping[str, str], start: float, end: float, step: float
) -> dict[int, list[Series]]:
    """Panel id -> series of all its queries; raises on any query Prometheus rejects."""
    results: dict[int, list[Series]] = {p["id"]: [] for p in data_panels(dashboard)}
    for query in panel_queries(dashboard):
        expr = substitute(query.expr, values)
        response = prometheus.instant(expr, end) if query.instant else prometheus.range(expr, start, end, step)
        if response.status_code != 200:
            raise RuntimeError(f"{query.title} [{query.ref_id}] {expr}: HTTP {response.status_code} {response.text}")
        results[query.panel_id].extend(parse_result(query, response.json()))
    return results


# --- formatting -------------------------------------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    if unit == "s":
        return _duration(value)
    if unit in ("bytes", "Bps"):
        text = _scaled(value, 1024, ["B", "KiB", "MiB", "GiB", "TiB"])
        return text + ("/s" if unit == "Bps" else "")
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    suffix = {"reqps": " req/s"}.get(unit, unit.removeprefix("suffix:") if unit.startswith("suffix:") else "")
    if suffix and not suffix.startswith(" "):
        suffix = " " + suffix
    return _scaled(value, 1000, ["", "K", "M", "G", "T"]) + suffix


def _scaled(value: float, base: int, prefixes: Sequence[str]) -> str:
    index = 0
    while abs(value) >= base and index < len(prefixes) - 1:
        value /= base
        index += 1
    text = f"{value:.0f}" if (value == int(value) and index == 0) or abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {prefixes[index]}".strip() if prefixes[index] else text


def _duration(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for size, name in ((86400, "day"), (3600, "hour"), (60, "min")):
        if seconds >= size:
            return f"{sign}{seconds / size:.1f} {name}"
    if seconds >= 1 or seconds == 0:
        return f"{sign}{seconds:.1f} s"
    return f"{sign}{seconds * 1000:.0f} ms"


def mapped(value: float, mappings: Sequence[Json]) -> tuple[str, str | None] | None:
    """(text, color) of a value mapping matching ``value``."""
    for mapping in mappings:
        option = mapping.get("options", {}).get(f"{value:g}")
        if mapping.get("type") == "value" and option:
            return option.get("text", f"{value:g}"), option.get("color")
    return None


def threshold_color(value: float, defaults: Json) -> str:
    color = "green"
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    return color


COLORS = {
    "green": "#37872d",
    "red": "#c4162a",
    "orange": "#ff780a",
    "blue": "#1f60c4",
    "yellow": "#e0b400",
    "purple": "#8f3bb8",
    "text": "#d8d9da",
}


def fixed_colors(panel: Json) -> dict[str, str]:
    """Series name -> colour from the panel's ``byName`` colour overrides (pipeline statuses)."""
    return {
        override["matcher"]["options"]: COLORS.get(prop["value"]["fixedColor"], prop["value"]["fixedColor"])
        for override in panel["fieldConfig"]["overrides"]
        for prop in override["properties"]
        if prop["id"] == "color"
    }


# --- drawing ----------------------------------------------------------------------------------------------------


def merge_table(panel: Json, series: Sequence[Series]) -> tuple[list[str], list[list[str]]]:
    """Emulate Grafana's merge + organize transformations: rows joined on their common label values."""
    organize = next(t["options"] for t in panel.get("transformations", []) if t["id"] == "organize")
    hidden, renamed = organize["excludeByName"], organize["renameByName"]
    single = len(panel["targets"]) == 1
    rows: list[dict[str, str]] = []
    columns: list[str] = []
    units = {o["matcher"]["options"]: o["properties"][0]["value"] for o in panel["fieldConfig"]["overrides"]}
    default_unit = panel["fieldConfig"]["defaults"]["unit"]
    for item in series:
        value_column = "Value" if single else f"Value #{item.ref_id}"
        row = {k: v for k, v in item.labels.items() if k not in hidden}
        if value_column not in hidden:
            unit = units.get(renamed.get(value_column, value_column), default_unit)
            row[value_column] = format_value(item.points[-1][1], unit)
        for key in row:
            if key not in columns:
                columns.append(key)
        for existing in rows:
            common = [k for k in row if k in existing and not k.startswith("Value")]
            if common and all(existing[k] == row[k] for k in common):
                existing.update(row)
                break
        else:
            rows.append(row)
    labels = [c for c in columns if not c.startswith("Value")]
    values = [c for c in columns if c.startswith("Value")]
    ordered = labels + values
    return [renamed.get(c, c) for c in ordered], [[r.get(c, "") for c in ordered] for r in rows]


def draw_dashboard(dashboard: Json, results: Mapping[int, Sequence[Series]], out: Path, *, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    grid_bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    dpi, width_px, cell_px, header_px = 80, 1920, 34, 60
    height_px = header_px + grid_bottom * cell_px
    fig = plt.figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor="#111217")

    def frac(x: float, y: float, w: float, h: float) -> list[float]:
        """Pixel box (origin top left) -> figure fraction box (origin bottom left)."""
        return [x / width_px, 1 - (y + h) / height_px, w / width_px, h / height_px]

    fig.text(12 / width_px, 1 - 28 / height_px, dashboard["title"], color="white", fontsize=20, weight="bold")
    fig.text(1 - 12 / width_px, 1 - 28 / height_px, subtitle, color="#a0a0a0", fontsize=11, ha="right")

    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        x, y = grid["x"] * width_px / 24 + 4, header_px + grid["y"] * cell_px + 4
        w, h = grid["w"] * width_px / 24 - 8, grid["h"] * cell_px - 8
        if panel["type"] == "row":
            fig.text(
                x / width_px,
                1 - (y + h / 2 + 6) / height_px,
                panel["title"],
                color="#d8d9da",
                fontsize=14,
                weight="bold",
            )
            continue
        frame = fig.add_axes(frac(x, y, w, h), facecolor="#181b1f")
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color("#2c3235")
        defaults = panel["fieldConfig"]["defaults"]
        unit = defaults["unit"]
        unit_label = "" if unit in ("none", "short") else f"  [{unit.removeprefix('suffix:')}]"
        frame.text(
            8 / w, 1 - 16 / h, panel["title"] + unit_label, color="#d8d9da", fontsize=11, transform=frame.transAxes
        )
        series = list(results.get(panel["id"], []))
        if not series:
            frame.text(
                0.5, 0.45, "No data", color="#a0a0a0", ha="center", va="center", fontsize=14, transform=frame.transAxes
            )
            continue
        left_pad = 78 if panel["type"] == "timeseries" else 8
        bottom_pad = 22 if panel["type"] in ("timeseries", "state-timeline") else 6
        ax = fig.add_axes(frac(x + left_pad, y + 26, w - left_pad - 8, h - 26 - bottom_pad), facecolor="#181b1f")
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.tick_params(colors="#a0a0a0", labelsize=8)
        kind = panel["type"]
        named = fixed_colors(panel)
        if kind == "timeseries":
            stacked = defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal"
            timeline = sorted({t for item in series for t, _ in item.points})
            base = [0.0] * len(timeline)
            for item in series[:12]:
                if stacked:  # a missing point is 0, as Grafana stacks it
                    by_time = dict(item.points)
                    highs = [lo + by_time.get(t, 0.0) for lo, t in zip(base, timeline, strict=True)]
                    days = [t / 86400 for t in timeline]
                    ax.fill_between(
                        days, base, highs, step="post", alpha=0.5, label=item.legend, color=named.get(item.legend)
                    )
                    base = highs
                else:
                    days = [t / 86400 for t, _ in item.points]  # matplotlib dates: days since 1970
                    values = [v for _, v in item.points]
                    ax.plot(days, values, linewidth=1.4, label=item.legend, color=named.get(item.legend))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos, u=unit: format_value(v, u)))
            ax.grid(color="#2c3235", linewidth=0.6)
            ax.legend(
                loc="upper left",
                fontsize=7,
                ncols=2,
                framealpha=0.4,
                labelcolor="#d8d9da",
                facecolor="#181b1f",
                edgecolor="#2c3235",
            )
        elif kind == "state-timeline":
            names = sorted({s.legend for s in series})
            step = _step(series)
            for row, name in enumerate(names):
                for item in (s for s in series if s.legend == name):
                    spans = [(t / 86400, step / 86400) for t, _ in item.points]
                    default = COLORS["blue"] if not name.startswith("desired") else COLORS["purple"]
                    ax.broken_barh(spans, (row - 0.35, 0.7), color=named.get(name, default))
            ax.set_yticks([])
            for row, name in enumerate(names):
                ax.text(0.005, row, name, color="white", fontsize=9, va="center", transform=ax.get_yaxis_transform())
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
            ax.set_ylim(-0.6, len(names) - 0.4)
        elif kind == "stat":
            ax.set_xticks([])
            ax.set_yticks([])
            text_mode = panel["options"].get("textMode", "auto")
            shown = series[:6]
            for index, item in enumerate(shown):
                value = item.points[-1][1]
                hit = mapped(value, defaults.get("mappings", []))
                text, color = hit if hit else (format_value(value, unit), None)
                color = named.get(item.legend) or COLORS.get(color or threshold_color(value, defaults), color)
                if text_mode == "name":
                    text = item.legend
                x = (index + 0.5) / len(shown)
                size = 26 if len(shown) == 1 else 18
                ax.text(
                    x,
                    0.45,
                    text,
                    color=color,
                    ha="center",
                    va="center",
                    fontsize=size,
                    weight="bold",
                    transform=ax.transAxes,
                )
                if len(shown) > 1 and text_mode != "name":
                    ax.text(x, 0.12, item.legend, color="#a0a0a0", ha="center", fontsize=9, transform=ax.transAxes)
        elif kind == "bargauge":
            items = sorted(series, key=lambda s: s.points[-1][1])[-10:]
            values = [s.points[-1][1] for s in items]
            colors = [
                named.get(s.legend) or COLORS.get(threshold_color(v, defaults), "#37872d")
                for s, v in zip(items, values, strict=True)
            ]
            ax.barh([i - 0.15 for i in range(len(items))], values, height=0.45, color=colors)
            ax.set_yticks([])
            ax.set_xticks([])
            for index, (item, value) in enumerate(zip(items, values, strict=True)):
                ax.text(0, index + 0.15, item.legend, color="#d8d9da", va="bottom", fontsize=9)
                ax.text(value, index - 0.15, " " + format_value(value, unit), color="#d8d9da", va="center", fontsize=9)
            ax.set_xlim(0, max(values) * 1.35 if max(values) > 0 else 1)
        elif kind == "table":
            ax.set_xticks([])
            ax.set_yticks([])
            header_row, rows = merge_table(panel, series)
            shown_rows = rows[: max(1, int((h - 32) // 18) - 2)]
            row_h = 18 / (h - 32)
            table = ax.table(
                cellText=shown_rows,
                colLabels=header_row,
                cellLoc="left",
                colLoc="left",
                bbox=[0, 1 - row_h * (len(shown_rows) + 1), 1, row_h * (len(shown_rows) + 1)],
            )
            table.auto_set_font_size(False)
            table.set_fontsize(8)
            for (r, _c), cell in table.get_celld().items():
                cell.set_edgecolor("#2c3235")
                cell.set_facecolor("#22252b" if r == 0 else "#181b1f")
                cell.get_text().set_color("#d8d9da")
            if len(rows) > len(shown_rows):
                ax.text(
                    0.99,
                    0.01,
                    f"+{len(rows) - len(shown_rows)} more rows",
                    color="#a0a0a0",
                    fontsize=8,
                    ha="right",
                    transform=ax.transAxes,
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=fig.get_facecolor())
    plt.close(fig)


def _step(series: Sequence[Series]) -> float:
    times = sorted({t for s in series for t, _ in s.points})
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return min(gaps) if gaps else 1.0


# --- command line -----------------------------------------------------------------------------------------------


def render_previews(
    prometheus_url: str,
    pipeline: str,
    *,
    out_dir: Path = IMG_DIR,
    window: float = 300.0,
    step: float = 2.0,
    rate_interval: str = "15s",
) -> list[Path]:
    end = time.time()
    start = end - window
    written = []
    with httpx.Client(timeout=30) as client:
        prometheus = Prometheus(prometheus_url, client)
        for uid, dashboard in load_dashboards().items():
            values = variable_values(dashboard, pipeline, rate_interval=rate_interval, time_range=f"{int(window)}s")
            results = run_queries(prometheus, dashboard, values, start, end, step)
            with_data = sum(1 for series in results.values() if series)
            queries = len(panel_queries(dashboard))
            print(f"{uid}: {queries} queries, {with_data}/{len(results)} panels with data", file=sys.stderr)
            subtitle = f"pipeline_name={pipeline}" if "pipeline_name" in values else ""
            path = out_dir / f"{uid}.png"
            draw_dashboard(dashboard, results, path, subtitle=subtitle + f"   last {int(window)}s")
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL, e.g. http://localhost:9090")
    parser.add_argument("--pipeline", required=True, help="pipeline_name for the pipeline detail dashboard")
    parser.add_argument("--out", type=Path, default=IMG_DIR, help="output directory (default: docs/img)")
    parser.add_argument("--window", type=float, default=300.0, help="seconds of history to draw (default 300)")
    parser.add_argument("--step", type=float, default=2.0, help="range query step in seconds (default 2)")
    parser.add_argument("--rate-interval", default="15s", help="value of $__rate_interval (default 15s)")
    args = parser.parse_args(argv)
    for path in render_previews(
        args.prometheus,
        args.pipeline,
        out_dir=args.out,
        window=args.window,
        step=args.step,
        rate_interval=args.rate_interval,
    ):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
