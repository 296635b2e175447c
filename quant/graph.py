"""Which layers to keep in FP32 when INT8 costs too much accuracy: the two ends of the graph.

- The output end: an anomaly map is a difference of features, squared and averaged (a
  distance): quantization noise in those last layers adds straight to the score (shifting it
  against thresholds set in FP32), and their calibration ranges, taken on normal images, clip
  the large values that anomalies produce.
- The input end: the stem sees raw pixels; per-tensor 8-bit activations there flatten the
  faint contrast of subtle defects before any feature is computed (HetNet-lite on
  magnetic_tile, ONNX Runtime: 1.4 pixel-AUROC points lost with an INT8 stem, none without).

So repairs keep the layers within a growing number of steps of the input or of an output in
FP32; they hold few of the model's FLOPs, so INT8 keeps most of its speed."""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping

HEAD_SHARES = (0.1, 0.2, 0.4)  # of the graph's depth, per repair attempt


def output_distances(producers: Mapping[str, Iterable[str]], outputs: Iterable[str]) -> dict[str, int]:
    """Fewest edges from each node to an output node; `producers[n]` are the nodes feeding n."""
    dist = {o: 0 for o in outputs}
    queue = deque(dist)
    while queue:
        node = queue.popleft()
        for p in producers.get(node, ()):
            if p not in dist:
                dist[p] = dist[node] + 1
                queue.append(p)
    return dist


def input_distances(producers: Mapping[str, Iterable[str]], sources: Iterable[str]) -> dict[str, int]:
    """Fewest edges from the nodes that read the graph input (`sources`, distance 0) to each node."""
    consumers: dict[str, list[str]] = {}
    for node, feeding in producers.items():
        for p in feeding:
            consumers.setdefault(p, []).append(node)
    return output_distances(consumers, sources)


def head_levels(dist: Mapping[str, int], shares: Iterable[float] = HEAD_SHARES) -> list[int]:
    """Distinct distances to try, as shares of the deepest node's distance (at least 1)."""
    depth = max(dist.values(), default=0)
    return sorted({max(1, math.ceil(s * depth)) for s in shares})


def repair_levels(dist_out: Mapping[str, int], dist_in: Mapping[str, int]) -> list[int]:
    """head_levels whose FP32 ends leave at least one node to quantize: a repair that keeps every
    node in FP32 is an FP32 model called INT8 (a small graph, e.g. a bank search, gets there)."""
    nodes = set(dist_out) | set(dist_in)
    return [lv for lv in head_levels(dist_out) if len(ends(dist_out, dist_in, lv)) < len(nodes)]


def head(dist: Mapping[str, int], level: int) -> list[str]:
    """Nodes at most `level` edges from an output, sorted."""
    return sorted(n for n, d in dist.items() if d <= level)


def ends(dist_out: Mapping[str, int], dist_in: Mapping[str, int], level: int) -> list[str]:
    """Nodes at most `level` edges from an output or from the input, sorted."""
    return sorted(set(head(dist_out, level)) | set(head(dist_in, level)))
