"""The report of one model as a document: Markdown or a self-contained HTML page (pure: a
:class:`~sscmort_core.views.report.ModelReport` in, text out).

The document is first laid out as blocks (headings, paragraphs, tables, figures, code), then
written by one of two small writers, so both formats say the same thing. HTML embeds the
charts as inline SVG rendered by vl-convert (no browser, no network: the page opens offline);
Markdown gives each chart's data as a table instead.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from sscmort_core.views import eval_charts
from sscmort_core.views.names import horizon_label
from sscmort_core.views.report import REPORT_VERSION, ModelReport, build_report
from sscmort_core.views.study import STUDY, reported_aucs

FORMATS: tuple[str, ...] = ("md", "html")
RESEARCH_USE = "Research use only: not for clinical decisions."
SYNTHETIC_TEXT = ("Synthetic data: every patient of this cohort was made by sscmort's "
                  "generator; the numbers describe the generator, not real patients.")
MIXED_TEXT = ("Synthetic data: {n} of the {total} patients of this store are synthetic "
              "(made by sscmort's generator); real patients share the store.")
LABEL_RULE = ("For a scan on date t, death date d or last follow-up f, and horizon h: positive "
              "if death in (t, t+h]; negative if known alive at t+h; otherwise censored, left "
              "out of that horizon's binary metrics (never counted as a negative) and kept, "
              "with its follow-up, by the censoring-aware ones.")
MAX_CURVE_ROWS = 25  # Markdown: ROC points shown per curve (evenly spaced, ends kept)


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str
    strong: bool = False


@dataclass(frozen=True, eq=False)
class Table:
    frame: pd.DataFrame
    caption: str = ""


@dataclass(frozen=True, eq=False)
class Figure:
    title: str
    chart: Any  # an altair chart (HTML: inline SVG)
    data: pd.DataFrame  # what Markdown shows instead


@dataclass(frozen=True)
class Code:
    text: str
    language: str = ""


Block = Heading | Para | Table | Figure | Code


# --- cells -----------------------------------------------------------------------------------
_COUNT_HINTS = ("scans", "patients", "events", "positive", "negative", "censored", "folds",
                "horizon", "count", "deaths")


def _cell(value: Any, column: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "n/a"
        if float(value).is_integer() and any(h in column.lower() for h in _COUNT_HINTS):
            return str(int(value))
        return f"{float(value):.3f}"
    try:
        if pd.isna(value):
            return "n/a"
    except (TypeError, ValueError):
        pass
    return str(value)


def _ci(low: Any, high: Any) -> str:
    lo, hi = _cell(low), _cell(high)
    return "n/a" if "n/a" in (lo, hi) else f"{lo} to {hi}"


def _text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: [_cell(v, str(c)) for v in frame[c]] for c in frame.columns},
                        index=frame.index)


# --- the blocks ------------------------------------------------------------------------------
def report_blocks(report: ModelReport) -> list[Block]:
    """The document's blocks, in order (sections follow TRIPOD+AI's headings)."""
    blocks: list[Block] = [Heading(1, f"Model report: {report.label}"),
                           Para(RESEARCH_USE, strong=True)]
    if report.synthetic:
        c = report.cohort
        blocks.append(Para(SYNTHETIC_TEXT if c.all_synthetic or not c.patients else
                           MIXED_TEXT.format(n=c.synthetic_patients, total=c.patients),
                           strong=True))
    blocks.append(Para(f"A TRIPOD+AI-style summary of model {report.model_id}, written "
                       f"{report.created_utc} from the store's stored metrics, out-of-fold "
                       "predictions and model card (`sscmort report`, report version "
                       f"{REPORT_VERSION})."))
    if report.stale:
        blocks.append(Para("Stale: outcomes of this model's training scans changed since it "
                           "was trained; retrain it and recompute the metrics.", strong=True))
    for section in (_model, _cohort, _labels, _validation, _performance, _calibration,
                    _clinical, _charts, _card):
        blocks += section(report)
    return blocks


def _model(r: ModelReport) -> list[Block]:
    card = r.card
    rows = [("model id", r.model_id), ("name", r.label), ("kind", r.kind),
            ("version", card.version), ("algorithm", card.algorithm),
            ("backbone", card.backbone), ("pretrained", card.pretrained),
            ("likelihood", card.extra.get("likelihood")),
            ("features", ", ".join(card.features) if card.features else None),
            ("trained on", f"{card.n_scans} scans of {card.n_patients} patients"
             if card.n_scans else None),
            ("created", card.created), ("data hash", card.data_hash),
            ("weights sha256", card.weights_sha256),
            ("status", "stale" if r.stale else "current (or no fingerprint recorded)"),
            ("synthetic", r.synthetic), ("research use only", True)]
    frame = pd.DataFrame([(k, v) for k, v in rows if v is not None], columns=["item", "value"])
    return [Heading(2, "1. Model"), Table(frame)]


def _cohort(r: ModelReport) -> list[Block]:
    c = r.cohort
    facts = pd.DataFrame([
        ("patients", c.patients), ("scans", c.scans),
        ("synthetic patients", c.synthetic_patients),
        ("scan dates", f"{c.first_scan} to {c.last_scan}" if c.first_scan else None),
        ("median follow-up from first scan (years)", c.median_followup_years)],
        columns=["item", "value"])
    labels = pd.DataFrame([{"horizon (years)": h.horizon_years, "died within horizon":
                            h.positive, "known alive": h.negative, "censored": h.censored}
                           for h in c.labels])
    return [Heading(2, "2. Data: cohort and sources"), Table(facts),
            Table(c.sources.rename(columns={"synthetic": "synthetic"}),
                  "Patients and scans per source."),
            Table(labels, "Every stored scan by the label rule, per horizon.")]


def _labels(r: ModelReport) -> list[Block]:
    frame = pd.DataFrame([{
        "horizon (years)": s.horizon_years, "scans scored": s.scans, "patients": s.patients,
        "positive (died within horizon)": s.positive, "negative (known alive)": s.negative,
        "censored": s.censored} for s in r.scored])
    return [Heading(2, "3. Outcome: labels per horizon"), Para(LABEL_RULE),
            Table(frame, "The scans this model was scored on (its out-of-fold predictions).")]


def _validation(r: ModelReport) -> list[Block]:
    card = r.card
    cv = dict(card.extra.get("cv") or {})
    rows = [("evaluation", ("out-of-fold predictions: each scan is scored by a model fitted "
                            "without its patient")),
            ("folds", cv.get("folds", card.config.get("folds", r.n_folds))),
            ("folds in the stored predictions", r.n_folds),
            ("grouped by", cv.get("grouped_by", "patient" if r.n_folds else None)),
            ("stratified by", cv.get("stratified_by")),
            ("seed", cv.get("seed", card.config.get("seed"))),
            ("censored scans in the fit", cv.get("censored")),
            ("likelihood", card.extra.get("likelihood"))]
    frame = pd.DataFrame([(k, "not recorded in the model card" if v is None else v)
                          for k, v in rows], columns=["item", "value"])
    blocks: list[Block] = [Heading(2, "4. Validation design"), Table(frame)]
    settings = dict(card.extra.get("settings") or {})
    if settings:
        blocks.append(Table(pd.DataFrame(list(settings.items()),
                                         columns=["setting", "how it was chosen"]),
                            "What was tuned where (from the model card)."))
    else:
        blocks.append(Para("The model card records no per-setting provenance (how each "
                           "setting was chosen)."))
    recal = dict(card.extra.get("recalibration") or {})
    if recal:
        blocks.append(Para(f"Recalibration: {recal.get('method', 'n/a')}; fitted: "
                           f"{recal.get('fitted', 'n/a')}."))
    return blocks


_PERF_COLUMNS = ("horizon (years)", "metric", "value", "95% CI", "estimand", "censoring",
                 "scans", "patients", "events", "note")


def _metric_table(frame: pd.DataFrame, with_model: bool = False) -> pd.DataFrame:
    out = frame.assign(**{"95% CI": [_ci(a, b) for a, b in zip(frame["CI low"],
                                                               frame["CI high"])]})
    cols = (("model",) if with_model else ()) + _PERF_COLUMNS
    return out[[c for c in cols if c in out.columns]].reset_index(drop=True)


def _performance(r: ModelReport) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "5. Performance"),
        Para("Every stored metric with its patient-level bootstrap 95% CI (patients "
             "resampled, each scan with its patient), its estimand, how censored scans "
             "enter, and the scans, patients and events it used."),
        Table(_metric_table(r.metrics))]
    reported = pd.DataFrame([{
        "horizon (years)": h, "reported": a.label,
        "AUC": f"{a.auc_low:.3f}-{a.auc_high:.3f} (range over models and horizons)"
        if a.is_range else f"{a.auc_low:.3f}", "scans": a.n_scans, "events": a.n_events}
        for h in (s.horizon_years for s in r.scored) for a in reported_aucs(h)])
    if len(reported):
        blocks.append(Table(reported, f"For reference, not computed here: the AUCs published "
                                      f"by {STUDY} on its own registry cohort."))
    return blocks


_CALIBRATION_METRICS = ("Brier", "IPCW Brier", "calibration slope", "calibration intercept",
                        "IPCW calibration slope", "IPCW calibration intercept",
                        "observed / expected")


def _calibration(r: ModelReport) -> list[Block]:
    rows = r.metrics.loc[r.metrics["metric"].isin(_CALIBRATION_METRICS)]
    blocks: list[Block] = [Heading(2, "6. Calibration"),
                           Table(_metric_table(rows), "Calibration metrics (stored rows).")]
    horizons = list(r.card.extra.get("horizons") or [])
    if any("oof_auc_before_recalibration" in h for h in horizons):
        blocks.append(Table(pd.DataFrame([{
            "horizon (years)": h.get("horizon_years"), "OOF AUC": h.get("oof_auc"),
            "OOF AUC before recalibration": h.get("oof_auc_before_recalibration")}
            for h in horizons]), "Before / after recalibration (model card; the AUC of the "
                                 "labelled scans)."))
    stored = list(dict(r.card.extra.get("recalibration") or {}).get("stored") or [])
    if stored:
        blocks.append(Para("Stored recalibration (logit p' = a + b logit p, applied to new "
                           "scans): " + "; ".join(map(_recalibration_text, stored)) + "."))
    if not any(not c.recalibration.empty for c in r.charts):
        blocks.append(Para("No risks before recalibration are stored for this model (it is "
                           "not recalibrated), so there is no before / after reliability."))
    return blocks


def _recalibration_text(entry: Any) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    text = (f"{entry.get('horizon_years')} y: a = {_cell(entry.get('intercept'))}, "
            f"b = {_cell(entry.get('slope'))}")
    return text + (" (left unchanged)" if entry.get("unchanged") else "")


def _clinical(r: ModelReport) -> list[Block]:
    blocks: list[Block] = [Heading(2, "7. Clinical baselines")]
    if len(r.reference_metrics):
        blocks.append(Table(_metric_table(r.reference_metrics, with_model=True),
                            "AUC of the clinical reference models (Goh staging, clinical), "
                            "stored rows, on the same scans and folds."))
    for c in r.clinical:
        head = f"{horizon_label(c.horizon_years)}: "
        if c.reference_id is None:
            blocks.append(Para(head + c.note + "."))
            continue
        blocks.append(Para(head + f"best clinical reference {c.reference_label} "
                           f"({c.reference_id}, highest stored AUC); {c.note}."))
        if not c.added_value.empty:
            blocks.append(Table(c.added_value.reset_index(drop=True)))
    return blocks


def _roc_data(frame: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for _, part in frame.groupby("model_id", sort=False):
        idx = np.unique(np.linspace(0, len(part) - 1, min(len(part), MAX_CURVE_ROWS))
                        .round().astype(int))
        parts.append(part.iloc[idx])
    data = pd.concat(parts) if parts else frame
    return data[["fpr", "tpr", "threshold"]].reset_index(drop=True)


def _charts(r: ModelReport) -> list[Block]:
    blocks: list[Block] = [Heading(2, "8. Charts")]
    for c in r.charts:
        h = c.horizon_years
        blocks.append(Heading(3, horizon_label(h)))
        for label, reason in c.roc.unavailable:
            blocks.append(Para(f"{label}: no curve at {h} y, {reason}."))
        if not c.roc.empty:
            blocks.append(Figure(f"ROC at {horizon_label(h)}", eval_charts.roc_chart(
                c.roc.frame, h, reported_aucs(h)), _roc_data(c.roc.frame)))
        if not c.calibration.empty:
            blocks.append(Figure(
                f"Calibration at {horizon_label(h)} (observed: 1 - Kaplan-Meier per risk "
                "group, every scored scan)",
                eval_charts.calibration_chart(c.calibration.frame, h, " (observed: 1 - KM)"),
                c.calibration.frame[["mean_predicted", "observed_fraction", "observed_ipcw",
                                     "count", "n_events", "n_censored"]]))
        if not c.recalibration.empty:
            blocks.append(Figure(
                f"Reliability before / after recalibration at {horizon_label(h)}",
                eval_charts.calibration_chart(c.recalibration.frame, h,
                                              ": before / after recalibration"),
                c.recalibration.frame[["model", "mean_predicted", "observed_fraction",
                                       "count"]]))
    return blocks


def _card(r: ModelReport) -> list[Block]:
    return [Heading(2, "9. Model card"),
            Code(json.dumps(r.card.to_json(), indent=2, default=str), "json"),
            Para(RESEARCH_USE, strong=True)]


# --- writers ---------------------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(frame: pd.DataFrame) -> str:
    cells = _text_frame(frame)
    head = "| " + " | ".join(_md_escape(str(c)) for c in cells.columns) + " |"
    rule = "|" + "|".join("---" for _ in cells.columns) + "|"
    body = ["| " + " | ".join(_md_escape(v) for v in row) + " |"
            for row in cells.itertuples(index=False, name=None)]
    return "\n".join([head, rule, *body])


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as Markdown (charts as tables of their data)."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(f"**{b.text}**" if b.strong else b.text)
        elif isinstance(b, Table):
            out.append((f"{b.caption}\n\n" if b.caption else "") + _md_table(b.frame))
        elif isinstance(b, Figure):
            out.append(f"*{b.title}* (chart data):\n\n{_md_table(b.data)}")
        elif isinstance(b, Code):
            out.append(f"```{b.language}\n{b.text}\n```")
    return "\n\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#212121}table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.notice{background:#fff3cd;border:1px solid #e0c36a;padding:.5em}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}figure{margin:1em 0}"""


