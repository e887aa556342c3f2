"""Format-neutral tables rendered to Markdown, LaTeX and HTML via tabulate.

Cells are plain strings; a cell wrapped in ``bold()`` is emphasised in each
format.  Emphasis travels as private-use Unicode markers that tabulate's own
escaping leaves alone and that are swapped for ``**``, ``\\textbf{}`` or
``<b>`` afterwards, so LaTeX and HTML escaping stays tabulate's job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from harness.report import stats
from harness.report.analysis import ReportData, fmt_mean_std, fmt_num, problems

_B0, _B1 = "\ue000", "\ue001"
#: An absolute path of two or more parts (POSIX or Windows).
_PATH = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:\\|/)(?:[^\s/\\'\"]+[/\\])+([^\s/\\'\",;:)]+)")


def one_line(error) -> str:
    """A run's error for a published report: one line (a foreign run may
    carry a traceback), at most 300 characters, and absolute paths of the
    producing machine cut to their file name (``/home/me/data/x.csv`` ->
    ``…/x.csv``)."""
    text = " ".join(str(error if isinstance(error, str) else "").split())
    return _PATH.sub(lambda m: "…/" + m.group(1), text)[:300]


def bold(text: str) -> str:
    """Mark a cell as emphasised (the best value of a row, for instance)."""
    return f"{_B0}{text}{_B1}"


@dataclass
class Table:
    """A titled table; ``align`` is tabulate's colalign."""

    key: str
    title: str
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    align: list[str] = field(default_factory=list)


def to_markdown(t: Table) -> str:
    """GitHub-flavoured pipe table."""
    from tabulate import tabulate

    # github format does no escaping, so markers can become ** before column widths are set.
    esc = [[md_text(c).replace(_B0, "**").replace(_B1, "**") for c in r] for r in t.rows]
    return tabulate(esc, headers=[md_text(h) for h in t.headers], tablefmt="github",
                    disable_numparse=True, colalign=t.align or None)


#: A ``<`` that would open raw HTML in CommonMark (a tag, a comment, a
#: declaration): ``<script``, ``</b``, ``<!--``; not ``p < 0.05``.
_HTML_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


def md_inline(text) -> str:
    """Text for index.md: names from the store (a method, a dataset, an
    error) may hold HTML, which a Markdown viewer would render; it is shown as
    text (``<script>`` -> ``&lt;script>``)."""
    return _HTML_OPEN.sub("&lt;", str(text))


def md_text(text) -> str:
    """``md_inline`` for a Markdown table cell, with ``|`` escaped so a name
    never adds a column."""
    return md_inline(text).replace("|", "\\|")


def to_latex(t: Table) -> str:
    """booktabs table inside a ``table`` float with the title as caption."""
    from tabulate import tabulate

    body = tabulate(t.rows, headers=t.headers, tablefmt="latex_booktabs",
                    disable_numparse=True, colalign=t.align or None)
    body = body.replace(_B0, "\\textbf{").replace(_B1, "}").replace("±", "$\\pm$")
    body = body.replace("–", "--")
    title = t.title.replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")
    return ("\\begin{table}[ht]\n\\centering\n\\small\n"
            f"\\caption{{{title}}}\n\\label{{tab:{t.key}}}\n{body}\n\\end{{table}}\n")


def to_html(t: Table) -> str:
    """HTML table (tabulate escapes cell text)."""
    from tabulate import tabulate

    body = tabulate(t.rows, headers=t.headers, tablefmt="html", disable_numparse=True,
                    colalign=t.align or None)
    body = body.replace(_B0, "<b>").replace(_B1, "</b>")
    return body.replace("<table>", f'<table id="{t.key}" class="report">', 1)


