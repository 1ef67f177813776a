"""devservices.respawn: a failing command is started again, a clean exit is final, and a
SIGTERM stops both the child and the loop."""

import signal
import subprocess
import sys

import psutil

from tests.conftest import ROOT, wait_until


def test_a_failing_command_is_started_again_and_a_clean_exit_is_final(tmp_path):
    counter = tmp_path / "runs"
    # Fails twice, then exits cleanly.
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text() or 0) if p.exists() else 0; "
        "p.write_text(str(n + 1)); sys.exit(0 if n >= 2 else 3)"
    )
    result = subprocess.run([sys.executable, "-m", "devservices.respawn", "--", sys.executable, "-c", script, str(counter)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert counter.read_text() == "3"
    assert result.stderr.count("starting it again") == 2


def test_sigterm_stops_the_child_and_the_loop():
    proc = subprocess.Popen([sys.executable, "-m", "devservices.respawn", "--", sys.executable, "-c",
                             "import time; time.sleep(60)"], cwd=ROOT)
    # Its child running means its handlers are set (they are set first); a fixed pause was too
    # short for Python to start on a loaded machine, and SIGTERM then simply killed it.
    wait_until(lambda: psutil.Process(proc.pid).children(), timeout=60, message="respawn to start its child")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
