"""Static PNG plots for the report (matplotlib, Agg canvas).

Figures are built with ``matplotlib.figure.Figure`` and an explicit Agg
canvas instead of pyplot: no global backend switch in the caller's process
and no figure registry to leak memory when a report draws many plots.
Each function writes one PNG and returns its path.  Per-dataset plots are
small multiples in one figure, which is far cheaper to render than one
figure per dataset when a suite has dozens of datasets.
"""

from __future__ import annotations

import math
from pathlib import Path

DPI = 100


def _figure(width: float, height: float, layout: str | None = None):
    """A figure on its own Agg canvas; ``layout="constrained"`` for single
    plots with labels and colour bars (``tight_layout`` cannot fit a colour
    bar's axes and warns "Tight layout not applied")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path, tight: bool = True) -> Path:
    # bbox_inches="tight" draws the figure twice; grids lay themselves out instead.
    fig.savefig(path, dpi=DPI, bbox_inches="tight" if tight else None)
    return path


def method_colors(methods) -> dict:
    """A stable colour per method, shared by every plot."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    if len(methods) > 20:
        cmap = colormaps["gist_ncar"]
        return {m: cmap(i / len(methods)) for i, m in enumerate(methods)}
    return {m: cmap(i) for i, m in enumerate(methods)}


