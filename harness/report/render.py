"""Write the report files: index.md, index.html, leaderboard.tex, leaderboard.csv.

Markdown and HTML come from one block list (``document``) so the two pages
always say the same thing.  The HTML page is self-contained: inline CSS,
images as base64 data URIs, no scripts and no network access.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from harness.report import stats, tables
from harness.report.analysis import ReportData, fmt_num, problems
from harness.report.figures import Figure
from harness.runstate import DONE, FAILED, display_uri

FORMATS = ("md", "html", "latex", "csv")
#: Rows of the failed-runs table on the pages; failures.csv has every one.
FAILURE_ROWS = 20


def _summary(data: ReportData) -> list[str]:
    c = data.status_counts
    parts = [f"{n} {s}" for s, n in c.items() if n or s in DONE | FAILED]
    used = len(data.runs)
    rest = "" if used == data.n_read else " (the notes below say why the others are not)"
    items = [f"Read **{data.n_read}** runs from MLflow; **{used}** used{rest}: "
             + ", ".join(parts) + "."]
    items += data.notes
    items += _provenance(data)
    items += _failure_causes(data)
    if data.missing:
        items.append(f"**{len(data.missing)} missing cell(s)** (dataset, method) with no "
                     f"finished run that logged `{data.column}`: {_cells(data)}.")
    else:
        items.append("No missing (dataset, method) cells.")
    short = _short_cells(data)
    if short:
        items.append(f"**{len(short)} incomplete cell(s)** with fewer results than planned "
                     "runs: " + "; ".join(short) + ".")
    if data.unscored_methods:
        items.append("Methods without any result, left out of every cross-dataset statistic: "
                     + ", ".join(f"`{m}`" for m in data.unscored_methods) + ".")
    if data.dropped:
        n_methods = len(data.matrix.columns)
        why = "; ".join(f"`{d}` (missing {'every method' if len(ms) == n_methods else ', '.join(map(str, ms))})"  # noqa: E501
                        for d, ms in data.dropped.items())
        items.append(f"Left out of average rank, normalized score, Friedman and CD "
                     f"({len(data.complete)} of {len(data.matrix)} datasets used): {why}.")
    return items


def _provenance(data: ReportData, most: int = 5) -> list[str]:
    """Where the runs were produced: one entry per (host, harness version,
    commit, torch, GPU), so runs from different machines are told apart."""
    keys = ["host", "version", "git_commit", "torch", "gpu"]
    runs = data.runs
    if runs is None or runs.empty or not set(keys) <= set(runs.columns):
        return []
    groups = runs[keys].fillna("").astype(str).value_counts(sort=True)
    parts = []
    for (host, version, commit, torch, gpu), n in list(groups.items())[:most]:
        what = ", ".join(x for x in (f"harness {version}" if version else "",
                                     f"commit {commit[:10]}" if commit else "",
                                     f"torch {torch}" if torch else "",
                                     gpu or "CPU") if x)
        parts.append(f"{n} on `{host or 'unknown host'}` ({what})")
    if len(groups) > most:
        parts.append(f"{int(groups.iloc[most:].sum())} more from {len(groups) - most} "
                     f"other machine/version combinations")
    return ["Produced by: " + "; ".join(parts) + "."]


#: Cells named one by one in the summary before the rest are counted.
MAX_CELLS = 40


def _cells(data: ReportData) -> str:
    """Missing cells with their reasons (the planned runs' states), one entry
    per dataset ("every method" when no method has a result there)."""
    by_ds: dict = {}
    for d, m in data.missing:
        by_ds.setdefault(d, []).append(m)
    n_methods = len(data.matrix.columns)
    entries = []
    for d, ms in by_ds.items():
        why = [data.reasons.get((d, m)) for m in ms]
        if len(ms) == n_methods and len(set(why)) == 1:
            entries.append(f"{d}: every method" + (f" ({why[0]})" if why[0] else ""))
        else:
            entries.append(f"{d}: " + ", ".join(
                f"{m} ({w})" if w else str(m) for m, w in zip(ms, why)))
    return _capped(entries)


def _short_cells(data: ReportData) -> list[str]:
    """Scored cells whose planned runs are not all done, e.g. ``wine/focal
    (2 results; 1 pending)``; only a suite file's report knows the plan."""
    if data.scope is None or data.scope.plan is None:
        return []
    missing = set(data.missing)
    out = []
    for cell, why in data.reasons.items():
        if cell in missing or cell not in data.cells.index:
            continue
        out.append(f"{cell[0]}/{cell[1]} ({int(data.cells.loc[cell, 'n'])} results; {why})")
    return [_capped(out)] if out else []


def _capped(entries: list[str], most: int = MAX_CELLS) -> str:
    if len(entries) <= most:
        return "; ".join(entries)
    return "; ".join(entries[:most]) + f"; and {len(entries) - most} more"


def _failure_causes(data: ReportData) -> list[str]:
    """One line per (dataset, status, error): a dataset that could not be
    fetched fails all its runs with the same error, which is one fact."""
    bad = problems(data.runs)
    if bad.empty:
        return []
    out = []
    errors = bad["error"].map(tables.one_line)
    for (ds, status, err), grp in bad.assign(error=errors).groupby(
            ["dataset", "status", "error"], sort=True):
        what = f"{len(grp)} run(s) {status} on `{ds}` ({grp['method'].nunique()} method(s))"
        out.append(f"{what}: {err}" if err else what)
    return out


def _independence(data: ReportData) -> list[str]:
    """What counts as a dataset in the tests, said before them."""
    out = []
    for group, labels in data.shared.items():
        how = ("declared with `condition_of:`" if data.shared_how.get(group) == "declared"
               else "same source and parameters; `condition_of:` in the suite overrides")
        out.append(f"{len(labels)} dataset entries are conditions of one dataset `{group}` "
                   f"({how}): " + ", ".join(f"`{x}`" for x in labels) + ". The tests over "
                   "datasets and Elo's bootstrap count it once (the mean over its "
                   "conditions); average rank, win rate and the per-dataset table show "
                   "every condition.")
    need = stats.min_datasets_wilcoxon()
    if data.per_seed is not None:
        out.append(f"**{data.n_independent} independent dataset(s)**: too few for tests over "
                   f"datasets (a Wilcoxon test needs {need}; rank statistics and win rates "
                   "only restate the order of the means). Methods are compared on each dataset"
                   + (" and condition" if data.shared else "") + " instead, paired over seeds "
                   "(same seed, same split): see *Paired over seeds*.")
    return out


def _significance(data: ReportData) -> list[str]:
    fr = data.friedman
    if fr.skipped:
        out = [f"Friedman test skipped: {fr.skipped}."]
    else:
        verdict = "reject" if fr.pvalue < 0.05 else "cannot reject"
        out = [f"Friedman test over {fr.n} complete datasets and {fr.k} methods: "
               f"chi² = {fmt_num(fr.statistic)}, p = {fmt_num(fr.pvalue, 3)} "
               f"({verdict} equal performance at alpha = 0.05)."]
    if fr.n >= 1 and fr.k >= 2 and data.cd == data.cd:
        groups = "; ".join("{" + ", ".join(map(str, g)) + "}" for g in data.cliques) or "none"
        out.append(f"Nemenyi critical difference (alpha = 0.05, k = {fr.k}, N = {fr.n}): "
                   f"CD = {fmt_num(data.cd)}. Groups not significantly different: {groups}.")
    elif data.cd_skipped:
        out.append(f"Nemenyi critical difference skipped: {data.cd_skipped}.")
    if not _wilcoxon_tested(data) and len(data.wilcoxon):
        most = int(data.wilcoxon["n"].max())
        out.append(f"Pairwise Wilcoxon tests skipped: a pair needs at least "
                   f"{stats.min_datasets_wilcoxon()} shared datasets to reach p < 0.05; the "
                   f"most any pair shares is {most}.")
    return _independence(data) + out


def _wilcoxon_tested(data: ReportData) -> bool:
    """Whether any pair had enough datasets for a Wilcoxon p-value."""
    return bool(data.wilcoxon["p"].notna().any()) if len(data.wilcoxon) else False


def document(data: ReportData, figures: list[Figure]) -> list[tuple]:
    """The report as blocks: (h, level, text) (p, text) (ul, items) (table, Table)
    (fig, Figure) (details, summary, Table)."""
    figs = {f.key: f for f in figures}
    direction = "higher" if data.greater else "lower"
    done = f" ({data.completeness})" if data.completeness else ""
    doc: list[tuple] = [
        ("h", 1, f"Leaderboard: {data.title}{done}"),
        ("p", f"Metric `{data.column}` ({direction} is better) · experiment `{data.experiment}`"
              f" · tracking URI `{display_uri(data.tracking_uri)}`"),
        ("h", 2, "Runs"), ("ul", _summary(data)),
    ]
    bad = tables.problem_table(data)
    if len(bad.rows) > FAILURE_ROWS:
        title = (f"{len(bad.rows)} runs that did not finish (the first {FAILURE_ROWS}; all of "
                 f"them in failures.csv)")
        bad.rows = bad.rows[:FAILURE_ROWS]
        doc.append(("details", title, bad))
    elif bad.rows:
        doc.append(("details", f"{len(bad.rows)} runs that did not finish", bad))
    doc += [("h", 2, "Leaderboard"), ("table", tables.leaderboard_table(data)),
            ("h", 2, "Significance"), ("ul", _significance(data)), ("fig", figs.get("cd")),
            ("table", tables.wilcoxon_table(data) if _wilcoxon_tested(data) else None),
            *_paired_blocks(data),
            ("h", 2, "Per-dataset results"), ("table", tables.per_dataset_table(data)),
            ("fig", figs.get("seeds")), ("fig", figs.get("ranks")),
            *_other_metric_blocks(data),
            ("h", 2, "Learning curves"), ("fig", figs.get("curves")),
            ("h", 2, "Score vs training time"), ("fig", figs.get("pareto")),
            *((("h", 2, "Images logged by the runs"), ("fig", figs["run_images"]))
              if figs.get("run_images") is not None and figs["run_images"].path else ()),
            ("h", 2, "All cells"),
            ("details", "mean, std, 95% CI and seeds per cell", tables.cell_detail_table(data))]
    return [b for b in doc if not (b[0] in ("fig", "table") and b[1] is None)]


def _other_metric_blocks(data: ReportData) -> list[tuple]:
    """The suite's other metrics, each folded: shown, never ranked here."""
    if not data.other_metrics:
        return []
    out: list[tuple] = [("h", 2, "Other metrics"),
                        ("p", f"The suite's other metrics, per dataset and method (ranked only "
                              f"by `{data.column}`; `harness report --metric` ranks by another "
                              f"that has a direction).")]
    for word, t in zip(data.other_metrics.values(), tables.other_metric_tables(data)):
        what = f"{word} is better" if word != "none" else "no direction: shown, not ranked"
        out.append(("details", f"{t.title} ({what})", t))
    return out


def _paired_blocks(data: ReportData) -> list[tuple]:
    """The per-seed and per-unit comparison sections (when there are any)."""
    out: list[tuple] = []
    if data.per_seed is not None:
        out += [("h", 2, "Paired over seeds"),
                _fold(tables.paired_table(data, data.per_seed, "paired_seeds", "seed"))]
    if data.per_unit is not None:
        from harness.report.paired import unit_key

        out += [("h", 2, "Paired on test units"),
                ("p", f"Every run logged `{unit_key(data.column)}` per test unit (step = the "
                      "unit's id): the methods' values on the same unit of the same seed are "
                      "paired, and a unit met under several seeds counts once (its differences "
                      "averaged), so the seed-to-seed spread of the means (a different split "
                      "per seed) does not hide a difference on the same units."),
                _fold(tables.paired_table(data, data.per_unit, "paired_units", "test unit"))]
    return out


#: Rows of a paired table shown as a table; longer ones fold (their CSV has all).
PAIRED_ROWS = 30


def _fold(table: tables.Table) -> tuple:
    if len(table.rows) <= PAIRED_ROWS:
        return ("table", table)
    return ("details", f"{table.title} ({len(table.rows)} comparisons; also in "
                       f"{table.key}.csv)", table)


def _md_figure(f: Figure) -> str:
    if f.path is None:
        return f"*{_md(f.title)}: not drawn ({_md(f.skipped)}).*"
    return f"![{_md(f.title)}]({f.path.name})\n\n*{_md(f.caption)}*"


_md = tables.md_inline


def to_markdown(doc: list[tuple]) -> str:
    """index.md text."""
    out = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + _md(block[2]))
        elif kind == "p":
            out.append(_md(block[1]))
        elif kind == "ul":
            out.append("\n".join(f"- {_md(i)}" for i in block[1]))
        elif kind in ("table", "details"):
            t = block[-1]
            title = f"**{_md(block[1])}**" if kind == "details" else f"**{_md(t.title)}**"
            out.append(title + "\n\n" + tables.to_markdown(t)
                       + (f"\n\n*{_md(t.caption)}*" if t.caption else ""))
        elif kind == "fig":
            out.append(_md_figure(block[1]))
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape, then turn the Markdown subset used in prose into HTML."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222}table.report{border-collapse:collapse;margin:.5em 0;font-size:13px}
table.report th,table.report td{border:1px solid #ccc;padding:3px 7px;white-space:nowrap}
table.report th{background:#f1f3f5}table.report tr:nth-child(even) td{background:#fafafa}
.scroll{overflow-x:auto}figure{margin:1em 0}figure img{max-width:100%;height:auto}
figcaption,.caption{color:#555;font-size:12px}code{background:#f1f3f5;padding:0 3px}"""


def _html_table(t: tables.Table) -> str:
    cap = f'<p class="caption">{_inline(t.caption)}</p>' if t.caption else ""
    return (f"<h3>{_inline(t.title)}</h3><div class=\"scroll\">{tables.to_html(t)}</div>{cap}")


def _html_figure(f: Figure) -> str:
    if f.path is None:
        why = _inline(f"{f.title}: not drawn ({f.skipped}).")
        return f'<p class="caption"><i>{why}</i></p>'
    data = base64.b64encode(f.path.read_bytes()).decode("ascii")
    return (f'<figure><img id="fig-{f.key}" alt="{html.escape(f.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{_inline(f.caption)}'
            "</figcaption></figure>")


def to_html(doc: list[tuple], title: str) -> str:
    """index.html text (self-contained)."""
    body = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            body.append(_html_table(block[1]))
        elif kind == "details":
            # Short lists (typically the failed runs) are shown; long ones fold.
            open_ = " open" if len(block[2].rows) <= 25 else ""
            body.append(f"<details{open_}><summary>{_inline(block[1])}</summary>"
                        f"{_html_table(block[2])}</details>")
        elif kind == "fig":
            body.append(_html_figure(block[1]))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def to_latex(data: ReportData) -> str:
    """leaderboard.tex: leaderboard and per-dataset tables (needs booktabs)."""
    parts = ["% Generated by harness report; needs \\usepackage{booktabs}.\n"]
    parts += [tables.to_latex(t) for t in (tables.leaderboard_table(data),
                                           tables.per_dataset_table(data))]
    return "\n".join(parts)


def leaderboard_frame(data: ReportData):
    """The leaderboard.csv content: one row per method, fixed column order."""
    return data.leaderboard.reset_index(drop=True)


def check_formats(formats) -> None:
    """Raise ``UserError`` for a format name this module cannot write."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        from harness.errors import UserError

        raise UserError(f"unknown report format(s) {sorted(unknown)}; choose from {list(FORMATS)}")


def write(data: ReportData, figures: list[Figure], out: Path, formats) -> list[Path]:
    """Write the requested formats into ``out``; returns the files written."""
    check_formats(formats)
    written = []
    doc = document(data, figures)
    if "md" in formats:
        written.append(out / "index.md")
        written[-1].write_text(to_markdown(doc), encoding="utf-8")
    if "html" in formats:
        written.append(out / "index.html")
        written[-1].write_text(to_html(doc, f"Leaderboard: {data.title}"), encoding="utf-8")
    if "latex" in formats:
        written.append(out / "leaderboard.tex")
        written[-1].write_text(to_latex(data), encoding="utf-8")
    if "csv" in formats:
        written.append(out / "leaderboard.csv")
        leaderboard_frame(data).to_csv(written[-1], index=False)
        for name, frame in (("paired_seeds.csv", data.per_seed),
                            ("paired_units.csv", data.per_unit)):
            if frame is not None:
                written.append(out / name)
                frame.to_csv(written[-1], index=False)
    bad = failures_frame(data)
    if len(bad):  # the pages show the first FAILURE_ROWS and point here
        written.append(out / "failures.csv")
        bad.to_csv(written[-1], index=False)
    return written


def failures_frame(data: ReportData):
    """failures.csv: every run that did not finish, with its one-line error
    (local paths redacted, as on the pages)."""
    bad = problems(data.runs).reset_index(drop=True)
    bad["error"] = [tables.one_line(e) for e in bad["error"]]
    return bad
