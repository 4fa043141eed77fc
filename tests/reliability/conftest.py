"""Load the fault rig (shared with tests/security) as one plugin, so its platform starts once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PLUGIN = "clientela_reliability_harness"


def _harness() -> object:
    if PLUGIN in sys.modules:
        return sys.modules[PLUGIN]
    path = Path(__file__).resolve().parents[1] / "reliability" / "reliability_harness.py"
    spec = importlib.util.spec_from_file_location(PLUGIN, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[PLUGIN] = module
    spec.loader.exec_module(module)
    return module


def pytest_configure(config: pytest.Config) -> None:
    """Register the harness once per session, whichever suite asks first."""
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.register(_harness(), PLUGIN)
