"""Fixtures of the console tests: operations staff, demo data from the seed generator, a
fresh per-process Redis client (the console keeps one; tests empty the database under it)."""

import pytest

from core.roles import Role


@pytest.fixture(autouse=True)
def _console_redis_client_reset():
    from console import selectors

    selectors._redis_for.cache_clear()
    yield
    selectors._redis_for.cache_clear()


@pytest.fixture
def operator(make_user):
    return make_user("olga", role=Role.OPERATIONS)


@pytest.fixture
def ops_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def seed(db, redis_conn):
    """seed(jobs) -> report: demo jobs (about 40 units each), events and queue samples."""
    from console.demo import demo_data_seed

    def run(jobs: int, **kwargs):
        kwargs.setdefault("publishers", 4)
        kwargs.setdefault("sample_hours", 2)
        return demo_data_seed(jobs=jobs, **kwargs)

    return run
