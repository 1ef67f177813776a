"""Fixtures of the operations tests: the pipeline's (ladders, a publisher, an upload to S3)."""

from tests.pipeline.conftest import ladders, publisher, upload  # noqa: F401 - fixtures
