"""The documented import path of the torch-free point-cloud predictor."""
from edgead.tasks.pointcloud.predictor import CloudResult, PointCloudPredictor

__all__ = ["PointCloudPredictor", "CloudResult"]
