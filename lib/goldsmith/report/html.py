"""The report as one self-contained HTML page: inline CSS, images as `data:` URIs, no external URL, script or font.

Every value from the lakehouse is escaped; markup built here is wrapped in `Html` so it is not escaped twice.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape
from typing import Any

import numpy as np

from goldsmith import __version__
from goldsmith.report import charts
from goldsmith.report.collect import COMPUTED_BY, MODEL_PLOTS, LineageNode, ModelReport, ReportData, TableProfile

log = logging.getLogger(__name__)

SECTIONS: tuple[tuple[str, str], ...] = (
    ("lineage", "Lineage and record counts"),
    ("profiles", "Data profiles"),
    ("models", "Models"),
    ("bias", "Bias"),
    ("slices", "Slices"),
    ("drift", "Drift"),
)
STAGES: tuple[tuple[str, str], ...] = (
    ("sources", "Sources"),
    ("bronze", "Bronze"),
    ("silver", "Silver"),
    ("gold", "Gold"),
    ("model", "Models"),
    ("predictions", "Predictions"),
)
MAX_CHART_COLUMNS = 24
PRIORITY_KINDS = {"prediction": 0, "label": 1}


class Html(str):
    """Markup built by this module: inserted as is, never escaped again."""

    __slots__ = ()


def esc(value: object) -> Html:
    """`value` as display text, HTML-escaped (markup passes through)."""
    if isinstance(value, Html):
        return value
    return Html(escape(fmt(value), quote=True))


def fmt(value: object) -> str:
    """Display text: thousands separators, 4 significant digits, UTC times to the second, '—' for nothing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:,.4g}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def breakable(text: str) -> Html:
    """Escaped text that may wrap after `.`, `_`, `/`, `[`, `,` and `=` (long names and paths in narrow boxes)."""
    return Html(re.sub(r"([._/\[,=])", r"\1<wbr>", escape(text, quote=True)))


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def tag(name: str, content: object = "", **attrs: object) -> Html:
    """`<name attrs>content</name>`; attribute values are escaped, `class_` is `class`."""
    rendered = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{escape(str(v), quote=True)}"' for k, v in attrs.items() if v is not None
    )
    return Html(f"<{name}{rendered}>{esc(content)}</{name}>")


def badge(text: str, kind: str = "info") -> Html:
    return tag("span", text, class_=f"badge {kind}")


def table(
    headers: Sequence[object], rows: Sequence[Sequence[object]], row_classes: Sequence[str | None] | None = None,
    cell_classes: Sequence[Sequence[str | None]] | None = None, caption: str | None = None,
    nowrap: Sequence[int] = (),
) -> Html:
    """A table; numbers are right-aligned, `row_classes` / `cell_classes` mark rows and cells (e.g. breaches),
    columns in `nowrap` (and times) never wrap."""
    head = Html("".join(tag("th", h, scope="col") for h in headers))
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row):
            classes = []
            if isinstance(value, int | float) and not isinstance(value, bool):
                classes.append("num")
            elif isinstance(value, datetime) or j in nowrap:
                classes.append("nowrap")
            if cell_classes and cell_classes[i][j]:
                classes.append(str(cell_classes[i][j]))
            cells.append(tag("td", value, class_=" ".join(classes) or None))
        body.append(tag("tr", Html("".join(cells)), class_=row_classes[i] if row_classes else None))
    cap = tag("caption", caption) if caption else Html("")
    return tag("div", tag("table", Html(cap + tag("thead", tag("tr", head)) + tag("tbody", Html("".join(body))))),
               class_="scroll")


def image(png: bytes, alt: str, caption: str | None = None, css: str = "chart") -> Html:
    img = Html(f'<img class="{css}" src="{charts.data_uri(png)}" alt="{escape(alt, quote=True)}">')
    return tag("figure", Html(img + (tag("figcaption", caption) if caption else "")))


def not_computed(ops_table: str, what: str) -> Html:
    """The note a section shows before the stage that fills it has run."""
    return tag("p", Html(
        esc(f"{what}: not computed yet (ops.{ops_table} does not exist). Compute it with ")
        + tag("code", COMPUTED_BY[ops_table]) + esc(".")
    ), class_="empty")


def facts(items: Sequence[tuple[str, object]]) -> Html:
    """A compact definition list of label / value pairs."""
    return tag("dl", Html("".join(tag("div", Html(tag("dt", k) + tag("dd", v))) for k, v in items)), class_="facts")


