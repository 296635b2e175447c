"""precision="auto" picks INT8 only where it was measured faster on this machine, and says why;
export keeps third-party output in a log beside the bundle and prints its own steps."""
import json
import subprocess
import sys

import pytest

import runtimes
from edgead.cli import main
from edgead.core import speed
from edgead.core.machine import machine_key, usable_cores
from edgead.core.predictor import choose_target
from edgead.core.quiet import quiet

RT = next((rt for rt in ("onnxruntime", "openvino", "tflite") if runtimes.available(rt)), None)
KEY = {"onnxruntime": "onnx", "openvino": "openvino", "tflite": "tflite", None: None}[RT]
pytestmark = pytest.mark.skipif(RT is None, reason="no runtime installed: pip install 'edgead[onnxruntime]'")


def manifest(int8_ms: float | None, fp32_ms: float | None, machine: str | None = None) -> dict:
    int8 = {"file": "q", "runtime": RT, "precision": "int8"}
    if int8_ms is not None:
        int8["speed"] = {"machine": machine or machine_key(), "ms": {"default": int8_ms},
                         "fp32": {"target": KEY, "machine": machine or machine_key(), "ms": {"default": fp32_ms}}}
    return {"artefacts": {KEY: {"file": "f", "runtime": RT, "precision": "fp32"}, f"{KEY}_int8": int8}}


@pytest.mark.parametrize("int8_ms, fp32_ms, picked", [(5.0, 10.0, "int8"), (9.4, 10.0, "int8"), (9.6, 10.0, "fp32"),
                                                      (12.0, 10.0, "fp32")])
def test_auto_takes_int8_only_when_it_takes_under_95_percent_of_fp32(int8_ms, fp32_ms, picked):
    choice = choose_target(manifest(int8_ms, fp32_ms), RT)
    assert choice.target == (f"{KEY}_int8" if picked == "int8" else KEY)
    assert f"{int8_ms:.2f} ms INT8 vs {fp32_ms:.2f} ms FP32" in choice.reason


def test_figures_of_another_machine_or_none_mean_fp32_and_say_how_to_measure():
    for m in (manifest(1.0, 10.0, machine="aarch64 | Cortex-A72 | 4 cores"), manifest(None, None)):
        choice = choose_target(m, RT)
        assert choice.target == KEY and "not timed on this machine" in choice.reason
        assert "edgead benchmark" in choice.reason
    assert choose_target(manifest(None, None), RT, precision="int8").target == f"{KEY}_int8"


def test_the_device_own_benchmark_figures_overrule_export(tmp_path):
    m = manifest(5.0, 10.0)  # export found INT8 faster
    speed.file_figures(tmp_path, {KEY: {"1": 3.0, "2": 2.0}, f"{KEY}_int8": {"1": 2.0, "2": 2.5}}, "2026-12-06")
    by_default = choose_target(m, RT, bundle_dir=tmp_path)  # the most threads measured: 2, INT8 slower
    assert by_default.target == KEY and "(2 threads, edgead benchmark on this machine)" in by_default.reason
    assert choose_target(m, RT, bundle_dir=tmp_path, threads=1).target == f"{KEY}_int8"
    partial = tmp_path / "partial"
    partial.mkdir()
    speed.file_figures(partial, {f"{KEY}_int8": {str(usable_cores()): 9.0}}, "2026-12-06")  # --precisions int8 only
    mixed = choose_target(m, RT, bundle_dir=partial)  # INT8 from the benchmark against FP32 from export
    assert mixed.target == f"{KEY}_int8" and "9.00 ms INT8 vs 10.00 ms FP32" in mixed.reason
    assert "export and edgead benchmark on this machine" in mixed.reason
    other = {"machines": {"other | cpu | 8 cores": {KEY: {"1": 1.0}}}}
    (tmp_path / speed.SPEED_FILE).write_text(json.dumps(other))
    speed.file_figures(tmp_path, {KEY: {"1": 3.0}, f"{KEY}_int8": {"1": 1.0}}, "2026-12-07")
    kept = json.loads((tmp_path / speed.SPEED_FILE).read_text())["machines"]
    assert set(kept) == {"other | cpu | 8 cores", machine_key()}
    (tmp_path / speed.SPEED_FILE).write_text("{not json")
    assert choose_target(m, RT, bundle_dir=tmp_path).target == f"{KEY}_int8"  # damaged: export's figures


def test_quiet_sends_native_and_python_output_to_the_log(tmp_path):
    """Run in a child with real file descriptors, as a terminal user has them."""
    log = tmp_path / "x.export.log"
    code = (f"import os, sys, warnings\nfrom edgead.core.quiet import quiet\n"
            f"with quiet(__import__('pathlib').Path({str(log)!r})) as say:\n"
            "    print('python stdout'); print('python stderr', file=sys.stderr); warnings.warn('a warning')\n"
            "    os.write(1, b'native fd 1\\n'); os.write(2, b'native fd 2\\n'); os.system('echo child process')\n"
            "    say('edgead line')\n"
            "print('after')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "edgead line\nafter\n" and r.stderr == ""
    text = log.read_text()
    for line in ("python stdout", "python stderr", "a warning", "native fd 1", "native fd 2", "child process"):
        assert line in text


def test_quiet_verbose_redirects_nothing(tmp_path, capsys):
    with quiet(tmp_path / "l.log", verbose=True) as say:
        say("mine")
        print("theirs")
    assert capsys.readouterr().out == "mine\ntheirs\n" and not (tmp_path / "l.log").exists()


def test_export_prints_its_own_steps_and_logs_the_rest_beside_the_bundle(tiny_run, tmp_path, capfd):
    out = tmp_path / "device_bundle"
    assert main(["export", str(tiny_run), "--target", KEY, "--out", str(out)]) == 0
    printed, err = capfd.readouterr()
    lines = printed.splitlines()
    assert len(lines) <= 4 and err == "", printed + err
    assert lines[0].startswith(f"{KEY}: converted in ") and "max |diff| vs torch" in lines[0]
    assert f"bundle written to {out}" in lines[-1]
    log = tmp_path / "device_bundle.export.log"
    assert log.is_file() and not any(p.name.endswith(".log") for p in out.iterdir())  # the log names local folders


def test_predict_says_which_artefact_it_picked_and_why(tiny_bundle, small_mvtec, capsys):
    img = sorted((small_mvtec / "test/good").glob("*"))[0]
    assert main(["predict", str(tiny_bundle), str(img), "--json", "--runtime", RT]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["target"] == KEY
    assert f"scoring with {KEY}: the only {RT} artefact" in err
