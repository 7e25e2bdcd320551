"""`netmargin backtest`'s calibration chart: realised 2-day losses against the MM of each
reference book, per day (PNG through matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from offchain.risk.backtest import REFERENCE_BOOKS, align, backtest_book
from offchain.risk.params import Params


def calibration_chart(params: Params, series: dict, path: Path, horizon: int = 2,
                      rate: float = 0.05) -> str:
    """One panel per reference book (first asset, or the pair): the book's realised loss over
    `horizon` days and its MM, both in % of gross notional; misses are marked. Returns the
    path written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assets = tuple(series)
    panels = []
    for book, (n_assets, legs) in REFERENCE_BOOKS.items():
        for names in ([(a,) for a in assets] if n_assets == 1 else [assets[:2]]):
            if len(names) < n_assets:
                continue
            dates, closes = align(series, names)
            row = backtest_book(params, names, dates, closes, legs, rate=rate, horizon=horizon,
                                series=True)
            panels.append((f"{book} {'/'.join(names)}", row))
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 2.6 * rows), squeeze=False)
    for ax, (title, row) in zip(axes.ravel(), panels, strict=False):
        s = row["series"]
        d = s["date"].astype("datetime64[D]").astype(object)
        ax.plot(d, 100 * s["loss_pct"], lw=0.5, color="0.4", label=f"{horizon}-day loss")
        ax.plot(d, 100 * s["mm_pct"], lw=0.9, color="tab:blue", label="MM")
        miss = s["loss_pct"] > s["mm_pct"]
        ax.scatter(np.asarray(d, dtype=object)[miss], 100 * s["loss_pct"][miss], s=9,
                   color="tab:red", zorder=3, label=f"miss ({miss.sum()})")
        ax.set_title(f"{title}: MM coverage {row['coverage']:.2%}", fontsize=8)
        ax.set_ylabel("% of gross notional", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{params.label} {params.hash[:18]}...: realised {horizon}-day loss vs MM",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
