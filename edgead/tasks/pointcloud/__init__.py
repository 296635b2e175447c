"""The point-cloud task: scans in, per-point and per-cloud anomaly scores out (see task.py)."""
