"""Kept for `from edgead.predictor import Predictor`: the image predictor lives in edgead.tasks.image."""
from edgead.tasks.image.predictor import Predictor, Result, choose_target

__all__ = ["Predictor", "Result", "choose_target"]
