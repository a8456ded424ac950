"""calibration-dataset's worker pool under the CLI's SIGTERM handler (issue #16 part 3):
workers reset the handlers they inherit, the pool is stopped with a bounded terminate,
and a SIGTERM of the command mid-run exits 143 with no worker traceback and no file left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'meta-tegra-ai[opencv]')")

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(0)
    for i in range(6):
        assert cv2.imwrite(str(d / f"{i}.png"), rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    return d


def _python(code: str, cwd, timeout: float):
    env = dict(os.environ, PYTHONPATH=SCRIPTS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_pool_twenty_times_under_the_cli_sigterm_handler(folder, tmp_path):
    # run_main installs a SIGTERM handler that raises; before the fix every forked worker
    # inherited it and Pool.terminate() made about half of the runs print worker tracebacks.
    t = time.monotonic()
    r = _python(f"""
        import sys
        from tegra_ai.cli.calibration import main
        for i in range(20):
            code = main([{str(folder)!r}, "-o", f"o{{i}}.npz", "--height", "16", "--width", "16",
                         "--workers", "2", "--no-progress"])
            assert code == 0, code
        print("done")
    """, tmp_path, timeout=240)
    elapsed = time.monotonic() - t
    assert r.returncode == 0 and r.stdout.strip().endswith("done"), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "Terminated" not in r.stderr, r.stderr[-2000:]
    assert len(list(tmp_path.glob("o*.npz"))) == 20
    assert elapsed < 180, f"20 pool runs took {elapsed:.0f} s"


def _handlers():
    return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)


def test_workers_get_default_sigterm_and_ignore_sigint():
    from tegra_ai.dataset.calibration import _worker_signals

    import multiprocessing

    previous = signal.signal(signal.SIGTERM, lambda *a: None)
    try:
        with multiprocessing.get_context("fork").Pool(1, initializer=_worker_signals) as pool:
            term, intr = pool.apply(_handlers)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert term == signal.SIG_DFL and intr == signal.SIG_IGN


def test_sigterm_before_a_worker_reset_its_handlers_is_silent(tmp_path):
    # The race the 20-run test can hit: Pool.terminate() while a worker has not yet run its
    # initializer. A slow initializer makes it certain; the signal must wait (blocked) until
    # the handlers are reset, and never reach the parent's raising handler in the worker.
    r = _python("""
        import signal, time, multiprocessing
        from tegra_ai.cli.common import _raise_terminated
        from tegra_ai.dataset import calibration as ds
        signal.signal(signal.SIGTERM, _raise_terminated)
        original = ds._worker_signals
        def slow():
            time.sleep(1.0)
            original()
        ds._worker_signals = slow
        pool = ds.start_pool(multiprocessing.get_context("fork"), 2)
        time.sleep(0.2)
        t = time.monotonic()
        ds.stop_pool(pool)
        print(f"stopped in {time.monotonic() - t:.1f}")
    """, tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "Terminated" not in r.stderr, r.stderr[-2000:]


def test_stop_pool_is_bounded_when_terminate_hangs():
    from tegra_ai.dataset.calibration import stop_pool

    class Stuck:
        class Proc:
            killed = False

            def kill(self):
                self.killed = True

        def __init__(self):
            self._pool = [self.Proc(), self.Proc()]

        def terminate(self):
            time.sleep(30)

    pool = Stuck()
    t = time.monotonic()
    stop_pool(pool, timeout=0.2)
    assert time.monotonic() - t < 2 and all(p.killed for p in pool._pool)


def test_sigterm_mid_run_exits_143_without_worker_tracebacks(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "imgs"
    src.mkdir()
    base = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    for i in range(60):
        assert cv2.imwrite(str(src / f"{i:03d}.jpg"), cv2.resize(np.roll(base, i, axis=1), (1280, 720)))
    env = dict(os.environ, PYTHONPATH=SCRIPTS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    name = f"sigterm-{os.getpid()}.npz"  # unique: /dev/shm is shared with whatever else runs here
    proc = subprocess.Popen([sys.executable, "-m", "tegra_ai.cli.calibration", str(src), "-o", name,
                             "--height", "640", "--width", "640", "--resize", "letterbox", "--workers", "2"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(tmp_path.glob(f".{name}.*")) and not _shm_scratch(name):
        time.sleep(0.02)  # the samples file exists: the pool is about to run
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("calibration-dataset did not stop within 30 s of SIGTERM")
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived (a fast host)")
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert not (tmp_path / name).exists() and not list(tmp_path.glob(f".{name}*")) and not _shm_scratch(name)


def _shm_scratch(name):
    try:
        return [f for f in os.listdir("/dev/shm") if f.startswith(f".{name}.") and f.endswith(".samples.npy")]
    except OSError:
        return []
