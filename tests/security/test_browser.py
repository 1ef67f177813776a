"""The security home page's live alerts in a real browser (the studio's browser fixtures:
Debian's Chromium through Playwright, daphne serving config.asgi): a raised alert appears at the
top without a reload; after the socket drops, the shared client (static/js/live.js) reconnects
and the new snapshot brings an alert raised meanwhile."""

import pytest

from core.models import AlertSeverity
from core.roles import Role
from core.services import alert_raise
from security.services.alerts import security_alert_raise
from tests.pipeline.conftest import ladders  # noqa: F401 - fixture
from tests.studio.test_browser import (  # noqa: F401 - fixtures
    RECONNECTED,
    WATCH_SOCKETS,
    chromium,
    off_the_loop,
    signed_in_page,
    static_root,
    web,
    web_server,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def reviewer_page(chromium, web, make_user):  # noqa: F811
    make_user("sam", role=Role.SECURITY)
    with signed_in_page(chromium, web, "sam") as page:
        yield page


def test_alerts_appear_live_and_after_a_reconnect(web, reviewer_page):  # noqa: F811
    page = reviewer_page
    page.goto(web.url("/security/"))
    status = page.locator("#live-status")
    page.wait_for_function("() => document.getElementById('live-status').textContent === 'live'")
    assert page.locator("#live-alerts tr.empty").count() == 1

    raised = off_the_loop(
        security_alert_raise, severity=AlertSeverity.CRITICAL, title="Instance launched by a stranger"
    )
    page.locator(f'#live-alerts tr:first-child[data-alert-id="{raised.pk}"]').wait_for()
    assert page.locator("#live-alerts tr.empty").count() == 0

    # Raised while nobody is told (as if pushed while the socket was down); then the drop.
    quiet = alert_raise(source="security", severity=AlertSeverity.WARNING, title="Worker runs in debug mode")
    page.evaluate("window.__sockets[0].close()")
    page.wait_for_function(RECONNECTED)
    page.wait_for_function("() => document.getElementById('live-status').textContent === 'live'")
    assert "live: reconnecting…" in page.evaluate("window.__status")
    page.locator(f'#live-alerts tr:first-child[data-alert-id="{quiet.pk}"]').wait_for()
    assert page.locator(f'#live-alerts tr[data-alert-id="{raised.pk}"]').count() == 1, "not twice"
    assert status.inner_text() == "live"
