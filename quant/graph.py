"""Which layers to keep in FP32 when INT8 costs too much accuracy: the ones nearest the output.

An anomaly map is a difference of features, squared and averaged (a distance): quantization
noise in those last layers adds straight to the score (shifting it against thresholds set in
FP32), and their calibration ranges, taken on normal images, clip the large values that
anomalies produce. So repairs keep the layers within a growing distance of the output in
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


def head_levels(dist: Mapping[str, int], shares: Iterable[float] = HEAD_SHARES) -> list[int]:
    """Distinct distances to try, as shares of the deepest node's distance (at least 1)."""
    depth = max(dist.values(), default=0)
    return sorted({max(1, math.ceil(s * depth)) for s in shares})


def head(dist: Mapping[str, int], level: int) -> list[str]:
    """Nodes at most `level` edges from an output, sorted."""
    return sorted(n for n, d in dist.items() if d <= level)
