"""Markdown tables and PNG plots from tidy result rows (the paper's layouts)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from benchlib.results import Row

Summary = dict[tuple[str, str, float], tuple[float, float, int]]


def summarise(rows: Iterable[Row], metric: str) -> Summary:
    """Mean, standard deviation and count of ``metric`` over seeds per (model, attack, eps).

    The standard deviation is the sample one (``n - 1``), 0 for a single seed. Rows without
    ``metric`` are skipped; a stored ``null`` (a NaN metric: JSON has none) counts as NaN,
    and ``±1e308`` (how infinities are stored) as ``±inf``, so that a diverged seed shows in
    its cell instead of silently dropping out of the mean.
    """
    groups: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    for row in rows:
        if metric not in row:
            continue
        value = row[metric]
        value = math.nan if value is None else float(value)
        if abs(value) >= 1e308:
            value = math.copysign(math.inf, value)
        groups[(row["model"], row["attack"], round(float(row["eps"]), 6))].append(value)
    out: Summary = {}
    for key, values in groups.items():
        if not all(math.isfinite(v) for v in values):  # statistics' exact sums refuse them
            mean = sum(values) / len(values)
            out[key] = (mean, math.nan if len(values) > 1 else 0.0, len(values))
            continue
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out[key] = (statistics.fmean(values), std, len(values))
    return out


def _cell(summary: Summary, key: tuple[str, str, float], digits: int) -> str:
    if key not in summary:
        return "—"
    mean, std, _ = summary[key]
    return f"{mean:.{digits}f} ({std:.{digits}f})"


def _eps_key(attack: str, eps: float, clean: str) -> float:
    return 0.0 if attack == clean else round(float(eps), 6)


def table_at_strength(
    rows: Sequence[Row],
    *,
    metric: str,
    eps: float,
    models: Sequence[str],
    attacks: Sequence[str],
    clean: str = "Clean",
    digits: int = 2,
    best: str | None = None,
) -> str:
    """A paper-style table (Tables 1–4): one row per model, one column per attack.

    Cells are ``mean (std)`` over seeds at strength ``eps`` (the clean column at ``eps = 0``).
    ``best`` (``"max"`` or ``"min"``) puts the best mean of each column in bold.
    """
    summary = summarise(rows, metric)
    lines = ["| Model | " + " | ".join(attacks) + " |", "|---" * (len(attacks) + 1) + "|"]
    bests: dict[str, float] = {}
    if best is not None:
        for attack in attacks:
            means = [
                summary[(m, attack, _eps_key(attack, eps, clean))][0]
                for m in models
                if (m, attack, _eps_key(attack, eps, clean)) in summary
            ]
            means = [v for v in means if not math.isnan(v)]  # a NaN cell is never the best
            if means:
                bests[attack] = max(means) if best == "max" else min(means)
    for model in models:
        cells = []
        for attack in attacks:
            key = (model, attack, _eps_key(attack, eps, clean))
            cell = _cell(summary, key, digits)
            if (
                key in summary
                and attack in bests
                and round(summary[key][0], digits) == round(bests[attack], digits)
            ):
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_column_groups(
    groups: Sequence[tuple[str, Sequence[Row], str]],
    *,
    eps: float,
    models: Sequence[str],
    attacks: Sequence[str],
    clean: str = "Clean",
    digits: int = 2,
    best: str | None = None,
) -> str:
    """Paper-style tables with column groups side by side (Tables 3, 4 and 8).

    Args:
        groups: ``(title, rows, metric)`` per column group, e.g. ``("Wine", wine_rows,
            "rmse")`` and ``("Energy", energy_rows, "rmse")`` (Table 3), or one dataset's
            rows twice with ``"rmse"`` and ``"nll"`` (Table 8).
        eps: The attack strength of the attacked columns (the clean column at ``eps = 0``).
        models: Row order.
        attacks: Columns of each group.
        best: ``"max"`` or ``"min"``: bold the best mean of each column.

    Returns:
        A markdown table: ``| Model | <title>: <attack> | ... |``, cells ``mean (std)``.
    """
    columns = []
    for title, rows, metric in groups:
        group = table_at_strength(
            rows,
            metric=metric,
            eps=eps,
            models=models,
            attacks=attacks,
            clean=clean,
            digits=digits,
            best=best,
        ).splitlines()
        cells = [line.strip("|").split("|")[1:] for line in group[2:]]
        columns.append(([f"{title}: {a}" for a in attacks], cells))
    head = ["Model"] + [name for names, _ in columns for name in names]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for i, model in enumerate(models):
        cells = [c.strip() for _, group_cells in columns for c in group_cells[i]]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_over_strengths(
    rows: Sequence[Row],
    *,
    model: str,
    metrics: Sequence[tuple[str, str]],
    attacks: Sequence[str],
    strengths: Sequence[float],
    clean: str = "Clean",
    digits: int = 2,
) -> str:
    """A Table-7-style table for one model: rows are strengths, columns attacks per metric.

    Args:
        metrics: ``(metric key, column-group title)`` pairs, e.g. ``("accuracy", "Accuracy")``.
    """
    summaries = {metric: summarise(rows, metric) for metric, _ in metrics}
    head = ["Strength"] + [f"{title}: {a}" for _, title in metrics for a in attacks]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    clean_cells = []
    for metric, _ in metrics:
        key = (model, clean, 0.0)
        clean_cells += [_cell(summaries[metric], key, digits)] + [""] * (len(attacks) - 1)
    lines.append("| Clean | " + " | ".join(clean_cells) + " |")
    for eps in strengths:
        cells = [
            _cell(summaries[metric], (model, attack, round(float(eps), 6)), digits)
            for metric, _ in metrics
            for attack in attacks
        ]
        lines.append(f"| {eps:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _draw_metric_vs_strength(
    ax: Any,
    summary: Summary,
    *,
    attack: str,
    models: Sequence[str],
    strengths: Sequence[float],
    clean: str,
) -> None:
    import matplotlib

    # One colour per defence: an "X (adaptive)" row is model X under another attack, drawn in
    # X's colour with a dashed line, so no two defences share a colour (10 base models at most
    # in tab10).
    bases = list(dict.fromkeys(m.split(" (")[0] for m in models))
    palette = matplotlib.colormaps["tab10" if len(bases) <= 10 else "tab20"]
    for model in models:
        base = model.split(" (")[0]
        style = {
            "color": palette(bases.index(base) % palette.N),
            "linestyle": "--" if base != model else "-",
        }
        xs, ys, es = [], [], []
        if (model, clean, 0.0) in summary:
            mean, std, _ = summary[(model, clean, 0.0)]
            xs.append(0.0)
            ys.append(mean)
            es.append(std)
        for eps in strengths:
            key = (model, attack, round(float(eps), 6))
            if key in summary:
                mean, std, _ = summary[key]
                xs.append(float(eps))
                ys.append(mean)
                es.append(std)
        if xs:
            ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, label=model, **style)


def plot_metric_vs_strength(
    rows: Sequence[Row],
    *,
    metric: str,
    attack: str,
    models: Sequence[str],
    strengths: Sequence[float],
    path: Path,
    title: str,
    ylabel: str,
    clean: str = "Clean",
    log_y: bool = False,
) -> None:
    """Plot ``metric`` (mean ± std over seeds) against attack strength, one line per model.

    The clean value is drawn at strength 0 (Figures 3, 4, 6 and 7 of the paper).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(rows, metric)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    _draw_metric_vs_strength(
        ax, summary, attack=attack, models=models, strengths=strengths, clean=clean
    )
    ax.set_xlabel("attack strength ε (L2)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_metric_panels(
    rows: Sequence[Row],
    *,
    metric: str,
    attacks: Sequence[str],
    models: Sequence[str],
    strengths: Sequence[float],
    path: Path,
    title: str,
    ylabel: str,
    clean: str = "Clean",
    y_scale: str = "linear",
) -> None:
    """One panel per attack of ``metric`` (mean ± std over seeds) against strength.

    Like :func:`plot_metric_vs_strength`, with the attacks side by side in one figure.

    Args:
        y_scale: A matplotlib scale: ``"linear"``, ``"log"`` or ``"symlog"`` (for metrics that
            span orders of magnitude and can be negative, e.g. a regression NLL).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(rows, metric)
    n = max(1, len(attacks))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), sharey=True, squeeze=False)
    for ax, attack in zip(axes[0], attacks, strict=False):
        _draw_metric_vs_strength(
            ax, summary, attack=attack, models=models, strengths=strengths, clean=clean
        )
        ax.set_title(attack)
        ax.set_xlabel("attack strength ε (L2)")
        ax.set_yscale(y_scale)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    legend: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(list(legend.values()), list(legend), fontsize=8, loc="center right")
    fig.suptitle(title)
    fig.tight_layout(rect=(0.0, 0.0, 0.88, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_predictive_distributions(
    images: Sequence[object],
    labels: Sequence[int],
    probabilities: dict[str, Sequence[Sequence[float]]],
    *,
    path: Path,
    title: str,
) -> None:
    """Attacked images next to each model's predictive distribution (Figures 8 and 9).

    Args:
        images: ``K`` attacked images, each an array-like ``(H, W)`` in ``[0, 1]``.
        labels: Their true labels.
        probabilities: ``model -> K`` lists of class probabilities.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(probabilities)
    k = len(images)
    fig, axes = plt.subplots(k, 1 + len(models), figsize=(2.2 * (1 + len(models)), 1.9 * k))
    if k == 1:
        axes = [axes]
    for i in range(k):
        axes[i][0].imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0)
        axes[i][0].set_xticks([])
        axes[i][0].set_yticks([])
        axes[i][0].set_ylabel(f"label {labels[i]}")
        for j, model in enumerate(models):
            probs = list(probabilities[model][i])
            ax = axes[i][j + 1]
            colors = ["tab:green" if c == labels[i] else "tab:gray" for c in range(len(probs))]
            ax.bar(range(len(probs)), probs, color=colors)
            ax.set_ylim(0, 1)
            ax.set_xticks(range(len(probs)))
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.set_title(model)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grid_table(
    rows: Sequence[Row],
    *,
    metric: str,
    attack: str,
    models: Sequence[str],
    strengths: Sequence[float],
    clean: str = "Clean",
    digits: int = 2,
    std: bool = False,
) -> str:
    """One attack over every strength: a row per model, the clean column first.

    Cells are the mean over seeds (``std=True``: ``mean (std)``); ``—`` where no row exists.
    """
    summary = summarise(rows, metric)
    head = f"| Model | {clean} | " + " | ".join(f"{e:g}" for e in strengths) + " |"
    lines = [head, "|---" * (len(strengths) + 2) + "|"]
    for m in models:
        cells = []
        for attack_name, eps in [(clean, 0.0)] + [(attack, e) for e in strengths]:
            k = (m, attack_name, round(float(eps), 6))
            if k not in summary:
                cells.append("—")
            elif std:
                cells.append(_cell(summary, k, digits))
            else:
                cells.append(f"{summary[k][0]:.{digits}f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
