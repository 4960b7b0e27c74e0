"""The bench's PNG: scan cost against slots, grace-period latency and reclaim throughput
against reader threads, per profile (port, hardware limit, liburcu)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MISSING = ("matplotlib is not installed: pip install 'qsbr-conformance[bench]' "
           "(or pip install matplotlib)")


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write(native: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    scan_ax, gp_ax, reclaim_ax = axes
    styles = {"3.13": "-", "3.14": "--"}
    for profile, data in native.items():
        style = styles.get(profile, ":")
        scans = [op for op in data["operations"] if op["slots"]]
        slots = [op["slots"] for op in scans]
        for variant, label in (("port", "port"), ("limit", "hardware limit")):
            values = [op[variant]["best"] for op in scans if op[variant]]
            if len(values) == len(slots):
                scan_ax.plot(slots, values, style, marker="o", label=f"{label} {profile}")
        rows = data["threads"]["rows"]
        readers = [row["readers"] for row in rows]
        for variant, label in (("port", "port"), ("urcu", "liburcu-qsbr, in the run of")):
            if not rows or not all(row.get(variant) for row in rows):
                continue
            gp_ax.plot(readers, [row[variant]["gp_latency_ns"]["median"] for row in rows],
                       style, marker="o", label=f"{label} {profile}")
            reclaim_ax.plot(readers, [row[variant]["reclaim_per_s"]["median"] for row in rows],
                            style, marker="o", label=f"{label} {profile}")
    cpus = next(iter(native.values()))["cpus"] if native else "?"
    readers = sorted({row["readers"] for data in native.values()
                      for row in data["threads"]["rows"]})
    for ax in (gp_ax, reclaim_ax):
        ax.set_xticks(readers)
    scan_ax.set(xscale="log", yscale="log", xlabel="slots in the array",
                ylabel="ns per poll (best)", title="poll with a full scan")
    gp_ax.set(yscale="log", xlabel=f"reader threads ({cpus} CPUs)",
              ylabel="ns (median of the rounds' medians)", title="grace-period latency")
    reclaim_ax.set(yscale="log", xlabel=f"reader threads ({cpus} CPUs)",
                   ylabel="objects/s (median)", title="reclaim throughput")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("qsbr-conformance bench: the port beside the hardware limit and liburcu-qsbr")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