def _grid(n: int, ncols: int = 4, cell=(4.2, 2.6), top: float = 0.4, bottom: float = 0.6,
          hspace: float = 0.4):
    """``n`` panels in a fixed layout (margins in inches): tight_layout and tight
    bounding boxes measure every artist and dominate the time of large grids."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    width, height = cell[0] * ncols + 0.6, cell[1] * nrows + top + bottom
    fig = _figure(width, height)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.15 / width, bottom=bottom / height,
                        top=1 - top / height, wspace=0.3, hspace=hspace)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def cd_diagram(avg_ranks, cd: float, cliques, path: Path, n_datasets: int) -> Path:
    """Demšar-style critical difference diagram: methods on a rank axis (1 =
    best, left), thick bars join methods not significantly different."""
    order = avg_ranks.sort_values()
    k = len(order)
    half = math.ceil(k / 2)
    row, top = 0.32, 0.9
    n_rows = max(half, k - half)
    bottom = -(0.5 + 0.22 * len(cliques) + row * n_rows)
    fig = _figure(10, 0.9 * (top - bottom) + 0.4)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom - 0.1, top + 0.1)

    def x(rank):
        return 0.25 + 0.5 * (rank - 1) / max(k - 1, 1)

    ax.plot([x(1), x(k)], [0, 0], color="black", lw=1.2)
    for r in range(1, k + 1):
        ax.plot([x(r)] * 2, [0, 0.08], color="black", lw=1)
        ax.text(x(r), 0.13, str(r), ha="center", va="bottom", fontsize=9)
    if math.isfinite(cd):
        y = top - 0.12
        ax.plot([x(1), x(1 + cd)], [y, y], color="tab:red", lw=2)
        ax.text(x(1 + cd / 2), y + 0.04, f"CD = {cd:.2f}", ha="center", va="bottom",
                fontsize=9, color="tab:red")
    for c, group in enumerate(cliques):
        y = -0.25 - 0.22 * c
        ax.plot([x(order[group[0]]) - 0.005, x(order[group[-1]]) + 0.005], [y, y],
                color="black", lw=4, solid_capstyle="round")
    y0 = -(0.5 + 0.22 * len(cliques))
    for i, (name, r) in enumerate(order.items()):
        left = i < half
        y = y0 - row * (i if left else k - 1 - i)
        end = 0.2 if left else 0.8
        ax.plot([x(r), x(r), end], [0, y, y], color="0.3", lw=0.9)
        ax.text(end - 0.005 if left else end + 0.005, y, f"{name} ({r:.2f})",
                ha="right" if left else "left", va="center", fontsize=9)
    ax.text(0.5, bottom - 0.05, f"average rank over {n_datasets} datasets (Nemenyi, alpha=0.05)",
            ha="center", va="top", fontsize=8, color="0.35")
    return _save(fig, path)


def seed_plots(scored, column: str, datasets, methods, colors, path: Path) -> Path:
    """Per dataset: box (quartiles, whiskers min-max, median line) of each method's
    seeds with the single seeds as dots on top.

    Built for 50 datasets x 20 methods in a few seconds: a handful of
    collections per panel instead of ``Axes.boxplot`` (six artists per box),
    explicit limits instead of autoscaling, and method names only under the
    bottom panel of each column (shared x axes cost quadratic time)."""
    import numpy as np
    from matplotlib.collections import LineCollection, PolyCollection

    pos = {m: i for i, m in enumerate(methods)}
    fig, axes = _grid(len(datasets), bottom=1.5, hspace=0.25)
    g = scored.groupby(["dataset", "method"])[column]
    q = g.quantile([0.25, 0.5, 0.75]).unstack()  # vectorised; describe() is per group
    q.columns = ["q1", "med", "q3"]
    q["lo"], q["hi"] = g.min(), g.max()
    by_ds = dict(tuple(scored.groupby("dataset")))
    rng = np.random.default_rng(0)  # jitter only; fixed so plots are reproducible
    for ax, d in zip(axes, datasets):
        qd = q.xs(d, level="dataset") if d in by_ds else q.iloc[0:0]
        x = np.array([pos[m] for m in qd.index], dtype=float)
        lo, q1, med, q3, hi = (qd[c].to_numpy() for c in ("lo", "q1", "med", "q3", "hi"))
        ax.add_collection(PolyCollection(
            [[(a - .3, b), (a + .3, b), (a + .3, c), (a - .3, c)] for a, b, c in zip(x, q1, q3)],
            facecolors="none", edgecolors="0.25", linewidths=0.9), autolim=False)
        whiskers = [[(a, b), (a, c)] for a, b, c in zip(x, lo, q1)]
        whiskers += [[(a, b), (a, c)] for a, b, c in zip(x, q3, hi)]
        whiskers += [[(a - .3, b), (a + .3, b)] for a, b in zip(x, med)]
        ax.add_collection(LineCollection(whiskers, colors="0.2", linewidths=0.9), autolim=False)
        sub = by_ds.get(d)
        if sub is not None:
            xs = sub["method"].map(pos).to_numpy(dtype=float)
            ax.scatter(xs + rng.uniform(-0.15, 0.15, len(xs)), sub[column].to_numpy(), s=9,
                       alpha=0.75, c=[colors[m] for m in sub["method"]], zorder=3, lw=0)
        for m in methods:
            if m not in qd.index:
                ax.text(pos[m], 0.5, "missing", transform=ax.get_xaxis_transform(),
                        rotation=90, ha="center", va="center", fontsize=7, color="tab:red")
        if len(qd):
            span = (hi.max() - lo.min()) or abs(hi.max()) or 1.0
            ax.set_ylim(lo.min() - 0.06 * span, hi.max() + 0.06 * span)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_title(str(d), fontsize=9, y=1.0)
        ax.set_ylabel(column, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    ncols = axes[0].get_gridspec().ncols if len(axes) else 1
    for i, ax in enumerate(axes):
        if i + ncols >= len(axes):  # no panel below: name the methods here
            ax.set_xticks(range(len(methods)))
            ax.set_xticklabels(methods, rotation=60, ha="right", fontsize=7)
        else:  # tick objects are the costliest artists; faint guides do the job
            ax.set_xticks([])
            ax.vlines(range(len(methods)), 0, 1, transform=ax.get_xaxis_transform(),
                      colors="0.9", linewidths=0.6, zorder=0)
    return _save(fig, path, tight=False)


def learning_curves(history, key: str, datasets, methods, colors, path: Path) -> Path:
    """Per dataset: mean +- std over seeds of ``key`` per epoch, one line per method.

    ``history`` has columns dataset, method, step, value."""
    from matplotlib.ticker import MaxNLocator

    legend_rows = math.ceil(len(methods) / 6)
    fig, axes = _grid(len(datasets), top=0.45 + 0.22 * legend_rows)
    stats = history.groupby(["dataset", "method", "step"])["value"].agg(["mean", "std"])
    for ax, d in zip(axes, datasets):
        for m in methods:
            try:
                s = stats.loc[(d, m)]
            except KeyError:
                continue
            mean, std = s["mean"].to_numpy(), s["std"].fillna(0).to_numpy()
            ax.plot(s.index, mean, color=colors[m], lw=1.2, label=m)
            ax.fill_between(s.index, mean - std, mean + std, color=colors[m], alpha=0.18, lw=0)
        ax.set_title(str(d), fontsize=9, y=1.0)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.legend([_line(colors[m]) for m in methods], methods, loc="upper center",
               ncol=min(len(methods), 6), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.05 / fig.get_figheight()))
    return _save(fig, path, tight=False)


def _line(color):
    from matplotlib.lines import Line2D

    return Line2D([0], [0], color=color, lw=2)


def rank_heatmap(ranks, path: Path) -> Path:
    """Datasets x methods ranks (1 = best); missing cells grey with a dash."""
    import numpy as np

    d, k = ranks.shape
    # method names stand at 60 degrees under the grid: a sweep point's label
    # (focal[loss.gamma=2.0]) needs its height, which a fixed size left
    # out ("Tight layout not applied")
    names = max((len(str(m)) for m in ranks.columns), default=0)
    fig = _figure(max(5.0, 0.55 * k + 2.5), max(2.5, 0.32 * d + 1.2 + 0.06 * names),
                  layout="constrained")
    ax = fig.add_subplot()
    values = np.ma.masked_invalid(ranks.to_numpy(dtype=float))
    ax.set_facecolor("0.85")
    im = ax.imshow(values, cmap="viridis_r", aspect="auto", vmin=1, vmax=max(k, 2))
    ax.set_xticks(range(k))
    ax.set_xticklabels(ranks.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(d))
    ax.set_yticklabels(ranks.index, fontsize=8)
    if d * k <= 900:  # numbers stay legible only on moderate grids
        for i in range(d):
            for j in range(k):
                v = ranks.iat[i, j]
                txt = "–" if not np.isfinite(v) else f"{v:g}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="white" if np.isfinite(v) and v > (k + 1) / 2 else "black")
    cbar = fig.colorbar(im, ax=ax, fraction=0.04)
    cbar.set_label("rank (1 = best)", fontsize=8)
    ax.set_xlabel("method", fontsize=9)
    ax.set_ylabel("dataset", fontsize=9)
    return _save(fig, path)


def pareto_front(time_s, score, greater: bool) -> list[str]:
    """Methods not dominated in (lower time, better score), fastest first."""
    order = sorted(time_s.index, key=lambda m: (time_s[m], -score[m] if greater else score[m]))
    front, best = [], None
    for m in order:
        s = score[m] if greater else -score[m]
        if best is None or s > best:
            front.append(m)
            best = s
    return front


def pareto_scatter(time_s, score, greater: bool, ylabel: str, colors, path: Path,
                   xlabel: str = "training time per run, time/train_s (s)") -> Path:
    """Training time vs score per method; the Pareto front's methods ringed
    and joined by a dashed step line (a front of one method is its ring)."""
    from matplotlib.lines import Line2D

    fig = _figure(7, 4.8, layout="constrained")
    ax = fig.add_subplot()
    for m in score.index:
        ax.scatter(time_s[m], score[m], s=40, color=colors[m], zorder=3)
        ax.annotate(m, (time_s[m], score[m]), xytext=(4, 3), textcoords="offset points",
                    fontsize=7)
    front = pareto_front(time_s, score, greater)
    xs, ys = [time_s[m] for m in front], [score[m] for m in front]
    ax.scatter(xs, ys, s=130, facecolors="none", edgecolors="black", linewidths=1, zorder=2)
    if len(front) > 1:
        ax.step(xs, ys, where="post", color="black", lw=1, ls="--", zorder=2)
    if time_s.min() > 0 and time_s.max() / time_s.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel + (" (higher is better)" if greater else " (lower is better)"),
                  fontsize=9)
    ax.grid(alpha=0.3)
    # the legend shows what is drawn: the ring, and the line only when there is one
    handle = Line2D([], [], color="black", lw=1, ls="--" if len(front) > 1 else "none",
                    marker="o", markersize=9, markerfacecolor="none")
    ax.legend(handles=[handle], labels=[f"Pareto front ({len(front)} of {len(score)})"],
              fontsize=8, loc="best")  # the points carry their own labels
    return _save(fig, path)


def image_rows(panels: list[tuple[str, str]], path: Path) -> Path:
    """One row per ``(title, png file)``, each image at its own aspect ratio."""
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    images = [(title, mpimg.imread(file)) for title, file in panels]
    width = 8.0
    heights = [width * img.shape[0] / img.shape[1] for _, img in images]
    fig, axes = plt.subplots(len(images), 1, figsize=(width, sum(heights) + 0.4 * len(images)),
                             squeeze=False, gridspec_kw={"height_ratios": heights},
                             layout="constrained")
    for ax, (title, img) in zip(axes[:, 0], images):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
