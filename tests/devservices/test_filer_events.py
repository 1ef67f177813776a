"""pipeline.filer_events.parse_filer_event on the bodies SeaweedFS 4.48's filer webhook posts
(docs/seaweedfs.md shows one observed)."""

from __future__ import annotations

import base64

import pytest

from pipeline.filer_events import parse_filer_event


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _file_entry(name: str, size: int | None, etag: str | None = None) -> dict:
    entry: dict = {"name": name, "attributes": {"mtime": 1795796538, "file_mode": 432}}
    if size:
        entry["attributes"]["file_size"] = size
        entry["chunks"] = [{"size": size, "e_tag": "x"}]
    if etag:
        entry["extended"] = {"Seaweed-X-Amz-ETag": _b64(etag)}
    return entry


def test_parse_created_object():
    body = {
        "key": "/buckets/ingest/uploads/alice/clip.mp4",
        "event_type": "create",
        "message": {
            "new_entry": _file_entry("clip.mp4", 1234, "4b3e2355a4a96876d671bff87a566e74"),
            "new_parent_path": "/buckets/ingest/uploads/alice",
        },
    }
    assert parse_filer_event(body) == [
        {
            "event": "created",
            "bucket": "ingest",
            "key": "uploads/alice/clip.mp4",
            "size": 1234,
            "etag": "4b3e2355a4a96876d671bff87a566e74",
            "mtime": 1795796538.0,
        }
    ]


def test_parse_etag_falls_back_to_md5_and_zero_size_is_zero():
    entry = _file_entry("empty.txt", None)
    entry["attributes"]["md5"] = base64.b64encode(bytes.fromhex("d41d8cd98f00b204e9800998ecf8427e")).decode()
    body = {
        "key": "/buckets/b/k/empty.txt",
        "message": {"new_entry": entry, "new_parent_path": "/buckets/b/k"},
    }
    [event] = parse_filer_event(body)
    assert (event["size"], event["etag"]) == (0, "d41d8cd98f00b204e9800998ecf8427e")


def test_parse_deleted_updated_and_renamed():
    deleted = {
        "key": "/buckets/b/a.mp4",
        "event_type": "delete",
        "message": {"old_entry": _file_entry("a.mp4", 5)},
    }
    assert [(e["event"], e["key"], e["size"]) for e in parse_filer_event(deleted)] == [
        ("deleted", "a.mp4", 5)
    ]

    updated = {
        "key": "/buckets/b/a.mp4",
        "event_type": "update",
        "message": {"old_entry": _file_entry("a.mp4", 5), "new_entry": _file_entry("a.mp4", 7)},
    }
    assert [(e["event"], e["key"], e["size"]) for e in parse_filer_event(updated)] == [
        ("created", "a.mp4", 7)
    ]

    renamed = {
        "key": "/buckets/b/old/a.mp4",
        "event_type": "rename",
        "message": {
            "old_entry": _file_entry("a.mp4", 5),
            "new_entry": _file_entry("b.mp4", 5),
            "new_parent_path": "/buckets/c/new",
        },
    }
    assert [(e["event"], e["bucket"], e["key"]) for e in parse_filer_event(renamed)] == [
        ("deleted", "b", "old/a.mp4"),
        ("created", "c", "new/b.mp4"),
    ]


@pytest.mark.parametrize(
    ("key", "entry"),
    [
        ("/buckets/ingest/uploads", {"name": "uploads", "is_directory": True, "attributes": {}}),
        ("/buckets/ingest", {"name": "ingest", "is_directory": True, "attributes": {}}),
        ("/buckets/.system/owners/admin/ingest", _file_entry("ingest", None)),
        ("/buckets/ingest/.uploads/abc_123/0001_x.part", _file_entry("0001_x.part", 10)),
        ("/etc/iam/identity.json", _file_entry("identity.json", 10)),
        ("/topics/x", _file_entry("x", 10)),
    ],
)
def test_parse_ignores_directories_internals_and_non_bucket_paths(key, entry):
    parent = key.rsplit("/", 1)[0] or "/"
    assert parse_filer_event({"key": key, "message": {"new_entry": entry, "new_parent_path": parent}}) == []
    assert parse_filer_event({"key": key, "message": {"old_entry": entry}}) == []


def test_parse_tolerates_junk():
    assert parse_filer_event({}) == []
    assert parse_filer_event({"key": "/buckets/b/k", "message": {}}) == []
    assert parse_filer_event(None) == []  # type: ignore[arg-type]