def leaderboard_table(data: ReportData) -> Table:
    """Rank, average rank, win rate, normalized score, Elo, w/t/l, datasets."""
    b = data.leaderboard
    headers = ["#", "method", "avg rank", "win rate", "norm. score", "Elo [95% CI]"]
    if data.baseline:
        headers.append(f"W/T/L vs {data.baseline}")
    timed = "train_s" in b.columns
    if timed:
        headers.append("train s/run")
    headers.append("datasets")
    best = {c: b[c].min() if c == "avg_rank" else b[c].max()
            for c in ("avg_rank", "win_rate", "normalized_score", "elo")}

    def cell(m, c, text):
        return bold(text) if math.isfinite(b.at[m, c]) and b.at[m, c] == best[c] else text

    rows = []
    for i, m in enumerate(b.index, 1):
        r = b.loc[m]
        elo = (f"{r.elo:.0f} [{r.elo_low:.0f}, {r.elo_high:.0f}]" if math.isfinite(r.elo_low)
               else fmt_num(r.elo, 4) if math.isfinite(r.elo) else "–")
        row = [str(i), str(m), cell(m, "avg_rank", fmt_num(r.avg_rank, 3)),
               cell(m, "win_rate", f"{r.win_rate:.3f}" if math.isfinite(r.win_rate) else "–"),
               cell(m, "normalized_score", fmt_num(r.normalized_score, 3)),
               cell(m, "elo", elo)]
        if data.baseline:
            row.append("–" if m == data.baseline else f"{r.wins}/{r.ties}/{r.losses}")
        if timed:
            row.append(fmt_num(r.train_s, 3))
        row.append(str(int(r.n_datasets)))
        rows.append(row)
    n_c, n_all = len(data.complete), len(data.matrix)
    caption = (f"Average rank and normalized score (0 = worst, 1 = best) over the {n_c} of "
               f"{n_all} datasets where every compared method has results; win rate "
               "(ties count half), Elo (Bradley-Terry, bootstrap over datasets, fixed seed) "
               "and W/T/L over every dataset where both methods have results."
               + (" train s/run: mean `time/train_s` per run over the same datasets as "
                  "the average rank." if timed else "")
               + _independence_caption(data))
    done = f" ({data.completeness})" if data.completeness else ""
    return Table("leaderboard", f"Leaderboard on {data.column}{done}", headers, rows, caption)


def _independence_caption(data: ReportData) -> str:
    """What the leaderboard's numbers can say with few independent datasets."""
    n, need = data.n_independent, stats.min_datasets_wilcoxon()
    text = ""
    if data.shared:
        text += (f" Counted as {n} independent dataset(s): the conditions of one dataset "
                 "are resampled together.")
    if n < need:
        text += (f" With {n} independent dataset(s) these columns only restate the order "
                 f"of the means, and Elo has no interval (it needs {need}: a bootstrap over "
                 "fewer has a handful of distinct resamples, over one zero width). Whether "
                 "a difference is real: the section Paired over seeds.")
    return text


def per_dataset_table(data: ReportData) -> Table:
    """Datasets x methods, ``mean ± std (seeds)``, best per row in bold."""
    methods = data.methods
    rows = []
    for d in data.datasets:
        row = [str(d)]
        vals = data.matrix.loc[d]
        present = vals.dropna()
        top = (present.max() if data.greater else present.min()) if len(present) else None
        for m in methods:
            c = data.cells.loc[(d, m)] if (d, m) in data.cells.index else None
            if c is None or c["n"] == 0:
                why = data.reasons.get((d, m))
                bad = int(c["n_bad"]) if c is not None else 0
                row.append(f"missing ({why})" if why else f"missing ({bad} not finished)"
                           if bad else "missing (no runs)")
                continue
            text = fmt_mean_std(c["mean"], c["std"], int(c["n"]))
            row.append(bold(text) if vals[m] == top else text)
        rows.append(row)
    arrow = "higher" if data.greater else "lower"
    caption = (f"Mean ± std of {data.column} over seeds (number of seeds in brackets); "
               f"best per dataset in bold ({arrow} is better). Missing cells are not imputed.")
    return Table("per_dataset", f"{data.column} per dataset", ["dataset", *methods], rows,
                 caption)


def other_metric_tables(data: ReportData) -> list[Table]:
    """One table per other suite metric (``data.other_metrics``): datasets x
    methods (leaderboard order), ``mean ± std (seeds)`` over finished runs,
    best per row in bold where the metric has a direction; a metric without
    one (a signed bias) is shown unmarked."""
    from harness.runstate import FINISHED

    done = data.runs[data.runs["status"] == FINISHED]
    out = []
    for column, word in data.other_metrics.items():
        best = {"higher": max, "lower": min}.get(word)
        ok = done[done[column].notna()]
        g = ok.groupby(["dataset", "method"])[column]
        mean, std, n = g.mean(), g.std(ddof=1), g.count()
        rows = []
        for d in data.datasets:
            row = [str(d)]
            present = [mean[(d, m)] for m in data.methods if (d, m) in mean.index]
            top = best(present) if best and present else None
            for m in data.methods:
                if (d, m) not in mean.index:
                    row.append("–")
                    continue
                text = fmt_mean_std(mean[(d, m)], std[(d, m)], int(n[(d, m)]))
                row.append(bold(text) if top is not None and mean[(d, m)] == top else text)
            rows.append(row)
        how = (f"best per dataset in bold ({word} is better)" if word != "none" else
               "no direction (neither higher nor lower is better): not ranked, not marked")
        out.append(Table(f"other_{column}", f"{column} per dataset",
                         ["dataset", *data.methods], rows,
                         f"Mean ± std of {column} over the finished runs' seeds (number in "
                         f"brackets); {how}; – = no finished run logged it."))
    return out


