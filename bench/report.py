"""The run's outputs: results.json, a Markdown table of figures, ratios and targets, a chart."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .results import OK, ScenarioResult


def write_json(
    path: Path, machine: dict[str, Any], mode: str, results: Sequence[ScenarioResult]
) -> None:
    document = {
        "mode": mode,
        "machine": machine,
        "scenarios": {r.key: r.as_dict() for r in results},
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def _num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(machine: dict[str, Any], mode: str, results: Sequence[ScenarioResult]) -> str:
    lines = [
        f"# Benchmark results ({mode} mode)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, "
        f"{machine['os']}, Python {machine['python']} "
        f"(1-min load average at start: {machine['load_average_1m_at_start']}).",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in machine.get("packages", {}).items()) + ".",
        "Every ratio compares two figures measured in the same run on this machine.",
        "",
    ]
    lines += _targets_section(results)
    for result in results:
        lines += ["", f"## {result.title}", ""]
        if result.status != OK:
            lines.append(f"**{result.status}**: {result.reason}")
            if not result.rows:
                continue
            lines += ["", "Figures measured before it stopped:", ""]
        lines += [
            "| Figure | Value | Compared with | Its value | Ratio |",
            "|---|---:|---|---:|---:|",
        ]
        for row in result.rows:
            ref = _num(row.reference_value) if row.reference else ""
            lines.append(
                f"| {row.figure} | {_num(row.value)} {row.unit} | {row.reference} | {ref} | "
                f"{_ratio(row.ratio) if row.reference else ''} |"
            )
        lines += [f"- {note}" for note in result.notes if "Traceback" not in note]
    return "\n".join(lines) + "\n"


def _targets_section(results: Sequence[ScenarioResult]) -> list[str]:
    lines = [
        "## Targets",
        "",
        "| Scenario | Target | Measured | Limit | Met |",
        "|---|---|---:|---:|---|",
    ]
    for result in results:
        if result.status != OK:
            reason = result.reason[:160].replace("|", "/").replace("\n", " ")
            lines.append(f"| {result.key} | (scenario) | {result.status}: {reason} | | no |")
        for target in result.targets:
            verdict = "**met**" if target.met else "**MISSED**"
            lines.append(
                f"| {result.key} | {target.text} | {_num(target.value)} | {_num(target.limit)} "
                f"| {verdict} |"
            )
    met = sum(t.met for r in results for t in r.targets)
    total = sum(len(r.targets) for r in results)
    missed = [t.text for r in results for t in r.targets if not t.met]
    lines += ["", f"{met} of {total} measured targets met."]
    if missed:
        lines.append("Missed: " + "; ".join(missed) + ".")
    not_run = [r.title for r in results if r.status != OK]
    if not_run:
        lines.append("Not run or incomplete: " + "; ".join(not_run) + ".")
    return lines


def chart(path: Path, results: Sequence[ScenarioResult]) -> None:
    """One panel per scenario with samples: the latency distribution of each series (CDF)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [r for r in results if any(r.samples.values())]
    count = max(1, len(panels))
    cols = 2 if count > 1 else 1
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    if not panels:
        axes.flat[0].text(0.5, 0.5, "no latency samples in this run", ha="center")
    for ax, result in zip(axes.flat, panels, strict=False):
        for label, samples in result.samples.items():
            if not samples:
                continue
            # A log axis cannot show zero; sub-10-microsecond figures are clock resolution anyway.
            ordered = sorted(max(sample, 0.01) for sample in samples)
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            ax.step(ordered, fractions, where="post", label=f"{label} (n={len(ordered)})")
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(result.title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
