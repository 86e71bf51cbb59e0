"""Tests of the side-by-side tables and the panel plots of ``bench/benchlib/report.py``."""

from __future__ import annotations

from benchlib.report import plot_metric_panels, table_column_groups


def rows(dataset: str, offset: float) -> list[dict]:
    out = []
    for seed, noise in ((0, -0.1), (1, 0.1)):
        for model, base in (("BL", 1.0), ("MIX", 0.5)):
            out.append({"model": model, "attack": "Clean", "eps": 0.0, "seed": seed, "rmse": base})
            value = base + offset + noise
            out.append({"model": model, "attack": "PGD", "eps": 1.0, "seed": seed, "rmse": value})
            out.append(
                {"model": model, "attack": "PGD", "eps": 2.0, "seed": seed, "rmse": 9 + noise}
            )
    return out


def test_column_groups_side_by_side_with_mean_std_and_bold_minimum():
    table = table_column_groups(
        [("Wine", rows("wine", 1.0), "rmse"), ("Energy", rows("energy", 2.0), "rmse")],
        eps=1.0,
        models=["BL", "MIX", "AT"],
        attacks=["Clean", "PGD"],
        best="min",
    )
    lines = table.splitlines()
    assert lines[0] == "| Model | Wine: Clean | Wine: PGD | Energy: Clean | Energy: PGD |"
    assert lines[1] == "|---|---|---|---|---|"
    # BL PGD on Wine: mean of 1.9 and 2.1 = 2.00, sample std 0.14; MIX is best everywhere.
    assert lines[2] == "| BL | 1.00 (0.00) | 2.00 (0.14) | 1.00 (0.00) | 3.00 (0.14) |"
    assert lines[3] == (
        "| MIX | **0.50 (0.00)** | **1.50 (0.14)** | **0.50 (0.00)** | **2.50 (0.14)** |"
    )
    assert lines[4] == "| AT | — | — | — | — |"


def test_metric_panels_write_a_png(tmp_path):
    path = tmp_path / "sub" / "panels.png"
    plot_metric_panels(
        rows("wine", 1.0),
        metric="rmse",
        attacks=["PGD", "ENT"],
        models=["BL", "MIX"],
        strengths=(1.0, 2.0),
        path=path,
        title="t",
        ylabel="RMSE",
        y_scale="symlog",
    )
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_adaptive_rows_take_their_defences_colour_dashed_and_no_colour_is_shared():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchlib.report import _draw_metric_vs_strength, summarise

    models = [f"M{i}" for i in range(9)] + ["onPure", "onPure (adaptive)", "offPure (adaptive)"]
    data = [
        {"model": m, "attack": "PGD", "eps": 1.0, "seed": s, "rmse": float(i)}
        for i, m in enumerate(models)
        for s in (0, 1)
    ]
    fig, ax = plt.subplots()
    _draw_metric_vs_strength(
        ax, summarise(data, "rmse"), attack="PGD", models=models, strengths=[1.0], clean="Clean"
    )
    lines = {c.get_label(): c.lines[0] for c in ax.containers}
    plt.close(fig)
    colour = {m: matplotlib.colors.to_hex(lines[m].get_color()) for m in models}
    assert colour["onPure (adaptive)"] == colour["onPure"]
    assert lines["onPure (adaptive)"].get_linestyle() == "--"
    assert lines["onPure"].get_linestyle() == "-"
    bases = [m for m in models if "(" not in m] + ["offPure (adaptive)"]
    assert len({colour[m] for m in bases}) == len(bases)
