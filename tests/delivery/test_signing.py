"""Playback tokens: signed, expiring, bound to one playback id, rotatable."""

import time

import pytest

from delivery.signing import TokenInvalid, keys, token_for, token_verify

OLD = "old1:" + "o" * 40
NEW = "new2:" + "n" * 40


def test_a_token_verifies_for_its_playback_id_until_it_expires(settings):
    token, expires = token_for(playback_id="abc", seconds=60, now=1_000_000)
    assert token_verify(playback_id="abc", token=token, now=1_000_059) == expires == 1_000_060
    with pytest.raises(TokenInvalid, match="expired"):
        token_verify(playback_id="abc", token=token, now=1_000_060)
    with pytest.raises(TokenInvalid, match="signature"):
        token_verify(playback_id="abd", token=token, now=1_000_000)


@pytest.mark.parametrize("mutate", [
    lambda t: t.replace(t.split(".")[1], str(int(t.split(".")[1]) + 3600)),  # a later expiry
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # another signature
])  # fmt: skip
def test_tampered_tokens_are_refused(mutate):
    token, _ = token_for(playback_id="abc", seconds=60)
    with pytest.raises(TokenInvalid, match="signature"):
        token_verify(playback_id="abc", token=mutate(token))


@pytest.mark.parametrize("token", ["", "public", "k0.x.y", "k0.123", "K0.1.abc", "k0.99999999999." + "a" * 43 + "/"])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(TokenInvalid, match="malformed"):
        token_verify(playback_id="abc", token=token)


def test_rotation_keeps_links_signed_with_a_listed_old_key(settings):
    settings.DELIVERY_SIGNING_KEYS = [OLD]
    old_link, _ = token_for(playback_id="abc", seconds=600)
    settings.DELIVERY_SIGNING_KEYS = [NEW, OLD]
    new_link, _ = token_for(playback_id="abc", seconds=600)
    assert new_link.startswith("new2.") and old_link.startswith("old1.")
    token_verify(playback_id="abc", token=old_link)
    token_verify(playback_id="abc", token=new_link)
    settings.DELIVERY_SIGNING_KEYS = [NEW]  # the old key retired: its links stop
    with pytest.raises(TokenInvalid, match="no longer valid"):
        token_verify(playback_id="abc", token=old_link)


def test_default_key_is_derived_from_the_secret_key(settings):
    settings.DELIVERY_SIGNING_KEYS = []
    first = keys()[0]
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    assert keys()[0].secret != first.secret and keys()[0].kid == "k0"


def test_bad_key_settings_fail_loudly(settings):
    settings.DELIVERY_SIGNING_KEYS = ["Bad Kid:short"]
    with pytest.raises(ValueError, match="kid:secret"):
        keys()


def test_lifetime_is_capped_at_seven_days():
    _, expires = token_for(playback_id="abc", seconds=10**9)
    assert expires <= time.time() + 7 * 24 * 3600 + 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DELIVERY_SIGNING_KEYS", "Bad Kid:short"), ("DELIVERY_SIGNING_KEYS", "k1:tooshort"),
     ("DELIVERY_DEFAULT_POLICY", "everyone")],
)  # fmt: skip
def test_bad_delivery_settings_stop_the_process_at_start(variable, value):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", variable: value}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode != 0 and variable in result.stderr
