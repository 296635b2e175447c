#!/usr/bin/env python3
"""Stream a recording through an edgead signal bundle as if it came from a sensor; print alarms.

    python ecg_stream.py bundles/ecg ../shared/data/signals/mitbih_wfdb_sample/100
    python ecg_stream.py bundles/ecg heart.csv --rate 250 --chunk 25 --realtime     # sensor pace
    python ecg_stream.py bundles/ecg 100 --json --max-seconds 60                     # JSON lines

Reads a WFDB record (`.hea/.dat`, needs the `wfdb` package) or a CSV / .npy file, then pushes
`--chunk` samples at a time (default: a tenth of a second) into `SignalPredictor.stream()`,
exactly what a device loop reading an ADC would do. Consecutive anomalous windows are merged
into one alarm, printed when it starts and when it ends. Uses numpy and one runtime, no torch.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from edgead.core.errors import DataError
from edgead.signal_predictor import SignalPredictor, WindowResult
from edgead.tasks.signal.data import Series, load_with_channels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="signal bundle folder made by `edgead export`")
    p.add_argument("record", help="WFDB record (path without extension), CSV or .npy file")
    p.add_argument("--data-kind", choices=["wfdb", "csv", "npy", "nab"], help="file kind (detected by default)")
    p.add_argument("--rate", type=float, help="sampling rate in Hz when the file does not say (CSV, .npy)")
    p.add_argument("--chunk", type=int, help="samples per push (default: a tenth of a second)")
    p.add_argument("--runtime", default="auto", help="onnxruntime, openvino, tflite or auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    p.add_argument("--threads", type=int, help="runtime threads")
    p.add_argument("--realtime", action="store_true", help="sleep between pushes to keep the sensor's pace")
    p.add_argument("--max-seconds", type=float, help="stop after this much of the recording")
    p.add_argument("--json", action="store_true", help="one JSON line per window instead of alarms only")
    return p.parse_args(argv)


def read_record(a: argparse.Namespace, pred: SignalPredictor) -> tuple[np.ndarray, float | None, np.ndarray | None]:
    names = list(pred.spec.channel_names)
    d, named = load_with_channels(a.record, a.data_kind, names)
    if isinstance(d, Series) and not named:  # the record names its leads differently: take the first ones
        print(f"ecg_stream: {a.record} has no channel {names}; using {d.channel_names[:pred.spec.channels]}",
              file=sys.stderr)
        d.values = d.values[:, : pred.spec.channels]
    if not isinstance(d, Series):
        raise DataError(f"{a.record}: holds fixed-length samples, not a recording; use `edgead predict`")
    rate = d.rate or a.rate
    if rate is None and pred.spec.rate is not None:
        raise DataError(f"{a.record}: the file has no sampling rate; pass --rate (the model runs at {pred.spec.rate:g} Hz)")
    x, missing = d.values, d.missing
    if a.max_seconds is not None and rate:
        x = x[: int(a.max_seconds * rate)]
        missing = None if missing is None else missing[: len(x)]
    return x, rate, missing


class Alarms:
    """Merges consecutive anomalous windows into alarms; prints their start and end, and sensor
    faults (flat, saturated, dropout) when they begin."""

    def __init__(self, model_rate: float | None, as_json: bool):
        self.rate, self.as_json = model_rate, as_json
        self.open: WindowResult | None = None
        self.peak = 0.0
        self.count = 0
        self.fault: str | None = None

    def when(self, sample: int) -> str:
        return f"t={sample / self.rate:8.2f} s" if self.rate else f"sample {sample}"

    def feed(self, w: WindowResult, length: int) -> None:
        if self.as_json:
            end = w.start + length
            print(json.dumps({**w.to_json(), "end": end, "seconds": end / self.rate if self.rate else None}), flush=True)
        if w.fault:  # a dead, clipped or gappy lead: say so, whatever the score
            if not self.as_json and self.fault != w.fault:
                print(f"FAULT  {self.when(w.start)}  sensor {w.fault}", flush=True)
            self.fault = w.fault
            return
        self.fault = None
        if w.is_anomalous and self.open is None:
            self.open, self.peak, self.count = w, w.score, self.count + 1
            if not self.as_json:
                print(f"ALARM  {self.when(w.start)}  score {w.score:.3f}", flush=True)
        elif w.is_anomalous:
            self.peak = max(self.peak, w.score)
        elif self.open is not None:
            self.close(w.start + length - 1)

    def close(self, end: int) -> None:
        if self.open is not None and not self.as_json:
            print(f"clear  {self.when(end)}  (peak score {self.peak:.3f})", flush=True)
        self.open = None


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        pred = SignalPredictor(a.bundle, runtime=a.runtime, threads=a.threads, precision=a.precision)
        x, rate, missing = read_record(a, pred)
    except (DataError, ValueError, OSError) as e:
        print(f"ecg_stream: {e}", file=sys.stderr)
        return 2
    chunk = a.chunk or max(1, int(round((rate or 100) / 10)))
    stream, alarms = pred.stream(rate), Alarms(pred.spec.rate, a.json)
    windows, push_ms, t_start = 0, [], time.perf_counter()
    for i in range(0, len(x), chunk):
        t0 = time.perf_counter()
        update = stream.push(x[i : i + chunk], None if missing is None else missing[i : i + chunk])
        push_ms.append(1e3 * (time.perf_counter() - t0))
        for w in update.windows:
            alarms.feed(w, pred.spec.length)
        windows += len(update.windows)
        if a.realtime and rate:
            time.sleep(max(0.0, t_start + (i + chunk) / rate - time.perf_counter()))
    for w in stream.flush().windows:
        alarms.feed(w, pred.spec.length)
        windows += 1
    alarms.close(stream.n)
    seconds = f"{len(x) / rate:.1f} s" if rate else f"{len(x)} samples"
    print(f"ecg_stream: {seconds} in {len(push_ms)} pushes of {chunk} samples, {windows} windows, "
          f"{alarms.count} alarms; push latency median {np.median(push_ms):.2f} ms, max {max(push_ms):.2f} ms "
          f"({pred.runtime}, {pred.precision})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
