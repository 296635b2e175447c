"""Kept for `from edgead.signal_predictor import SignalPredictor`: it lives in edgead.tasks.signal."""
from edgead.tasks.signal.predictor import (SeriesResult, SignalPredictor, SignalStream, StreamUpdate, WindowResult,
                                           WindowScores)

__all__ = ["SignalPredictor", "SignalStream", "SeriesResult", "StreamUpdate", "WindowResult", "WindowScores"]
