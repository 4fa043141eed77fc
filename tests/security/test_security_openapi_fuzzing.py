"""Schemathesis against the OpenAPI of profile, scoring and campaign (ingest has its own run):
generated requests, with a key holding every scope they need, never get a 5xx."""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from clientela_reliability_harness import Rig

from clientela.shared.settings import DEV_ADMIN_KEY

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 8
# Endpoints whose every call does whole-population work: fuzzing them repeats that work.
EXPENSIVE = {("POST", "/v1/model/refit"), ("POST", "/v1/sweep")}


@pytest.mark.parametrize("service", ["profile", "scoring", "campaign"])
def test_security_openapi_fuzzing_finds_no_server_error(up: Rig, service: str) -> None:
    base = up.url(service)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    headers = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:
        if (operation.method.upper(), operation.path) in EXPENSIVE:
            continue

        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @hypothesis.given(case=operation.as_strategy())
        def probe(case: Any) -> None:
            response = case.call(base_url=base, headers=headers, timeout=15)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query or ''} "
                    f"{str(case.body)[:200]}: {response.status_code} {response.text[:200]}"
                )

        probe()
    assert failures == [], "\n".join(failures)
