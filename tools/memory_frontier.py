#!/usr/bin/env python3
"""How low can memory slack go at a given shortfall on a trace? Bounds for issue 3.

`shardex replay` measures causal policies. This script measures allocations that are allowed
to cheat in controlled ways, to show where the slack/shortfall frontier of a trace lies:

* `constant`: each workload gets one allocation for the whole trace, the q-quantile of its
  own scored samples (hindsight on the whole series, no time variation).
* `state`: the allocation depends on the workload's state at decision time (the quartile of
  the maximum of its last hour of samples, as `replay` would know it: samples older than the
  5-minute lead plus one sample), one level per workload and state, chosen on the first half
  of the trace and scored on the second half, with a single trade-off price across all
  workloads (a global Lagrange multiplier: shortfall is spent where it saves the most slack).
  This is more than any per-series forecaster can do: it sees the first half of every series
  before deciding, and it pools the shortfall budget across workloads.

Figures are the same as `replay`'s: slack % = sum(alloc - used)+ / sum(alloc), shortfall % =
samples with used > alloc, allocations rounded up to 16 MiB shards, the first hour of each
workload not scored.

Usage: python3 tools/memory_frontier.py ../shared/data/bitbrains-2013-08   (needs numpy)
"""

import csv
import gzip
import sys

import numpy as np

SHARD = 16 * 2**20
WARMUP = 12  # samples: the first hour is not scored
STALE = 2  # samples: a decision for t sees samples before t - lead, the newest is t - 2 steps


def load(folder):
    series = {}
    with gzip.open(f"{folder}/samples.csv.gz", "rt", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if row[3]:
                series.setdefault(row[0], []).append(float(row[3]))
    return [np.array(v) for v in series.values() if len(v) > WARMUP + 2 * STALE]


def shards(x):
    return np.ceil(x / SHARD) * SHARD


def constant(series, levels):
    total = sum(len(m) - WARMUP for m in series)
    for q in levels:
        alloc = slack = short = 0.0
        for m in series:
            used = m[WARMUP:]
            a = shards(np.quantile(used, q))
            alloc += a * len(used)
            slack += np.maximum(a - used, 0).sum()
            short += (used > a).sum()
        print(f"constant  q={q:<6} slack {100 * slack / alloc:5.1f} %  shortfall {100 * short / total:.3f} %")


def state(series, target):
    levels = np.array([0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.997, 0.998, 0.999, 1.0])
    scale = np.array([1.0, 1.1, 1.25, 1.5])
    cells = []
    scored = 0
    for m in series:
        # Maximum of the 12 newest samples a decision for each t can see.
        known = np.concatenate([np.zeros(11), m])
        hour_max = np.lib.stride_tricks.sliding_window_view(known, 12).max(axis=1)[: len(m)]
        feature = hour_max[WARMUP - STALE : len(m) - STALE]
        used = m[WARMUP:]
        half = len(used) // 2
        edges = np.quantile(feature[:half], [0.25, 0.5, 0.75])
        key = np.searchsorted(edges, feature)
        scored += len(used) - half
        for k in np.unique(key):
            fit, test = used[:half][key[:half] == k], used[half:][key[half:] == k]
            if len(test) == 0:
                continue
            if len(fit) == 0:
                fit = used[:half]
            cand = shards(np.outer(np.quantile(fit, levels), scale).ravel())
            fit_slack = np.maximum(cand[:, None] - fit[None, :], 0).sum(1)
            fit_short = (fit[None, :] > cand[:, None]).sum(1)
            slack = np.maximum(cand[:, None] - test[None, :], 0).sum(1)
            short = (test[None, :] > cand[:, None]).sum(1)
            cells.append((fit_slack, fit_short, slack, cand * len(test), short))
    best = None
    for price in np.exp(np.linspace(np.log(1e8), np.log(1e14), 61)):
        alloc = slack = short = 0.0
        for fs, fh, s, a, h in cells:
            j = np.argmin(fs + price * fh)
            slack, alloc, short = slack + s[j], alloc + a[j], short + h[j]
        pct = 100 * short / scored
        print(f"state     price={price:9.2e} slack {100 * slack / alloc:5.1f} %  shortfall {pct:.3f} %")
        if pct <= target and best is None:
            best = (100 * slack / alloc, pct)
    if best:
        print(f"state: lowest slack at shortfall <= {target} %: {best[0]:.1f} % ({best[1]:.3f} %)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    data = load(sys.argv[1])
    constant(data, [0.99, 0.995, 0.997, 0.998, 0.999])
    state(data, 0.27)
