"""devservices.weed_command: the weed mini command line and configuration it writes (no server)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from devservices.weed_command import PORT_FLAGS, build_command, dev_ports

ACCESS_KEY = "reelflow-test-ak"
SECRET_KEY = "reelflow-test-secret-0123456789"
TOKEN = "hook-token-" + "x" * 20
SITE = "http://127.0.0.1:8000"


def test_build_command_binds_loopback_and_keeps_files_under_data_dir(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "mini.options").write_text("s3.port=1\n")
    ports = dev_ports(18333)
    argv, cwd = build_command(
        data_dir=tmp_path,
        s3_port=18333,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        ports=ports,
        webhook_url="http://127.0.0.1:8000/events/s3/",
        webhook_token=TOKEN,
    )
    assert Path(argv[0]).name == "weed"
    assert argv[argv.index("mini") - 1] == f"-config_dir={tmp_path / 'conf'}"
    assert cwd == tmp_path / "conf"
    for flag in (
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-dir={tmp_path / 'store'}",
        f"-s3.config={tmp_path / 'conf' / 's3.json'}",
        f"-filer.localSocket={tmp_path / 'run' / 'filer.sock'}",
        f"-s3.localSocket={tmp_path / 'run' / 's3.sock'}",
    ):
        assert flag in argv
    for name, flag in PORT_FLAGS.items():
        assert f"-{flag}={ports[name]}" in argv
    assert not any(SECRET_KEY in a or TOKEN in a for a in argv), "secrets must not be in argv"
    assert not (tmp_path / "store" / "mini.options").exists()

    identities = json.loads((tmp_path / "conf" / "s3.json").read_text())["identities"]
    assert [i["credentials"] for i in identities] == [[{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]]
    notification = (tmp_path / "conf" / "notification.toml").read_text()
    assert "[notification.webhook]" in notification
    assert 'endpoint = "http://127.0.0.1:8000/events/s3/"' in notification
    assert f'bearer_token = "{TOKEN}"' in notification
    for name in ("s3.json", "notification.toml"):
        assert stat.S_IMODE((tmp_path / "conf" / name).stat().st_mode) == 0o600


def test_long_data_dir_gets_short_socket_paths(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    argv, _ = build_command(data_dir=deep, s3_port=None, access_key="a", secret_key="b")
    [filer_socket] = [a.split("=", 1)[1] for a in argv if a.startswith("-filer.localSocket=")]
    assert len(filer_socket) <= 100
    assert Path(filer_socket).parent.is_dir()
    Path(filer_socket).parent.rmdir()  # the short fallback folder outside tmp_path
    assert all(f"-{flag}=" in " ".join(argv) for flag in PORT_FLAGS.values())


def test_dev_ports_are_stable_and_distinct():
    ports = dev_ports(8333)
    assert ports == dev_ports(8333)
    assert ports["s3"] == 8333
    assert sorted(ports.values()) == [*range(8333, 8342), 8341 + 10000]
    assert ports["admin_grpc"] == ports["admin"] + 10000  # where weed's worker dials it
    assert set(ports) == set(PORT_FLAGS)


# --------------------------------------------------------------------------- the server
