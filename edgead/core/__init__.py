"""Torch-free, modality-free core: errors, records, run folders, bundles, the base predictor,
thresholds, metrics, atomic writes and progress."""
