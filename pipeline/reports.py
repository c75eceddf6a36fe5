"""An evaluation report on disk: Markdown for people, JSON for tools, PNG plots for both."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from pipeline.evaluate import Report


def slug(name: str) -> str:
    """A file-name-safe version of a dataset or collection name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "report"


def _f(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def markdown(report: Report, plots: list[Path]) -> str:
    """The report as a Markdown page."""
    r = report
    lines = [
        f"# Quality report: {r.dataset}",
        "",
        f"- embedder `{r.embedder}`, captioner `{r.captioner}`",
        f"- {r.rows} images; {r.queries} held out as queries ({r.fraction:.0%} by hash of "
        f"{'`' + r.group + '`' if r.group else 'image id'}), searched against the other "
        f"{r.corpus}; k = {r.k}",
        f"- label values ignored: {', '.join(r.ignore) or 'none'}",
        "",
        "## Retrieval: does the neighbour share the query's label?",
        "",
        "| label | queries | P@1 | P@" + str(r.k) + " |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {p.label} | {p.queries} | {_f(p.at1)} | {_f(p.atk)} |" for p in r.precision]
    if not r.precision:
        lines.append("| *(no label column found)* | | | |")
    for p in r.precision:
        lines += ["", f"<details><summary>{p.label} by value</summary>", "",
                  "| value | queries | P@1 | P@k |", "|---|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {v} | {n} | {_f(a)} | {_f(b)} |" for v, (n, a, b) in p.by_value.items()]
        lines += ["", "</details>"]
    lines += [
        "",
        "## Captions against the held-out caption",
        "",
        "After ImageCLEFmedical normalisation (lowercase, numbers to `number`, punctuation "
        "removed). BLEU is corpus BLEU (sacrebleu), ROUGE the mean F1 per caption (rouge-score).",
        "",
        "| source | n | BLEU-1 | BLEU-4 | ROUGE-1 | ROUGE-L |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c.source} | {c.n} | {_f(c.bleu1)} | {_f(c.bleu4)} | {_f(c.rouge1)} | {_f(c.rougeL)} |"
        for c in r.captions
    ]
    if r.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    if r.examples:
        lines += ["", "## First held-out examples", ""]
        for ex in r.examples:
            lines += [f"- **{k}**: {v}" for k, v in ex.items()] + [""]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    timing = ", ".join(f"{k} {v} s" for k, v in r.seconds.items())
    lines += ["", f"Timings: {timing}.", ""]
    return "\n".join(lines)


def plot_precision(report: Report, path: Path) -> Path | None:
    """Bars of P@1 and P@k per value of every label."""
    if not report.precision:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    n = len(report.precision)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.6 + 0.25 * max(
        len(p.by_value) for p in report.precision) * n), squeeze=False)  # fmt: skip
    for ax, p in zip(axes[:, 0], report.precision, strict=True):
        names = ["(all)", *p.by_value]
        at1 = [p.at1] + [v[1] for v in p.by_value.values()]
        atk = [p.atk] + [v[2] for v in p.by_value.values()]
        ys = range(len(names))
        ax.barh([y - 0.2 for y in ys], at1, height=0.4, label="P@1")
        ax.barh([y + 0.2 for y in ys], atk, height=0.4, label=f"P@{p.k}")
        ax.set_yticks(list(ys), [f"{nm} ({p.by_value[nm][0] if nm in p.by_value else p.queries})"
                                 for nm in names])  # fmt: skip
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(f"retrieval precision by {p.label}")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_captions(report: Report, path: Path) -> Path | None:
    """Grouped bars of BLEU-1, BLEU-4, ROUGE-1 and ROUGE-L per caption source."""
    if not report.captions:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("BLEU-1", "bleu1"), ("BLEU-4", "bleu4"), ("ROUGE-1", "rouge1"),
               ("ROUGE-L", "rougeL")]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(report.captions)
    for j, c in enumerate(report.captions):
        xs = [i + (j - (len(report.captions) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(xs, [getattr(c, m) for _, m in metrics], width=width, label=f"{c.source} ({c.n})")
    ax.set_xticks(range(len(metrics)), [name for name, _ in metrics])
    ax.set_ylabel("score (0-1)")
    ax.set_title(f"caption scores by source: {report.dataset}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(report: Report, out_dir: Path) -> list[Path]:
    """Write <name>.md, <name>.json and the plots; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = slug(report.dataset)
    plots = [
        p
        for p in (
            plot_precision(report, out_dir / f"{name}-precision.png"),
            plot_captions(report, out_dir / f"{name}-captions.png"),
        )
        if p is not None
    ]
    md = out_dir / f"{name}.md"
    md.write_text(markdown(report, plots), encoding="utf-8")
    js = out_dir / f"{name}.json"
    js.write_text(json.dumps(report.to_json(), indent=2, default=str), encoding="utf-8")
    return [md, js, *plots]