def render(data: ReportData) -> str:
    """The whole page."""
    builders: dict[str, Callable[[ReportData], tuple[Html, str, str]]] = {
        "lineage": _lineage, "profiles": _profiles, "models": _models, "bias": _bias, "slices": _slices,
        "drift": _drift,
    }
    sections, toc = [], []
    for section_id, title in SECTIONS:
        error = data.errors.get(section_id)  # its data could not be read
        if error is None:
            try:
                body, summary, state = builders[section_id](data)
            except Exception as exc:  # one broken section must not cost the reader the others
                log.exception("report section %s failed", section_id)
                error = data.errors[section_id] = f"{type(exc).__name__}: {exc}"
        if error is not None:
            body = tag("p", f"This section could not be built: {error}", class_="section-error")
            summary, state = "error", "bad"
        sections.append(tag("section", Html(tag("h2", title) + body), id=section_id))
        toc.append(tag("li", Html(tag("a", title, href=f"#{section_id}") + " " + badge(summary, state))))
    page = (
        "<!DOCTYPE html>\n"
        + tag("html", Html(_head(data) + tag("body", Html(
            _header(data, Html("".join(toc))) + tag("main", Html("".join(sections)))
            + tag("footer", f"goldsmith {__version__} · generated {fmt(data.generated_at)} UTC")
            + Html(f"<script>{RENDER_SCRIPT}</script>")
        ))), lang="en")
    )
    return page + "\n"


def _head(data: ReportData) -> Html:
    return Html(
        "<head><meta charset=\"utf-8\">"
        # Only inline styles and scripts and data: images may load: the page works offline and leaks nothing.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        + tag("title", f"goldsmith report · {data.pipeline}")
        + Html(f"<script>{ERROR_SCRIPT}</script><style>{CSS}</style></head>")
    )


def _header(data: ReportData, toc: Html) -> Html:
    run = data.latest_run
    if "header" in data.errors:
        run_items: list[tuple[str, object]] = [("latest run", f"unreadable ops.run_log: {data.errors['header']}")]
    elif run is None:
        run_items = [("latest run", Html(
            esc("none recorded yet (") + tag("code", COMPUTED_BY["run_log"]) + esc(")")))]
    else:
        status = str(run.get("status") or "unknown")
        run_items = [
            ("latest run", run.get("run_id")),
            ("status", badge(status, "ok" if status == "ok" else "bad")),
            ("stages", run.get("stages")),
            ("finished", f"{fmt(run.get('finished_at'))} UTC ({fmt(run.get('duration_seconds'))} s)"),
        ]
        if run.get("message"):
            run_items.append(("message", run["message"]))
    items: list[tuple[str, object]] = [
        ("pipeline", data.pipeline), ("storage root", data.root), ("generated", f"{fmt(data.generated_at)} UTC"),
        *run_items,
    ]
    return tag("header", Html(
        tag("h1", Html(esc("goldsmith report · ") + tag("span", data.pipeline, class_="name")))
        + (tag("p", data.description, class_="description") if data.description else "")
        + facts(items)
        + tag("nav", Html(tag("h2", "Contents") + tag("ol", toc)), class_="toc", aria_label="contents")
    ))


# ---------------------------------------------------------------------------------------------------- lineage


def _lineage(data: ReportData) -> tuple[Html, str, str]:
    columns = []
    for stage, title in STAGES:
        nodes = [n for n in data.lineage if n.stage == stage]
        boxes = Html("".join(_node(n) for n in nodes)) or tag("p", "none configured", class_="muted")
        columns.append(tag("div", Html(tag("h3", title) + boxes), class_=f"stage stage-{stage}"))
    arrow = tag("div", "→", class_="arrow", aria_hidden="true")
    flow = Html(
        tag("p", "Current row count of every table; in / out / duplicates from the last run that processed it; "
                 "quarantine tables in red when they hold rows.", class_="muted")
        + tag("div", Html(arrow.join(columns)), class_="flow")
    )
    quarantined = sum(n.quarantine_rows or 0 for n in data.lineage)
    if data.ledger is None:
        ledger = not_computed("quality_metrics", "Record accounting")
    else:
        rows, row_classes, cell_classes = [], [], []
        order = {stage: i for i, stage in enumerate(("ingest", "refine", "features", "train", "score"))}
        for r in sorted(data.ledger, key=lambda r: (order.get(r["stage"], len(order)), r["table_name"])):
            violations = ", ".join(
                f"{k}: {v:,}" for k, v in sorted((r.get("rule_violations") or {}).items()) if v
            )
            rows.append([r["stage"], r["table_name"], r["records_in"], r["records_out"], r["quarantined"],
                         r["duplicates"], r["inserted"], r["updated"], violations or "—", r["status"],
                         r["run_id"], r["recorded_at"]])
            row_classes.append("breach" if (r["quarantined"] or 0) > 0 or r["status"] == "failed" else None)
            cell_classes.append([None] * 4 + ["bad" if (r["quarantined"] or 0) > 0 else None] + [None] * 7)
        ledger = Html(
            tag("h3", "Record accounting (latest run per stage and table)")
            + tag("p", "records in = out + quarantined + duplicates; a run that skipped a table (nothing new) "
                       "does not replace the run that last processed it.", class_="muted")
            + table(["stage", "table", "in", "out", "quarantined", "duplicates", "inserted", "updated",
                     "rule violations", "status", "run", "recorded (UTC)"], rows, row_classes, cell_classes,
                    nowrap=(0, 1, 10))
        )
    built = sum(1 for n in data.lineage if n.exists and n.stage not in ("sources", "model"))
    summary = f"{quarantined:,} quarantined" if quarantined else plural(built, "table")
    return Html(flow + ledger), summary, "warn" if quarantined else "ok"


