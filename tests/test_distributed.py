"""`torchrun -m edgead train`: two CPU processes (gloo) train the run one process would, and a
rank that dies or never joins gives one clear error instead of a hang."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgead.signal_predictor import SignalPredictor

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "golden" / "v1_signal" / "toy_TRAIN.txt"
ENV = dict(os.environ, OMP_NUM_THREADS="1", EDGEAD_QUIET="1", PYTHONPATH=str(REPO))


def train(out: Path, *args: str, procs: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
                if procs > 1 else [sys.executable])
    cmd = [*launcher, "-m", "edgead", "train", "--out", str(out), "--threads", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout, cwd=REPO)


def thresholds(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())["thresholds"]


@pytest.mark.slow
def test_two_processes_train_the_one_process_signal_run(tmp_path):
    """MMAE-lite, global batch 64 in both: each rank trains on its half of the batch one process
    draws, and DDP averages the gradients. Same thresholds and scores to 1e-4 (float sums in
    another order), while the seed's own noise moves them by percents."""
    flags = ["--model", "mmae", "--data", str(TOY), "--steps", "40"]
    one, two, other_seed = tmp_path / "one", tmp_path / "two", tmp_path / "seed1"
    for out, procs, extra in ((one, 1, []), (two, 2, []), (other_seed, 1, ["--seed", "1"])):
        r = train(out, *flags, *extra, procs=procs)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.count("trained mmae") == 1, procs  # one report, by rank 0
    for level in ("window", "point"):
        a, b = (thresholds(run)[level]["values"]["normal_quantile"] for run in (one, two))
        assert b == pytest.approx(a, rel=1e-4), level
    windows = np.loadtxt(TOY, delimiter=",")[:, 1:]
    s1, s2, s3 = (SignalPredictor(run).score_windows(windows).window_score for run in (one, two, other_seed))
    assert np.allclose(s2, s1, rtol=1e-4)
    assert not np.allclose(s3, s1, rtol=1e-2)  # the tolerance is far below what a seed changes


@pytest.mark.slow
def test_patchcore_shards_the_feature_pass_and_builds_the_coreset_on_rank_0(small_mvtec, tmp_path):
    flags = ["--model", "patchcore", "--data", str(small_mvtec), "--image-size", "64"]
    one, two = tmp_path / "one", tmp_path / "two"
    for out, procs in ((one, 1), (two, 2)):
        r = train(out, *flags, procs=procs)
        assert r.returncode == 0, r.stderr[-2000:]
    a, b = (json.loads((run / "run.json").read_text()) for run in (one, two))
    assert b["train"]["log"] == a["train"]["log"]  # the same patches, the same bank size
    assert b["thresholds"]["image"]["values"]["normal_quantile"] == pytest.approx(
        a["thresholds"]["image"]["values"]["normal_quantile"], rel=1e-5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank(i: int, out: Path, port: int, timeout: int) -> subprocess.Popen:
    env = dict(ENV, WORLD_SIZE="2", RANK=str(i), LOCAL_RANK=str(i), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               EDGEAD_DIST_TIMEOUT=str(timeout))
    cmd = [sys.executable, "-m", "edgead", "train", "--model", "mmae", "--data", str(TOY), "--steps", "1000000",
           "--threads", "1", "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def test_a_rank_that_never_joins_is_a_clear_error(tmp_path):
    started = time.monotonic()
    p = rank(0, tmp_path / "run", free_port(), timeout=5)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and time.monotonic() - started < 60
    assert "edgead train: error: rank 0 of 2: the other ranks did not join within 5 s" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_rank_that_dies_stops_the_other_with_a_clear_error(tmp_path):
    port = free_port()
    survivor, victim = rank(0, tmp_path / "run", port, timeout=30), rank(1, tmp_path / "run", port, timeout=30)
    time.sleep(15)  # both have joined and are training (a million steps)
    assert survivor.poll() is None, survivor.stderr.read()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, err = survivor.communicate(timeout=90)  # collectives fail at once, or time out after 30 s
    assert survivor.returncode == 2, err[-2000:]
    assert "edgead train: error: rank 0 of 2:" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
