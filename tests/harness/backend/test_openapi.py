"""The OpenAPI document at /openapi.json: it lists exactly the server's routes, and the real
server, fed Schemathesis' generated requests, answers as it says (no 5xx, documented status
codes, JSON bodies of the documented shape)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from harness.backend import BackendServer, load_processor, seed_store
from harness.backend.openapi import openapi_document

if TYPE_CHECKING:
    from tests.harness.backend.conftest import Backend

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
SCENARIO_NOW = datetime(2026, 12, 3, 9, 30, tzinfo=timezone(timedelta(hours=1)))

#: What the run checks: Schemathesis' checks of an API's own contract. (Its other checks judge
#: API design choices the document does not make, e.g. that schema-valid data is accepted: a
#: payment of an invoice that does not exist is rightly refused.)
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]
#: Generated requests per operation and mode: about 20 operations, two modes (valid and
#: invalid data), on two cores well under 30 seconds.
MAX_EXAMPLES = 15


def routes(server: BackendServer) -> set[tuple[str, str]]:
    found = set()
    for route in server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD":  # aiohttp adds HEAD to every GET
            found.add((route.method.lower(), str(path)))
    return found


def documented() -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }


def test_the_document_lists_exactly_the_servers_routes(backend: Backend) -> None:
    served = routes(backend.server)
    assert served - documented() == set(), "routes missing from harness/backend/openapi.py"
    assert documented() - served == set(), "documented operations the server does not have"


def test_the_server_serves_the_document(backend: Backend) -> None:
    reply = backend.get("/openapi.json")
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert reply.body == openapi_document()
    assert reply.body["openapi"] == "3.1.0"


def test_every_operation_documents_its_errors_with_the_error_schema() -> None:
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation["responses"]
            assert "404" in responses, (method, path)
            for code, response in responses.items():
                if code.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)


@pytest.fixture(scope="module")
def live_backend() -> Iterator[str]:
    """The real backend on 127.0.0.1:0, in a thread with its own event loop (Schemathesis'
    client is synchronous)."""
    store = seed_store(FIXTURES)
    store.associate_terminal("SIM0001", "TPE-BLE-1", "1.4.2", SCENARIO_NOW)
    server = BackendServer(store, load_processor(FIXTURES), now=lambda: SCENARIO_NOW)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=serve, name="backend-under-test", daemon=True)
    thread.start()
    assert started.wait(10), "the backend did not start"
    try:
        yield server.url
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


#: Loaded from the document the server serves (test_the_server_serves_the_document), eagerly:
#: Schemathesis' lazy ``from_fixture`` loader does not run under pytest 9 (4.32.5).
schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.checks.update(included_check_names=CHECKS)
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_server_keeps_to_its_document(case: schemathesis.Case[Any], live_backend: str) -> None:
    case.call_and_validate(base_url=live_backend)
