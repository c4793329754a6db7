"""Evaluation reporting: bootstrap intervals, a markdown table and a PNG chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from candidate_gen.metrics import hit_rate, ndcg
from common.stats import PAIRED_RESAMPLES, bootstrap_ci

EVAL_KS = (3, 5)


def per_user_metrics(ranks: Sequence[int | None], ks: Sequence[int] = EVAL_KS) -> dict[str, np.ndarray]:
    """Each user's HR@k / NDCG@k as arrays, so means and bootstrap intervals share one source."""
    out = {}
    for k in ks:
        out[f"HR@{k}"] = np.array([hit_rate(r, k) for r in ranks])
        out[f"NDCG@{k}"] = np.array([ndcg(r, k) for r in ranks])
    return out


def summarize_rows(ranks_by_row: Mapping[str, Sequence[int | None]], seed: int = 0) -> dict[str, dict[str, float]]:
    """{row: {"HR@3": mean, "HR@3_ci": [lo, hi], ...}} for every row (backbone, modes, hybrid)."""
    rows = {}
    for row, ranks in ranks_by_row.items():
        stats: dict = {}
        for name, values in per_user_metrics(ranks).items():
            stats[name] = float(values.mean()) if len(values) else float("nan")
            stats[f"{name}_ci"] = list(bootstrap_ci(values, seed=seed))
        rows[row] = stats
    return rows



def paired_differences(ranks_by_row: Mapping[str, Sequence[int | None]], baseline: str = "backbone", seed: int = 0,
                       n_boot: int = PAIRED_RESAMPLES) -> dict[str, dict[str, dict]]:
    """{row: {metric: {"diff", "ci", "relative", "significant"}}} for every row but ``baseline``.

    ``diff`` is the mean over users of (row - baseline) on the SAME users; its interval
    resamples those per-user differences (seeded, so every row sees the same resamples).
    ``relative`` is diff / baseline mean (None when the baseline mean is 0); ``significant``
    is whether the 95% interval excludes 0.
    """
    base = per_user_metrics(ranks_by_row[baseline])
    out: dict[str, dict[str, dict]] = {}
    for row, ranks in ranks_by_row.items():
        if row == baseline:
            continue
        stats = {}
        for name, values in per_user_metrics(ranks).items():
            d = values - base[name]
            mean = float(d.mean()) if len(d) else float("nan")
            lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed)
            bmean = float(base[name].mean()) if len(d) else 0.0
            stats[name] = {"diff": mean, "ci": [lo, hi], "relative": mean / bmean if bmean > 0 else None,
                           "significant": bool(lo > 0 or hi < 0)}
        out[row] = stats
    return out


METRIC_COLUMNS = [f"{m}@{k}" for k in EVAL_KS for m in ("HR", "NDCG")]


def _markdown(title: str, first: str, rows: list[tuple[str, list[str]]]) -> str:
    lines = [f"**{title}**", ""] if title else []
    lines.append(f"| {first} | " + " | ".join(METRIC_COLUMNS) + " |")
    lines.append("|---|" + "---|" * len(METRIC_COLUMNS))
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines) + "\n"


def markdown_paired_table(paired: Mapping[str, Mapping[str, dict]], title: str = "", baseline: str = "backbone") -> str:
    """Rows 'X - backbone', cells 'diff [lo, hi]' and the relative change."""
    def cell(st: dict) -> str:
        rel = f" ({st['relative']:+.1%})" if st["relative"] is not None else ""
        return f"{st['diff']:+.4f} [{st['ci'][0]:+.4f}, {st['ci'][1]:+.4f}]{rel}"

    return _markdown(title, "paired difference",
                     [(f"{row} - {baseline}", [cell(stats[m]) for m in METRIC_COLUMNS]) for row, stats in paired.items()])


def markdown_table(rows: Mapping[str, Mapping[str, float]], title: str = "") -> str:
    def cell(stats: Mapping[str, float], m: str) -> str:
        lo, hi = stats.get(f"{m}_ci", (float("nan"), float("nan")))
        return f"{stats[m]:.4f} [{lo:.4f}, {hi:.4f}]"

    return _markdown(title, "row", [(row, [cell(stats, m) for m in METRIC_COLUMNS]) for row, stats in rows.items()])


def bar_chart(rows: Mapping[str, Mapping[str, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    metrics = [f"{m}@{k}" for k in EVAL_KS for m in ("HR", "NDCG")]
    names = list(rows)
    x = np.arange(len(metrics))
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(9, 4))
    for n, row in enumerate(names):
        means = [rows[row][m] for m in metrics]
        err = np.array([[rows[row][m] - rows[row][f"{m}_ci"][0], rows[row][f"{m}_ci"][1] - rows[row][m]] for m in metrics]).T
        ax.bar(x + n * width, means, width, yerr=err, capsize=2, label=row)
    ax.set_xticks(x + width * (len(names) - 1) / 2, metrics)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