def _html_table(frame: pd.DataFrame, caption: str = "") -> str:
    cells = _text_frame(frame)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cells.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                   for row in cells.itertuples(index=False, name=None))
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(blocks: Sequence[Block], svg: Callable[[Any], str] | None = None) -> str:
    """The blocks as one self-contained HTML page; charts as inline SVG (``svg``: chart ->
    SVG text, default :func:`chart_svg`); nothing is fetched when it opens."""
    svg = svg or chart_svg
    title = next((b.text for b in blocks if isinstance(b, Heading)), "sscmort report")
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            text = html.escape(b.text)
            out.append(f'<p class="notice"><strong>{text}</strong></p>' if b.strong
                       else f"<p>{text}</p>")
        elif isinstance(b, Table):
            out.append(_html_table(b.frame, b.caption))
        elif isinstance(b, Figure):
            out.append(f"<figure>{svg(b.chart)}<figcaption>{html.escape(b.title)}"
                       f"</figcaption><details><summary>chart data</summary>"
                       f"{_html_table(b.data)}</details></figure>")
        elif isinstance(b, Code):
            out.append(f"<pre><code>{html.escape(b.text)}</code></pre>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(out) + "\n</body></html>\n")


def chart_svg(chart: Any) -> str:
    """An altair chart as SVG text, rendered by vl-convert (no browser, no network)."""
    import vl_convert

    with alt.data_transformers.disable_max_rows():
        spec = chart.to_json()
    return vl_convert.vegalite_to_svg(spec)


def render(report: ModelReport, fmt: str) -> str:
    """The report as ``fmt`` ("md" or "html")."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    blocks = report_blocks(report)
    return to_markdown(blocks) if fmt == "md" else to_html(blocks)



def report_document(store: Any, model_id: str, fmt: str = "html", *, n_boot: int = 2000,
                    seed: int = 0) -> str:
    """Build and render the report of ``model_id`` (what the Model comparison page's
    "Download report" sends; the CLI does the same in two steps)."""
    return render(build_report(store, model_id, n_boot=n_boot, seed=seed), fmt)
