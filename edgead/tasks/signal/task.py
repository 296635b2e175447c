"""The signal task: windows of 1-D recordings in, point and window scores out of the graph;
resampling, windowing, normalisation and overlap averaging around it in numpy."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from edgead.core.errors import DataError
from edgead.tasks.base import Task
from edgead.tasks.signal import cli

TIMING_WINDOWS = 16  # distinct windows cycled through when timing
RESAMPLING = "resampling to input.rate (anti-aliased polyphase FIR, as scipy's resample_poly with padtype='edge')"


class SignalTask(Task):
    name = "signal"
    predictor_path = "edgead.tasks.signal.predictor:SignalPredictor"
    output_names = ("point_score", "window_score")
    input_name = "signal"

    add_arguments = staticmethod(cli.add_arguments)
    cli_train = staticmethod(cli.cmd_train)
    eval_options = staticmethod(cli.eval_options)
    predict_options = staticmethod(cli.predict_options)
    input_files = staticmethod(cli.input_files)
    score_file = staticmethod(cli.score_file)

    def train(self, data, out, model: str = "mmae", **options) -> dict | None:
        from edgead.tasks.signal.train import train_signal

        return train_signal(data, out, model=model, **options)

    def evaluate(self, predictor, data, **options) -> dict:
        from edgead.tasks.signal.evaluate import evaluate_signal

        return evaluate_signal(None, data, predictor=predictor, **options)

    def manifest_outputs(self) -> dict:
        return {"point_score": "point_score", "window_score": "window_score", "layout": "NCL",
                "computed_before_graph": [RESAMPLING, "windows of input.length every input.hop",
                                          "normalisation (input.norm)"],
                "computed_after_graph": ["point scores averaged over overlapping windows", "threshold normalisation"]}

    def sample_input(self, run: Mapping, sample: Any = None) -> tuple[np.ndarray, str]:
        from edgead.tasks.signal.preprocess import SignalSpec, as_windows, normalize
        from edgead.tasks.signal.samples import sample_input

        if sample is not None:
            spec = SignalSpec.from_json(run["input"])
            return normalize(as_windows(sample, spec)[:1], spec), "a window given by the caller"
        return sample_input(run)

    def int8_data(self, run: Mapping, calib=None, calib_size: int | None = None, val=None):
        from edgead.tasks.signal.int8 import int8_data

        return int8_data(run, calib, calib_size, val)

    def timing_inputs(self, manifest: Mapping, data=None) -> tuple[dict, str]:
        spec = manifest["input"]
        if data is not None:
            return {"signal_file": str(data)}, f"windows of {data}"
        return {"windows": TIMING_WINDOWS}, (f"{TIMING_WINDOWS} synthetic windows of {spec['length']} samples x "
                                             f"{spec['channels']} channels (pass --data to time your own)")

    def timing_calls(self, predictor, spec: Mapping):
        from edgead.tasks.signal.preprocess import normalize

        raw = timing_windows(predictor, spec)
        xs = normalize(raw, predictor.spec)
        return (lambda i: predictor.raw_scores(xs[i % len(xs)][None]),
                lambda i: predictor.score_windows(raw[i % len(raw)][None]))


def timing_windows(predictor, spec: Mapping) -> np.ndarray:
    """Raw windows (N, C, L) to time with: cut from `spec['signal_file']`, or synthetic."""
    s = predictor.spec
    if spec.get("signal_file"):
        from edgead.tasks.signal.data import SampleSet, load_with_channels
        from edgead.tasks.signal.preprocess import cut_windows, resample, window_starts

        d, _ = load_with_channels(spec["signal_file"], None, list(s.channel_names))
        if isinstance(d, SampleSet):
            return d.values[:TIMING_WINDOWS]
        x = resample(d.values, d.rate, s.rate, s.resampling)
        if len(x) < s.length:
            raise DataError(f"{spec['signal_file']}: {len(x)} samples at the model rate, fewer than one window ({s.length})")
        return cut_windows(x, window_starts(len(x), s.length, s.hop)[0][:TIMING_WINDOWS], s.length)
    t = np.arange(s.length, dtype=np.float32)
    rng = np.random.default_rng(0)
    return (np.sin(2 * np.pi * t / max(8, s.length / 4))[None, None]
            + 0.1 * rng.standard_normal((int(spec.get("windows", TIMING_WINDOWS)), s.channels, s.length))).astype(np.float32)