def _node(node: LineageNode) -> Html:
    lines = [tag("div", breakable(node.name), class_="node-name")]
    if node.stage == "sources":
        lines.append(tag("div", breakable(node.detail), class_="node-detail"))
        if node.metrics:
            lines.append(tag("div", f"{fmt(node.metrics['records_in'])} records read", class_="node-rows"))
    elif node.stage == "model":
        state, _, algorithm = node.detail.partition(" · ")
        lines.append(tag("div", state, class_="node-rows"))
        if algorithm:
            lines.append(tag("div", breakable(algorithm), class_="node-detail"))
        if node.metrics and node.metrics.get("records_in"):
            lines.append(tag("div", f"trained on {fmt(node.metrics['records_in'])} rows", class_="node-detail"))
    else:
        lines.append(tag("div", f"{fmt(node.rows)} rows" if node.exists else "not built yet", class_="node-rows"))
        m = node.metrics
        if m and node.stage in ("bronze", "silver"):
            parts = [f"in {fmt(m['records_in'])}", f"out {fmt(m['records_out'])}"]
            if node.stage == "silver":
                parts.append(f"dup {fmt(m['duplicates'])}")
            lines.append(tag("div", " · ".join(parts), class_="node-detail"))
        elif m and m.get("records_out") is not None and node.stage != "gold":
            lines.append(tag("div", f"{fmt(m['records_out'])} scored", class_="node-detail"))
    if node.inputs and node.stage != "bronze":
        lines.append(tag("div", breakable("← " + ", ".join(node.inputs)), class_="node-from"))
    q_rows = node.quarantine_rows or 0
    if node.quarantine is not None and not q_rows:
        lines.append(tag("div", "quarantine empty", class_="node-detail"))
    box = tag("div", Html("".join(lines)), class_="node" + ("" if node.exists else " missing"))
    if node.quarantine is not None and q_rows:
        box = Html(box + tag("div", Html(
            tag("div", breakable(node.quarantine), class_="node-name") + tag("div", f"{fmt(q_rows)} rows quarantined",
                                                                  class_="node-rows")
        ), class_="node quarantine has-rows"))
    return box


# --------------------------------------------------------------------------------------------------- profiles


def _profiles(data: ReportData) -> tuple[Html, str, str]:
    if data.profiles is None:
        return not_computed("profiles", "Profiles"), "not computed yet", "muted"
    if not data.profiles:
        return tag("p", "ops.profiles has no rows.", class_="empty"), "no rows", "muted"
    return Html("".join(_profile(p) for p in data.profiles)), plural(len(data.profiles), "table"), "ok"


def _median(quantiles: dict[str, float] | None) -> float | None:
    for key in ("p50", "0.5", "50", "median", "0.50"):
        if quantiles and key in quantiles:
            return quantiles[key]
    return None


