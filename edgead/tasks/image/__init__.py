"""The image task: MVTec-layout data, letterbox preprocessing, anomaly-map post-processing,
the image Predictor, evaluation and training (see task.py for what it tells the shared code)."""
