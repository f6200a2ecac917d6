"""Property-based fuzzing of the workspace's whole OpenAPI surface with schemathesis, against
`flowpivot serve` running on a small FIN7 store: no answer is a server error, every status code,
content type and JSON body is the one the description declares. Bounded: a few examples per
operation (about a minute in all), with one done hunt and one saved investigation in the workspace
so that the routes that need them are reached too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from workspace_server import fin7, running, wait_hunt

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    scen = fin7(tmp_path_factory.mktemp("ws-fuzz"), flows=20_000)
    with running(scen.store, scen.dir / "ws", "--asn-db", str(scen.asn), "--max-upload", "1") as s, s.client() as c:
        h = c.post("/api/hunts", json={"seeds": scen.seeds.read_text()}).json()
        assert wait_hunt(c, h["id"])["status"] == "done"
        assert c.post("/api/investigations", json={"name": "fuzz", "hunt": h["id"]}).status_code == 201
        page = c.get("/").text
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        yield {"url": s.url, "token": token, "server": s}
        log = s.log.read_text()
        assert "Traceback" not in log, log[-3000:]


def test_no_server_errors_and_no_schema_violations(live: dict[str, Any]) -> None:
    api = schemathesis.openapi.from_url(live["url"] + "/openapi.json")
    ops = [r.ok() for r in api.get_all_operations()]
    assert len(ops) >= 20, [o.label for o in ops]
    failures: dict[str, str] = {}
    for op in ops:

        @given(case=op.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)  # fmt: skip
        def fuzz(case: Any) -> None:
            case.call_and_validate(
                base_url=live["url"], headers={"X-CSRF-Token": live["token"]}, checks=CHECKS, timeout=60
            )

        try:
            fuzz()
        except Exception as e:  # every operation is fuzzed; the failures are listed together
            failures[op.label] = str(e)[:2000]
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
