"""edgead: anomaly detection and localisation on edge devices."""
__version__ = "0.1.0"
