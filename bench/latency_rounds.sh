#!/bin/bash
# Interleaved FP32 model latency of the image models (2 threads, 200 calls, 3 rounds) on the
# bundles that bench/run_models_bench.py left in bench/work/models; one JSON line per call.
# usage: bench/latency_rounds.sh [DATA_NAME]   (default magnetic_tile)
cd "$(dirname "$0")/.."
data=${1:-magnetic_tile}
for r in 1 2 3; do
  for m in hetnet pbas fader patchcore; do
    for rt in onnxruntime openvino tflite; do
      echo "$r $m $rt $(.venv/bin/python bench/latency.py bench/work/models/${m}_${data}_bundle $rt 2 200 fp32 2>/dev/null | tail -1)"
    done
  done
done
