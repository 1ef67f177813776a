"""Fixtures of the operations tests: the pipeline's (ladders, a publisher, an upload to S3) and
the studio's upload API."""

from tests.pipeline.conftest import ladders, publisher, upload  # noqa: F401 - fixtures
from tests.studio.conftest import alice, alice_client, studio_api  # noqa: F401 - fixtures