def _profile(profile: TableProfile) -> Html:
    rows = []
    for c in profile.columns:
        total = c["rows"] or 0
        nulls_pct = 100.0 * (c["nulls"] or 0) / total if total else None
        rows.append([c["column_name"], c["data_type"], None if nulls_pct is None else round(nulls_pct, 2),
                     c["distinct_approx"], c["min_value"], c["max_value"], c["mean"], c["stddev"],
                     _median(c.get("quantiles"))])
    cell_classes = [[None, None, "warn" if (r[2] or 0) > 0 else None, *[None] * 6] for r in rows]
    parts = [
        tag("h3", profile.table),
        facts([("rows", profile.rows), ("table version", profile.table_version), ("profile run", profile.run_id),
               ("profiled", f"{fmt(profile.profiled_at)} UTC")]),
        table(["column", "type", "nulls %", "distinct (approx.)", "min", "max", "mean", "stddev", "p50"], rows,
              cell_classes=cell_classes),
    ]
    numeric = [c for c in profile.columns if c.get("histogram")][:MAX_CHART_COLUMNS]
    categorical = [c for c in profile.columns if c.get("top_values") and not c.get("histogram")][:MAX_CHART_COLUMNS]
    figures = []
    if numeric:
        figures.append(image(charts.histograms(numeric), f"histograms of {profile.table}",
                             f"Histograms of the numeric columns of {profile.table}"))
    if categorical:
        figures.append(image(charts.top_values(categorical), f"top values of {profile.table}",
                             f"Most frequent values of the categorical columns of {profile.table}"))
    if profile.correlations:
        paired = {c["column_a"] for c in profile.correlations} | {c["column_b"] for c in profile.correlations}
        order = [c["column_name"] for c in profile.columns]
        names = sorted(paired, key=lambda n: (order.index(n) if n in order else len(order), n))
        index = {n: i for i, n in enumerate(names)}
        matrix = np.full((len(names), len(names)), np.nan)
        np.fill_diagonal(matrix, 1.0)
        for c in profile.correlations:
            if c["pearson"] is not None:
                a, b = index[c["column_a"]], index[c["column_b"]]
                matrix[a, b] = matrix[b, a] = c["pearson"]
        figures.append(image(charts.correlation_heatmap(names, matrix), f"correlations of {profile.table}",
                             f"Correlations between the numeric columns of {profile.table}"))
    if figures:
        parts.append(tag("div", Html("".join(figures)), class_="charts"))
    return tag("article", Html("".join(parts)), class_="card")


# ----------------------------------------------------------------------------------------------------- models


def _models(data: ReportData) -> tuple[Html, str, str]:
    if not data.models:
        return tag("p", "This pipeline defines no models.", class_="empty"), "no models", "muted"
    champions = sum(1 for m in data.models if m.state == "champion")
    state = "ok" if champions == len(data.models) else "warn" if champions else "muted"
    return Html("".join(_model(m) for m in data.models)), f"{champions} of {len(data.models)} with a champion", state


def _model(model: ModelReport) -> Html:
    state_badge = {
        "champion": badge(f"champion v{model.version}", "ok"), "no_champion": badge("no champion", "warn"),
        "not_trained": badge("not trained yet", "muted"), "unavailable": badge("registry unavailable", "bad"),
    }[model.state]
    parts = [tag("h3", Html(esc(model.name) + " " + state_badge))]
    spec = model.spec
    if model.state != "champion":
        parts.append(tag("p", Html(esc(model.message + ". Train it with ")
                                   + tag("code", COMPUTED_BY["model_promotions"]) + esc(".")), class_="empty"))
    else:
        items: list[tuple[str, object]] = [
            ("version", f"v{model.version} of {model.versions}"), ("algorithm", model.algorithm or "—"),
            ("backend", model.backend or "—"),
        ]
        if spec is not None:
            items += [("task", spec.task), ("trained on", spec.table), ("primary metric", spec.metric)]
        items += [("MLflow run", model.mlflow_run_id or "—"), ("registered", f"{fmt(model.created_at)} UTC")]
        parts.append(facts(items))
        if model.message:
            parts.append(tag("p", model.message, class_="muted"))
        if model.metrics:
            primary = f"test_{spec.metric}" if spec is not None else ""
            tiles = "".join(
                tag("div", Html(tag("span", k.removeprefix("test_"), class_="tile-label") + tag("b", fmt(v))),
                    class_="tile" + (" primary" if k == primary else ""))
                for k, v in sorted(model.metrics.items(), key=lambda kv: (kv[0] != primary, kv[0]))
            )
            parts.append(Html(tag("h4", "Test metrics") + tag("div", Html(tiles), class_="tiles")))
        plots = [image(model.plots[path], title, title, css="plot") for path, title in MODEL_PLOTS.items()
                 if path in model.plots]
        if plots:
            parts.append(tag("div", Html("".join(plots)), class_="charts plots"))
        parts.append(_leaderboard(model))
    parts.append(_promotions(model))
    parts.append(_scoring(model))
    return tag("article", Html("".join(parts)), class_="card")


