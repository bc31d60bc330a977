"""Handlers read their inputs by name, never by position.

An event wired with ``inputs`` as a *set* of components hands its handler one dict {component: value} (Gradio 6).
A tab keeps its controls in a dict {name: component}, the names being the GenerationRequest fields they fill, and
the handler reads ``values["steps"]``: adding a control never shifts another's value.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping


def inputs(*groups: Mapping[str, Any] | Iterable) -> set:
    """The components to wire, as the set that makes Gradio pass one dict: each group is a {name: component}
    dict or a plain collection of components."""
    found = set()
    for group in groups:
        found.update(group.values() if isinstance(group, Mapping) else group)
    return found


def merged(*groups: Mapping[str, Any]) -> dict[str, Any]:
    """{name: component} of several groups; a name in two groups is a mistake (one value would be lost)."""
    result: dict[str, Any] = {}
    for group in groups:
        twice = result.keys() & group.keys()
        if twice:
            raise ValueError(f"controls named twice: {', '.join(sorted(twice))}")
        result.update(group)
    return result


def by_name(controls: Mapping[str, Any], data: Mapping) -> dict[str, Any]:
    """The values of ``controls`` ({name: component}) read from a handler's {component: value}."""
    return {name: data[component] for name, component in controls.items()}
