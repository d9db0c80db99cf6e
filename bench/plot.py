"""Plot bench_mlp.py results: grouped bars of samples/s, one group per
configuration (threads, net, batch or "predict"), one bar per peer.

    python bench/plot.py bench/results_peers.json [more.json ...] --out bench/results.png

Log scale by default, because per-sample FANN-like peers and wide-net
inference differ by orders of magnitude from batched training.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402


def load(paths):
    records, peaks = [], {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        records += [r for r in doc["records"] if "samples_per_s" in r]
        peaks.update(doc.get("peak", {}))
    return records, peaks


def config_label(r):
    what = f"batch {r['batch']}" if r["mode"] == "train" else "predict"
    return f"{r['net']}\n{what}\n{r['threads']} thr"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json", nargs="+")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results.png"))
    ap.add_argument("--linear", action="store_true", help="linear y axis")
    args = ap.parse_args()

    records, peaks = load(args.json)
    if not records:
        raise SystemExit("no successful records to plot")
    # keep first-seen order: it follows the command line
    configs = list(dict.fromkeys(config_label(r) for r in records))
    peers = list(dict.fromkeys(r["peer"] for r in records))
    value = {(config_label(r), r["peer"]): r for r in records}

    width = 0.8 / len(peers)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(configs)), 5.5))
    for i, peer in enumerate(peers):
        xs, ys, notes = [], [], []
        for j, c in enumerate(configs):
            r = value.get((c, peer))
            if r is not None:
                xs.append(j + (i - (len(peers) - 1) / 2) * width)
                ys.append(r["samples_per_s"])
                notes.append(f"{r['gflops']:.0f}")
        bars = ax.bar(xs, ys, width, label=peer)
        # GFLOP/s on top of each bar: the number comparable with the peak
        for b, note in zip(bars, notes):
            ax.annotate(note, (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=7, rotation=90,
                        xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(configs)))
    ax.set_xticklabels(configs, fontsize=8)
    if not args.linear:
        ax.set_yscale("log")
    ax.set_ylabel("samples / s (higher is better)")
    peak_txt = ", ".join(f"{t} thr {p.get('gflops', '?')}" for t, p in peaks.items())
    n = records[0]["n_samples"]
    ax.set_title(f"MLP one SGD epoch / predict on {n:,} x 784 float32 "
                 f"(bar labels: GFLOP/s; FMA peak {peak_txt})", fontsize=9)
    ax.legend(fontsize=8, ncol=min(len(peers), 6))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
