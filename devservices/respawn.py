"""Run a command and start it again when it fails (a worker whose Redis restarted, a crash),
with a growing pause; stop it and stop for good on SIGTERM/SIGINT. A clean exit (status 0)
is final: a worker that security shut down, or one stopped on purpose, stays down.

    python -m devservices.respawn -- .venv/bin/python manage.py rqworker ...

honcho stops the whole stack when one process exits; an RQ worker exits when its Redis goes
away, so under `make run` each worker runs under this.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

MAX_PAUSE_S = 30.0
HEALTHY_AFTER_S = 60.0  # a run this long resets the pause


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: python -m devservices.respawn -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pause = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(argv)  # noqa: S603 - the command line the Procfile gives
        code = child.wait()
        if stopping:
            return 0  # stopped on purpose, whatever the child answered to the signal
        if code == 0:
            return 0
        ran = time.monotonic() - started
        pause = 1.0 if ran > HEALTHY_AFTER_S else min(pause * 2, MAX_PAUSE_S)
        print(f"respawn: {argv[0]} exited with {code} after {ran:.0f} s; starting it again in {pause:.0f} s",
              file=sys.stderr, flush=True)
        deadline = time.monotonic() + pause
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.2)
        if stopping:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
