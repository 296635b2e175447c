"""INT8 post-training quantization per runtime, with a measured accuracy gate, for every task.

- `int8`: `Int8Session`, what `edgead export --int8` calls per target; the task supplies its
  calibration inputs, validation set and scoring (`Int8Data`, see edgead.tasks.<task>)
- `gate`: try candidates in order until one is within the limits, else `GateFailed`
- `graph`: which layers a repair keeps in FP32 (those nearest the input and the output)
- `onnxruntime_int8`, `openvino_int8`, `tflite_int8`: each runtime's own tool, one file each,
  named in the target table (edgead.targets)

Importing this package imports no quantization tool; each module imports its own lazily.
"""
