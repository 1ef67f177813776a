"""Schemathesis against the live OpenAPI document (a real server, real token): no operation
answers a 5xx, and every response matches the document (status, content type, schema).

Not checked: that every schema-valid request is accepted. A cursor this API never issued, a
quota, a part number past the upload's last are valid JSON of the right type and still a 400
with words saying what to fix; the generated data cannot know them.

Bounded for CI: a few examples per operation, the whole run well under a minute."""

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.services import token_create
from pipeline.models import JobState

pytestmark = [pytest.mark.slow]


@pytest.fixture
def live_api(live_server, settings, transactional_db, s3, redis_conn, make_user):
    from pipeline.ladders import ladders_sync
    from pipeline.models import AudioRenditionSpec, Profile, VideoRenditionSpec
    from tests.factories import AssetFactory, EncodeJobFactory
    from tests.pipeline.conftest import ladders  # noqa: F401 - rows the upload start reads

    ladders_sync(Profile, VideoRenditionSpec, AudioRenditionSpec)
    settings.SITE_URL = live_server.url
    settings.API_RATE_PER_MINUTE = 100_000
    # Random ids are 404s on many distinct paths: the security probe detector would (rightly)
    # deactivate a user scanning like that, as it does for pages.
    settings.SECURITY_PROBE_THRESHOLD = 100_000
    owner = make_user("fuzz")
    # A few rows of the owner's, so generated ids sometimes hit something real.
    for _ in range(3):
        EncodeJobFactory(asset=AssetFactory(publisher=owner), state=JobState.ENCODING)
    return live_server.url, token_create(publisher=owner, name="schemathesis", scope="write")[1]


def test_api_conforms_to_its_document(live_api):
    """Every operation of the live document, fuzzed by schemathesis's strategies (driven here
    rather than by its pytest plugin, which does not run under this pytest)."""
    base, token = live_api
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    failures, tried, statuses = {}, 0, []
    for result in schema.get_all_operations():
        operation = result.ok()
        tried += 1

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=8, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def run(case):
            # The token replaces any Authorization the generator made up (those are all 401).
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            statuses.append(response.status_code)

        try:
            run()
        except Exception as exc:  # every operation is tried; all failures are reported together
            failures[operation.label] = str(exc)[:1500]
    assert tried >= 20
    assert failures == {}
    counts = collections.Counter(statuses)
    assert counts[401] == 0 and sum(n for code, n in counts.items() if 200 <= code < 300) >= 20, counts
