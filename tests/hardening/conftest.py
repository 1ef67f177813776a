"""Fixtures for the hardening suite: the bad-input corpus, generated once per session."""

import importlib.util
import sys

import pytest

from tests.conftest import ROOT


def bad_inputs_module():
    """scripts/bad_inputs.py (a script, not a package), loaded once."""
    name = "reelflow_bad_inputs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "bad_inputs.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """(folder, kinds): every kind of bad input, written by scripts/bad_inputs.py."""
    module = bad_inputs_module()
    folder = tmp_path_factory.mktemp("bad-inputs")
    return folder, module.build(folder)


# The pipeline's fixtures (ladders, publisher, upload, run_workers) for the hardening tests.
from tests.pipeline.conftest import ladders, publisher, run_workers, upload  # noqa: E402, F401
