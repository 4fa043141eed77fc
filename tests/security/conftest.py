"""Share the fault rig of tests/reliability: both suites run against one platform."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "clientela_reliability_conftest", Path(__file__).parents[1] / "reliability" / "conftest.py"
)
assert _spec is not None
assert _spec.loader is not None
_reliability = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_reliability)

pytest_configure = _reliability.pytest_configure
