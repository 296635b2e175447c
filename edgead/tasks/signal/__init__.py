"""The signal task: UCR / WFDB / NAB / CSV / numpy data, windowing and normalisation, the
SignalPredictor with streaming, evaluation and training (see task.py)."""