def cell_detail_table(data: ReportData) -> Table:
    """One row per (dataset, method): mean, std, bootstrap 95% CI, seeds, runs not finished."""
    rows = []
    for (d, m), c in data.cells.iterrows():
        ci = (f"[{fmt_num(c.ci_low)}, {fmt_num(c.ci_high)}]"
              if math.isfinite(c.ci_low) else "–")
        rows.append([str(d), str(m), fmt_num(c["mean"]), fmt_num(c["std"]), ci, str(int(c.n)),
                     str(int(c.n_bad))])
    headers = ["dataset", "method", "mean", "std", "95% CI", "seeds", "not finished"]
    return Table("cells", f"{data.column}: every (dataset, method) cell", headers, rows,
                 "95% CI: percentile bootstrap of the mean over seeds (2,000 resamples, fixed "
                 "seed); needs at least 2 seeds. It stays within the observed values, so "
                 "within a bounded metric's range; with few seeds it is narrower than a t "
                 "interval.")


def wilcoxon_table(data: ReportData) -> Table:
    """Pairwise Wilcoxon signed-rank tests with Holm-adjusted p-values."""
    rows = []
    for r in data.wilcoxon.itertuples():
        p_holm = fmt_num(r.p_holm, 3)
        rows.append([str(r.a), str(r.b), str(r.n), f"{r.wins_a}/{r.ties}/{r.wins_b}",
                     fmt_num(r.statistic), fmt_num(r.p, 3),
                     bold(p_holm) if r.p_holm < 0.05 else p_holm, r.note])
    headers = ["A", "B", "datasets", "A wins/ties/B wins", "W", "p", "p (Holm)", "note"]
    return Table("wilcoxon", "Pairwise Wilcoxon signed-rank tests", headers, rows,
                 "Two-sided, over the datasets where both methods have results; Holm "
                 "correction over all pairs; p (Holm) < 0.05 in bold.")


def problem_table(data: ReportData) -> Table:
    """Every run that did not finish, with its one-line error."""
    rows = [[str(r.dataset), str(r.method), str(r.seed), str(r.status), one_line(r.error),
             str(r.run_id)] for r in problems(data.runs).itertuples()]
    return Table("problems", "Runs that did not finish",
                 ["dataset", "method", "seed", "status", "error", "run id"], rows)


def paired_table(data: ReportData, frame, key: str, unit: str) -> Table:
    """Paired comparisons (``paired.compare``): one row per (dataset, method, vs)."""
    rows = []
    for r in frame.itertuples():
        ci = (f" [{fmt_num(r.ci_low)}, {fmt_num(r.ci_high)}]" if math.isfinite(r.ci_low)
              else "")
        p_holm = fmt_num(r.p_holm, 3)
        separated = math.isfinite(r.p_holm) and r.p_holm < 0.05
        verdict = "separated" if separated else ("tied" if math.isfinite(r.p_holm)
                                                 else "not tested")
        rows.append([str(r.dataset), str(r.method), f"{r.vs} ({r.relation})", str(r.n),
                     f"{r.wins}/{r.ties}/{r.losses}", fmt_num(r.mean_diff) + ci,
                     r.test or "–", fmt_num(r.p, 3), bold(p_holm) if separated else p_holm,
                     verdict + (f" ({r.note})" if r.note else "")])
    headers = ["dataset", "method", "vs", unit + "s", "better/equal/worse", "mean diff [95% CI]",
               "test", "p", "p (Holm)", "verdict"]
    arrow = "higher" if data.greater else "lower"
    caption = (f"Each method against the reference (the baseline, else the best mean on that "
               f"dataset) and against the method ranked just above it, paired on the same "
               f"{unit}s ({arrow} {data.column} is better). mean diff = method minus vs, with a "
               f"95% t interval; better/equal/worse count {unit}s. Test: two-sided Wilcoxon "
               f"signed-rank with at least {stats.min_datasets_wilcoxon()} {unit}s (fewer can "
               f"never reach p < 0.05), else a paired t-test; p (Holm): Holm-adjusted over every "
               f"row of this table. 'tied' means not separated at 0.05, not shown equal.")
    title = f"{data.column}: methods compared paired on {unit}s"
    return Table(key, title, headers, rows, caption)
