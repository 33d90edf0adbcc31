"""One self-contained HTML report (inline SVG, no scripts, no downloads) and a Markdown summary.

Sections: the strategy comparison table per reference set, a chart per metric with its bootstrap
interval, extraction quality, the journeys-per-user histogram, and for a few users a timeline with
one lane per journey, labelled with its name.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter, defaultdict

TABLE_METRICS = ("semantic", "rouge_l", "chrf", "bleu", "exact_match", "specificity", "grounding", "duplicate",
                 "fallback", "keyword_chosen", "safety_flag")
DIFFERENCE_METRICS = ("semantic", "rouge_l", "chrf", "specificity", "grounding", "fallback")
CHART_METRICS = ("semantic", "rouge_l", "chrf", "bleu", "specificity", "grounding")
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figcaption { font-size: 0.85rem; color: #555; }
svg text { font-size: 11px; fill: #222; }
"""


def _esc(value) -> str:
    return html.escape(str(value))


def _cell(metric: dict | None) -> str:
    if not metric or metric.get("mean") is None:
        return "–"
    return f"{metric['mean']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"


def _signed(metric: dict | None) -> str:
    if not metric or metric.get("mean") is None:
        return "–"
    return f"{metric['mean']:+.3f} [{metric['low']:+.3f}, {metric['high']:+.3f}]"


def settings_text(evaluation: dict) -> str:
    """The ablation settings of one evaluation, so that two runs on one page can be told apart."""
    settings = evaluation.get("settings") or {}
    parts = [f"model {settings['model']}"] if settings.get("model") else []
    parts += [f"{key} {settings[key]}" for key in ("max_titles", "prompt_inputs") if key in settings]
    if settings.get("candidates", 1) > 1:  # greedy (1) is the default and goes unsaid
        parts.append(f"{settings['candidates']} candidates per journey")
    if settings.get("model_answers_only"):  # the keyword name competing is the default and goes unsaid
        parts.append("model answers only")
    if evaluation.get("history_at_once"):
        parts.append("whole history named at once")
    return ", ".join(parts)


def difference_rows(evaluation: dict) -> list[list[str]]:
    """Paired differences against the keywords namer (same journeys), for every other strategy."""
    return [[strategy, *(_signed(result["vs_keywords"].get(m)) for m in DIFFERENCE_METRICS)]
            for strategy, result in evaluation["strategies"].items() if result.get("vs_keywords")]


def fallback_lines(evaluation: dict, top: int = 3) -> list[str]:
    """Why LLM names were replaced by keyword names: the most frequent reasons per strategy."""
    lines = []
    for strategy, result in evaluation["strategies"].items():
        reasons = sorted((result.get("fallback_reasons") or {}).items(), key=lambda item: (-item[1], item[0]))
        if reasons:
            lines.append(f"{strategy}: " + "; ".join(f"{reason} ({count})" for reason, count in reasons[:top]))
    return lines


