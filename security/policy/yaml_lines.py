"""YAML with line numbers: mappings and sequences that remember the line each key and item is
on, so every policy error can name its line; duplicate keys are errors, not silently dropped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


class LineDict(dict):
    line: int = 0
    key_lines: dict


class LineList(list):
    line: int = 0
    item_lines: list


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences remember the line they start on."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            # YAML keeps the last duplicate silently; in a policy that hides a mistake.
            raise PolicyError(key_node.start_mark.line + 1, f"duplicate key {key!r}")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


@dataclass
class PolicyError(Exception):
    line: int
    message: str
    source: str = ""

    def __str__(self) -> str:
        return f"{self.source or '<policy>'}:{self.line}: {self.message}"


class PolicyValidationError(Exception):
    def __init__(self, errors: list[PolicyError]):
        self.errors = sorted(errors, key=lambda e: (e.source, e.line, e.message))
        super().__init__("\n".join(str(e) for e in self.errors))


def line_of(container: Any, key: Any = None, default: int = 0) -> int:
    if isinstance(container, LineDict):
        return container.key_lines.get(key, container.line) if key is not None else container.line
    if isinstance(container, LineList):
        if isinstance(key, int) and key < len(container.item_lines):
            return container.item_lines[key]
        return container.line
    return default


def document_load(text: str, source: str) -> dict:
    """The YAML document, a mapping with a `policies:` list; anything else fails at once."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass
    except PolicyError as exc:
        raise PolicyValidationError([PolicyError(exc.line, exc.message, source)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyValidationError(
            [PolicyError(mark.line + 1 if mark else 1, f"YAML: {problem}", source)]
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("policies"), list):
        raise PolicyValidationError(
            [PolicyError(line_of(doc, default=1) or 1, "the file needs a top-level `policies:` list", source)]
        )
    return doc
