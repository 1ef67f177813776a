"""Thin RQ entry points of the ops app."""

from ops import watch as watchers


def watch() -> None:
    watchers.watch()