def comparison_rows(evaluation: dict) -> list[list[str]]:
    rows = []
    for strategy, result in evaluation["strategies"].items():
        cost = result["cost"]
        rows.append([strategy, *(_cell(result["metrics"].get(m)) for m in TABLE_METRICS),
                     str(cost.get("names_per_s", "–")), str(cost.get("prompt_tokens_per_name", "–"))])
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def table_html(header: list[str], rows: list[list[str]], css_class: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def interval_chart(metric: str, evaluation: dict) -> str:
    """Horizontal bars (mean) with whiskers (95% interval), one per strategy, on a 0-1 axis."""
    strategies = [(s, r["metrics"].get(metric)) for s, r in evaluation["strategies"].items()]
    strategies = [(s, m) for s, m in strategies if m and m.get("mean") is not None]
    width, left, bar, gap = 360, 100, 16, 8
    height = 30 + len(strategies) * (bar + gap)

    def x(v: float) -> float:
        return left + max(0.0, min(1.0, v)) * (width - left - 20)

    parts = [f'<svg class="chart" role="img" aria-label="{_esc(metric)}" width="{width}" height="{height}">']
    for tick in (0, 0.5, 1):
        parts.append(f'<line x1="{x(tick)}" x2="{x(tick)}" y1="5" y2="{height - 18}" stroke="#ddd"/>'
                     f'<text x="{x(tick) - 6}" y="{height - 5}">{tick}</text>')
    for row, (strategy, value) in enumerate(strategies):
        y = 8 + row * (bar + gap)
        colour = COLOURS[row % len(COLOURS)]
        parts.append(f'<text x="0" y="{y + 12}">{_esc(strategy)}</text>'
                     f'<rect class="bar" x="{left}" y="{y}" width="{x(value["mean"]) - left:.1f}" height="{bar}" '
                     f'fill="{colour}"><title>{_esc(strategy)}: {value["mean"]}</title></rect>'
                     f'<line class="interval" x1="{x(value["low"]):.1f}" x2="{x(value["high"]):.1f}" '
                     f'y1="{y + bar / 2}" y2="{y + bar / 2}" stroke="#222" stroke-width="2"/>')
    parts.append("</svg>")
    return f"<figure>{''.join(parts)}<figcaption>{_esc(metric)} (mean, 95% interval)</figcaption></figure>"


def histogram_chart(histogram: dict[str, int], label: str) -> str:
    keys = sorted(histogram, key=int)
    peak = max(histogram.values(), default=1)
    width, height, bar = 40 * max(1, len(keys)) + 40, 180, 28
    parts = [f'<svg class="chart" role="img" aria-label="{_esc(label)}" width="{width}" height="{height}">']
    for index, key in enumerate(keys):
        h = 130 * histogram[key] / peak
        x = 20 + index * 40
        parts.append(f'<rect class="bar" x="{x}" y="{150 - h:.1f}" width="{bar}" height="{h:.1f}" fill="#4e79a7">'
                     f'<title>{key}: {histogram[key]}</title></rect>'
                     f'<text x="{x + 8}" y="165">{_esc(key)}</text><text x="{x + 4}" y="{145 - h:.1f}">'
                     f'{histogram[key]}</text>')
    parts.append("</svg>")
    return f"<figure>{''.join(parts)}<figcaption>{_esc(label)}</figcaption></figure>"


def timeline_svg(user: str, journeys: list[dict], standalone: bool = True) -> str:
    """One lane per journey from first to last activity, labelled with its name: an SVG element
    (``standalone``: with its namespace and text style, so that it renders as a file or inline in a
    notebook as well as inside the report's page)."""
    start = min(j["first_ts"] for j in journeys)
    end = max(j["last_ts"] for j in journeys)
    span = max((end - start).total_seconds(), 1.0)
    width, left, lane = 760, 230, 22
    height = 30 + len(journeys) * lane

    def x(moment: dt.datetime) -> float:
        return left + (moment - start).total_seconds() / span * (width - left - 10)

    namespace = (' xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="11"'
                 if standalone else "")
    parts = [f'<svg class="timeline"{namespace} role="img" aria-label="timeline of {_esc(user)}" width="{width}" '
             f'height="{height}">']
    for index, journey in enumerate(sorted(journeys, key=lambda j: j["first_ts"])):
        y = 5 + index * lane
        x0, x1 = x(journey["first_ts"]), x(journey["last_ts"])
        parts.append(f'<text x="0" y="{y + 13}">{_esc(journey["name"][:34])}</text>'
                     f'<rect class="lane" x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 2):.1f}" height="{lane - 6}" '
                     f'fill="{COLOURS[index % len(COLOURS)]}"><title>{_esc(journey["name"])}: '
                     f'{journey["num_events"]} events</title></rect>')
    parts.append(f'<text x="{left}" y="{height - 4}">{start:%Y-%m-%d}</text>'
                 f'<text x="{width - 80}" y="{height - 4}">{end:%Y-%m-%d}</text></svg>')
    return "".join(parts)


def timeline_chart(user: str, journeys: list[dict]) -> str:
    """The report's figure: the user's timeline (``timeline_svg``) with a caption."""
    return f"<figure><figcaption>user {_esc(user)}</figcaption>{timeline_svg(user, journeys, False)}</figure>"


def render(evaluations: list[dict], extraction: dict | None, named: list[dict], users: int = 4) -> tuple[str, str]:
    """(HTML, Markdown) for naming evaluations, optional extraction metrics and named journeys."""
    header = ["strategy", *TABLE_METRICS, "names/s", "prompt tokens"]
    body = ["<h1>Journey naming report</h1>"]
    markdown = ["# Journey naming report", ""]
    for evaluation in evaluations:
        title = (f"{evaluation['reference_set']}: {evaluation['scored']} journeys with a reference, "
                 f"{evaluation['journeys']} named, {evaluation['users']} users")
        if settings_text(evaluation):
            title += f" ({settings_text(evaluation)})"
        rows = comparison_rows(evaluation)
        body += [f"<h2>{_esc(title)}</h2>", table_html(header, rows, "comparison"),
                 '<div class="charts">', *(interval_chart(m, evaluation) for m in CHART_METRICS), "</div>"]
        markdown += [f"## {title}", "", *markdown_table(header, rows), ""]
        differences = difference_rows(evaluation)
        if differences:
            difference_header = ["strategy − keywords", *DIFFERENCE_METRICS]
            body += ["<h3>Paired difference against keywords (same journeys, 95% interval)</h3>",
                     table_html(difference_header, differences, "differences")]
            markdown += ["Paired difference against keywords:", "", *markdown_table(difference_header, differences), ""]
        reasons = fallback_lines(evaluation)
        if reasons:
            body += ["<h3>Why names fell back to keywords</h3><ul>",
                     *(f"<li>{_esc(line)}</li>" for line in reasons), "</ul>"]
            markdown += ["Why names fell back to keywords:", "", *(f"- {line}" for line in reasons), ""]
    if extraction:
        keys = ("ari", "nmi", "journey_recall", "journey_precision", "journeys_per_user", "planted_journeys_per_user")
        rows = [[k, str(extraction.get(k))] for k in keys]
        body += ["<h2>Extraction quality</h2>", table_html(["metric", "value"], rows, "extraction")]
        markdown += ["## Extraction quality", "", *(f"- {k}: {v}" for k, v in rows), ""]
    if named:
        by_user: dict[str, list[dict]] = defaultdict(list)
        for journey in named:
            by_user[journey["user_id"]].append(journey)
        histogram = {str(k): v for k, v in sorted(Counter(len(v) for v in by_user.values()).items())}
        body += ["<h2>Journeys per user</h2>", histogram_chart(histogram, "users by number of journeys"),
                 "<h2>Timelines</h2>"]
        chosen = sorted(by_user, key=lambda u: (-len(by_user[u]), u))[:users]
        body += [timeline_chart(user, by_user[user]) for user in chosen]
        markdown += ["## Journeys per user", "", *(f"- {k} journeys: {v} users" for k, v in histogram.items()), ""]
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Journey naming report</title>'
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    return page, "\n".join(markdown)
