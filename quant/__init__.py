"""INT8 post-training quantization per runtime, with a measured accuracy gate.

- `calibration`: calibration inputs (the predictor's own preprocessing of normal images)
- `validation`: the gate's validation data and how FP32 and INT8 scores are compared
- `gate`: try candidates in order until one is within the limits, else `GateFailed`
- `graph`: which layers a repair keeps in FP32 (those nearest the input and the output)
- `onnxruntime_int8`, `openvino_int8`, `tflite_int8`: each runtime's own tool, one file each
- `int8`: `Int8Session`, what `edgead export --int8` calls per target

Importing this package imports no quantization tool; each module imports its own lazily.
"""
