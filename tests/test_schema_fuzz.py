"""schemathesis over /api/schema/: generated requests against a real server find no 5xx."""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from tests.servers import login

# No throttle: fuzz the streaming paths, not the limit.
pytestmark = [pytest.mark.slow, pytest.mark.site({"fuzz": "fuzz-pw"}, REPLIES_PER_MINUTE="0")]

EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def api(site):
    """The site's URL and a logged-in user's client secret."""
    client = login(site.url, "fuzz", "fuzz-pw")
    secret = client.post("/api/chatkit/session").json()["client_secret"]
    # Some real threads, so generated ids sometimes hit and sometimes miss.
    for title in ("one", "two"):
        client.post("/api/threads/", json={"title": title})
    return site.url, {"Authorization": f"Bearer {secret}"}


def test_no_generated_request_makes_the_api_answer_5xx(api):
    # schemathesis's pytest plugin does not run under pytest 9, so drive hypothesis directly
    # with each operation's strategy.
    url, headers = api
    schema = schemathesis.openapi.from_url(f"{url}/api/schema/", headers=headers)
    fuzzed = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events/"):
            continue  # the thread's event stream never ends, by design

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            response = case.call(base_url=url, headers=headers, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        check()
        fuzzed.append(f"{operation.method.upper()} {operation.path}")
    assert len(fuzzed) >= 10, fuzzed
    assert "POST /api/chatkit" in fuzzed, fuzzed


def test_the_schema_documents_the_streaming_endpoints(api):
    url, headers = api
    paths = httpx.get(
        f"{url}/api/schema/", headers={**headers, "Accept": "application/vnd.oai.openapi+json"}
    ).json()["paths"]
    assert paths["/api/stream/message"]["post"]["responses"]["200"]["content"].keys() == {
        "text/event-stream"
    }