def _leaderboard(model: ModelReport) -> Html:
    board = model.leaderboard
    if not board or not board.get("candidates"):
        return tag("p", "No leaderboard.json logged by training.", class_="muted")
    candidates = board["candidates"]
    metric_keys = sorted({k for c in candidates for k in c if k.startswith("val_")})
    primary = f"val_{board.get('primary_metric')}"
    metric_keys = [k for k in metric_keys if k == primary] + [k for k in metric_keys if k != primary]
    headers = ["rank", "candidate", *metric_keys, "train seconds"]
    rows = [[c.get("rank"), c.get("candidate"), *[c.get(k) for k in metric_keys], c.get("train_seconds")]
            for c in candidates]
    return Html(
        tag("h4", f"Leaderboard (validation; ranked by {board.get('primary_metric')})")
        + table(headers, rows, ["winner" if c.get("rank") == 1 else None for c in candidates])
    )


def _promotions(model: ModelReport) -> Html:
    if model.promotions is None:
        return Html(tag("h4", "Promotion history") + not_computed("model_promotions", "Promotion history"))
    if not model.promotions:
        return Html(tag("h4", "Promotion history") + tag("p", "No alias moves recorded.", class_="muted"))
    moves = list(reversed(model.promotions))[:20]
    rows = [[m["moved_at"], m["alias"], m["action"],
             f"{_version(m['from_version'])} → {_version(m['to_version'])}", m["reason"], m["actor"]]
            for m in moves]
    row_classes = ["breach" if m["action"] in ("blocked", "rollback") else None for m in moves]
    return Html(tag("h4", f"Promotion history (newest first, {len(moves)} of {len(model.promotions)})")
                + table(["moved (UTC)", "alias", "action", "versions", "reason", "by"], rows, row_classes,
                        nowrap=(3,)))


def _version(value: object) -> str:
    return "none" if value is None else f"v{value}"


def _scoring(model: ModelReport) -> Html:
    if not model.scoring_computed:
        return Html(tag("h4", "Latest scoring") + not_computed("scoring_runs", "Scoring"))
    s = model.scoring
    if s is None:
        return Html(tag("h4", "Latest scoring") + tag("p", "Not scored yet.", class_="muted"))
    return Html(tag("h4", "Latest scoring") + facts([
        ("scored", f"{fmt(s['scored_at'])} UTC"), ("model version", _version(s["model_version"])),
        ("input", f"{s['input_table']} v{fmt(s['input_version'])}"), ("window", s["score_window"]),
        ("output", f"{s['output_table']} v{fmt(s['output_version'])}"), ("rows", s["rows"]), ("run", s["run_id"]),
    ]))


# ------------------------------------------------------------------------------------------------------- bias


def _run_facts(rows: Sequence[dict[str, Any]], time_column: str, extra: Sequence[tuple[str, str]] = ()) -> Html:
    first = rows[0]
    items: list[tuple[str, object]] = [("model version", _version(first.get("model_version"))),
                                       ("run", first.get("run_id"))]
    items += [(label, first.get(key)) for label, key in extra]
    items.append(("computed", f"{fmt(first.get(time_column))} UTC"))
    return facts(items)


def _bias(data: ReportData) -> tuple[Html, str, str]:
    if data.bias is None:
        return not_computed("bias_metrics", "Bias metrics"), "not computed yet", "muted"
    if not data.bias:
        return tag("p", "ops.bias_metrics has no rows.", class_="empty"), "no rows", "muted"
    breached = sum(1 for rows in data.bias.values() for r in rows if r["breached"])
    body = Html("".join(_bias_model(name, rows) for name, rows in _by_model(data.bias, data)))
    return body, f"{breached} breached" if breached else "no breach", "bad" if breached else "ok"


def _by_model(found: dict[str, list[dict[str, Any]]], data: ReportData) -> list[tuple[str, list[dict[str, Any]]]]:
    """The configured models first (in config order), then any other model the ops table knows."""
    order = [m.name for m in data.models]
    names = [n for n in order if n in found] + sorted(n for n in found if n not in order)
    return [(n, found[n]) for n in names]


def _bias_model(name: str, rows: list[dict[str, Any]]) -> Html:
    breached = [r for r in rows if r["breached"]]
    parts = [tag("h3", name), _run_facts(rows, "computed_at", [("dataset", "dataset")]),
             tag("p", f"{len(breached)} of {len(rows)} metrics outside their allowed range.",
                 class_="summary bad" if breached else "summary")]
    if breached:
        parts.append(table(
            ["stage", "facet", "facet value", "label", "metric", "value", "allowed", "n (facet)", "n (rest)"],
            [[r["stage"], r["facet"], r["facet_value"], r["label_value"], r["metric"], r["value"], _range(r),
              r["n_d"], r["n_a"]] for r in breached],
            ["breach"] * len(breached), caption="Breached",
        ))
    parts.append(image(charts.bias_bars(rows, bias_stages(rows)), f"bias metrics of {name}",
                       "Bias metrics (red: outside the allowed range; grey ticks: the range)"))
    for stage in bias_stages(rows):
        parts.append(_bias_pivot(stage, [r for r in rows if r["stage"] == stage]))
    return tag("article", Html("".join(parts)), class_="card")


