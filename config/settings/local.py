"""Development settings: what `make run` uses.

`make run` keeps generated secrets (Django key, S3 credentials, event token) in
var/reelflow.env; reading it here lets every manage.py command find the same stack. Variables
already in the environment win over the file.
"""

import os
from pathlib import Path

import environ

_env_file = Path(
    os.environ.get("REELFLOW_ENV_FILE")
    or Path(os.environ.get("REELFLOW_VAR_DIR") or Path(__file__).resolve().parents[2] / "var")
    / "reelflow.env"
)
if _env_file.is_file():
    environ.Env.read_env(str(_env_file), overwrite=False)

from .base import *  # noqa: E402,F403
from .base import env  # noqa: E402

# `make run` is a developer's machine: webhook receivers there listen on 127.0.0.1.
WEBHOOKS_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOKS_ALLOW_PRIVATE_TARGETS", default=True)