def bias_stages(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The stages present, pre-training before post-training."""
    known = ["pre_training", "post_training"]
    return sorted({str(r["stage"]) for r in rows}, key=lambda s: (known.index(s) if s in known else 2, s))


def _range(row: dict[str, Any]) -> str:
    low, high = row.get("threshold_min"), row.get("threshold_max")
    if low is None and high is None:
        return "—"
    if low is None:
        return f"≤ {fmt(high)}"
    if high is None:
        return f"≥ {fmt(low)}"
    return f"{fmt(low)} … {fmt(high)}"


def _bias_pivot(stage: str, rows: list[dict[str, Any]]) -> Html:
    """One row per facet value and label value, one column per metric; breached cells and rows highlighted."""
    metrics = sorted({r["metric"] for r in rows})
    groups: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in rows:
        key = (r["facet"], r["facet_value"], r["label_value"])
        groups.setdefault(key, {})[r["metric"]] = r
    table_rows: list[list[object]] = []
    row_classes: list[str | None] = []
    cell_classes: list[list[str | None]] = []
    for (facet, value, label), by_metric in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        any_row = next(iter(by_metric.values()))
        table_rows.append([facet, value, label, any_row["n_d"], any_row["n_a"],
                           *[by_metric[m]["value"] if m in by_metric else None for m in metrics]])
        hits = [m in by_metric and bool(by_metric[m]["breached"]) for m in metrics]
        row_classes.append("breach" if any(hits) else None)
        cell_classes.append([*[None] * 5, *["bad" if h else None for h in hits]])
    return table(["facet", "facet value", "label", "n (facet)", "n (rest)", *metrics], table_rows, row_classes,
                 cell_classes, caption=stage.replace("_", "-") + " metrics")


# ----------------------------------------------------------------------------------------------------- slices


def _slices(data: ReportData) -> tuple[Html, str, str]:
    if data.slices is None:
        return not_computed("slice_metrics", "Slice metrics"), "not computed yet", "muted"
    if not data.slices:
        return tag("p", "ops.slice_metrics has no rows.", class_="empty"), "no rows", "muted"
    flagged = sum(1 for rows in data.slices.values() for r in rows if r["flagged"])
    body = Html("".join(_slice_model(name, rows) for name, rows in _by_model(data.slices, data)))
    return body, f"{flagged} flagged" if flagged else "none flagged", "warn" if flagged else "ok"


def _slice_model(name: str, rows: list[dict[str, Any]]) -> Html:
    flagged = [r for r in rows if r["flagged"]]
    headers = ["column", "value", "metric", "value on slice", "overall", "difference", "rows", "reason"]

    def line(r: dict[str, Any]) -> list[object]:
        diff = r["value"] - r["overall"] if r["value"] is not None and r["overall"] is not None else None
        return [r["slice_column"], r["slice_value"], r["metric"], r["value"], r["overall"], diff, r["rows"],
                r["reason"] or ""]

    ordered = sorted(rows, key=lambda r: (not r["flagged"], str(r["slice_column"]), str(r["metric"]),
                                          str(r["slice_value"])))
    parts = [tag("h3", name), _run_facts(rows, "computed_at", [("dataset", "dataset")]),
             tag("p", f"{len(flagged)} of {len(rows)} slices flagged.", class_="summary bad" if flagged else "summary")]
    if flagged:
        parts.append(table(headers, [line(r) for r in ordered if r["flagged"]], ["breach"] * len(flagged),
                           caption="Flagged slices"))
    figures = [image(charts.slice_chart(column, [r for r in rows if r["slice_column"] == column]),
                     f"metric by {column} for {name}", f"By {column} (red: flagged; dashed: overall)")
               for column in sorted({str(r["slice_column"]) for r in rows})]
    parts.append(tag("div", Html("".join(figures)), class_="charts"))
    parts.append(tag("details", Html(tag("summary", f"All {len(rows)} slices") + table(
        headers, [line(r) for r in ordered], ["breach" if r["flagged"] else None for r in ordered]))))
    return tag("article", Html("".join(parts)), class_="card")


# ------------------------------------------------------------------------------------------------------ drift


def _drift(data: ReportData) -> tuple[Html, str, str]:
    if data.drift is None:
        return not_computed("monitor_results", "Drift"), "not computed yet", "muted"
    if not data.drift:
        return tag("p", "ops.monitor_results has no rows.", class_="empty"), "no rows", "muted"
    breached = sum(1 for rows in data.drift.values() for r in rows if r["breached"])
    body = Html("".join(_drift_model(name, rows) for name, rows in _by_model(data.drift, data)))
    return body, f"{breached} breached" if breached else "no breach", "bad" if breached else "ok"


def _period_key(period: object) -> tuple[int, str]:
    return (1 if period == "all" else 0, str(period))


def _drift_model(name: str, rows: list[dict[str, Any]]) -> Html:
    breached = [r for r in rows if r["breached"]]
    parts = [
        tag("h3", name),
        _run_facts(rows, "checked_at", [("baseline", "baseline"), ("window", "score_window"),
                                        ("baseline rows", "baseline_rows"), ("window rows", "window_rows")]),
        tag("p", f"{len(breached)} of {len(rows)} checks breached their threshold.",
            class_="summary bad" if breached else "summary"),
    ]
    psi = [r for r in rows if str(r["metric"]).lower() == "psi" and r["value"] is not None]
    if psi:
        columns = sorted({str(r["column_name"]) for r in psi},
                         key=lambda c: (min(PRIORITY_KINDS.get(r["kind"], 2) for r in psi if r["column_name"] == c), c))
        periods = sorted({str(r["period"]) for r in psi}, key=_period_key)
        values = np.full((len(columns), len(periods)), np.nan)
        hits = np.zeros((len(columns), len(periods)), dtype=bool)
        for r in psi:
            i, j = columns.index(str(r["column_name"])), periods.index(str(r["period"]))
            values[i, j], hits[i, j] = r["value"], bool(r["breached"])
        parts.append(image(charts.psi_heatmap(columns, periods, values, hits), f"PSI heatmap of {name}",
                           "PSI per column and period"))
    shown = [r for r in rows if r["breached"] or r["kind"] in PRIORITY_KINDS]
    shown.sort(key=lambda r: (PRIORITY_KINDS.get(r["kind"], 2), not r["breached"], str(r["column_name"]),
                              _period_key(r["period"]), str(r["metric"])))
    if shown:
        parts.append(table(
            ["kind", "column", "metric", "value", "threshold", "period", "breached"],
            [[r["kind"], r["column_name"], r["metric"], r["value"], r["threshold"], r["period"],
              badge("breached", "bad") if r["breached"] else "no"] for r in shown],
            ["breach" if r["breached"] else None for r in shown],
            caption="Prediction and label drift, then every breached check",
        ))
    return tag("article", Html("".join(parts)), class_="card")


# ------------------------------------------------------------------------------------------------ page assets

ERROR_SCRIPT = (
    "window.addEventListener('error',function(){var d=document.documentElement.dataset;"
    "d.scriptErrors=String(Number(d.scriptErrors||0)+1);},true);"
)
# Proof of rendering for `check_render`: set once everything (images included) has loaded.
RENDER_SCRIPT = (
    "window.addEventListener('load',function(){var broken=0;"
    "document.querySelectorAll('img').forEach(function(img){if(img.complete&&img.naturalWidth===0){broken++;}});"
    "var b=document.body.dataset;b.brokenImages=String(broken);"
    "b.pageHeight=String(document.documentElement.scrollHeight);b.rendered='true';});"
)
CSS = """
:root{--ink:#1d2733;--muted:#5d6b7a;--line:#d9dee4;--bg:#f3f5f8;--card:#fff;--accent:#b8860b;
--bad:#b42318;--bad-bg:#fdecea;--warn:#9a6700;--warn-bg:#fff4d6;--ok:#1a7f37;--ok-bg:#e6f4ea;--blue:#3b6ea8}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 "DejaVu Sans",system-ui,sans-serif}
header{background:#1f2d3d;color:#f4f6f8;padding:24px max(24px,calc((100% - 1180px)/2)) 20px}
header h1{margin:0 0 4px;font-size:26px;font-weight:600}
header h1 .name{color:#f2c14e}
header .description{margin:0 0 8px;color:#c8d1db}
header .facts dt{color:#9fb0c2}
header code{color:#f2c14e}
main{max-width:1180px;margin:0 auto;padding:8px 24px 32px}
footer{max-width:1180px;margin:0 auto;padding:0 24px 32px;color:var(--muted);font-size:13px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:22px 0;
box-shadow:0 1px 2px rgba(16,24,40,.05)}
section>h2{margin:0 0 12px;font-size:21px;border-bottom:3px solid var(--accent);display:inline-block;padding-bottom:2px}
h3{font-size:17px;margin:18px 0 8px}
h4{font-size:15px;margin:16px 0 6px;color:#2f3d4c}
.toc{background:rgba(255,255,255,.06);border:1px solid rgba(255,255,255,.15);border-radius:8px;padding:10px 16px;
margin-top:14px}
.toc h2{font-size:14px;text-transform:uppercase;letter-spacing:.06em;margin:0 0 6px;color:#9fb0c2}
.toc ol{margin:0;padding-left:22px;columns:3;column-gap:28px}
.toc li{margin:3px 0;break-inside:avoid}
.toc a{color:#fff;text-decoration:none;font-weight:600}
.toc a:hover{text-decoration:underline}
.facts{display:flex;flex-wrap:wrap;gap:6px 26px;margin:8px 0}
.facts div{min-width:0}
.facts dt{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.facts dd{margin:0;font-weight:600;overflow-wrap:anywhere}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600;vertical-align:1px;
background:#e8edf3;color:#33475b}
.badge.ok{background:var(--ok-bg);color:var(--ok)}
.badge.warn{background:var(--warn-bg);color:var(--warn)}
.badge.bad{background:var(--bad-bg);color:var(--bad)}
.badge.muted{background:#eceff3;color:var(--muted)}
.scroll{overflow-x:auto;margin:8px 0 14px}
table{border-collapse:collapse;font-size:13px;min-width:50%}
caption{text-align:left;font-weight:600;padding:4px 0;color:#2f3d4c}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#e9edf2;font-weight:600;white-space:nowrap}
tbody tr:nth-child(even){background:#f7f9fb}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.nowrap{white-space:nowrap}
tr.breach,tr.breach:nth-child(even){background:var(--bad-bg)}
tr.winner{font-weight:600}
td.bad{color:var(--bad);font-weight:700}
td.warn{color:var(--warn);font-weight:600}
.empty{background:#f6f7f9;border:1px dashed #b8c2cc;border-radius:8px;padding:10px 14px;color:var(--muted)}
.section-error{background:var(--bad-bg);border:1px solid var(--bad);border-radius:8px;padding:10px 14px}
.muted{color:var(--muted)}
.summary{font-weight:600}
.summary.bad{color:var(--bad)}
code{font-family:"DejaVu Sans Mono",monospace;font-size:13px;background:rgba(127,127,127,.12);padding:1px 5px;
border-radius:4px}
.card{border-top:1px solid var(--line);padding-top:4px;margin-top:10px}
.card:first-of-type{border-top:none}
.charts{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:6px 0;max-width:100%}
figcaption{font-size:12px;color:var(--muted);margin-top:2px}
img.chart{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px;background:#fff}
.plots{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:14px}
img.plot{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px;background:#fff}
.tiles{display:flex;flex-wrap:wrap;gap:8px}
.tile{border:1px solid var(--line);border-radius:8px;padding:6px 12px;min-width:110px;background:#fafbfc}
.tile-label{display:block;font-size:12px;color:var(--muted)}
.tile b{font-size:18px;font-variant-numeric:tabular-nums}
.tile.primary{border-color:var(--accent);background:#fff9e8}
.flow{display:flex;align-items:stretch;gap:4px;margin:6px 0 12px}
.stage{flex:1 1 0;min-width:0;background:#f7f9fb;border-radius:8px;padding:6px}
.stage h3{margin:0 0 6px;font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);
text-align:center}
.arrow{align-self:center;font-size:22px;color:#8a99a8}
.node{background:#fff;border:1px solid #c5ced8;border-left:4px solid var(--blue);border-radius:6px;padding:6px 8px;
margin-bottom:8px;font-size:12.5px}
.stage-sources .node{border-left-color:#7f8c8d}
.stage-bronze .node{border-left-color:#a0522d}
.stage-silver .node{border-left-color:#8e9aa6}
.stage-gold .node{border-left-color:var(--accent)}
.stage-model .node{border-left-color:#6f42c1}
.stage-predictions .node{border-left-color:#2e8b57}
.node.missing{opacity:.6;border-style:dashed}
.node-name{font-weight:700;overflow-wrap:anywhere}
.node-rows{font-weight:600}
.node-detail,.node-from{color:var(--muted);font-size:11.5px;overflow-wrap:anywhere}
.stage .node.quarantine{margin-top:-4px;margin-left:10px;font-size:11.5px;border-color:var(--bad);
border-left-color:var(--bad);background:var(--bad-bg)}
.node.quarantine .node-rows{color:var(--bad)}
details{margin:6px 0}
summary{cursor:pointer;color:var(--blue);font-weight:600}
@media print{section{break-inside:avoid-page}}
"""
