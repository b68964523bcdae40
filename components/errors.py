"""The error a component raises on invalid arguments.

The Python SDK has no ``ResourceError`` (the Node SDK's name for it); its equivalent is
``pulumi.RunError``: an error that is the user's to fix, which the Pulumi CLI prints without
a traceback. :class:`ComponentError` is one, naming the component it came from.
"""

from __future__ import annotations

import pulumi

__all__ = ["ComponentError"]


class ComponentError(pulumi.RunError):
    """Invalid arguments to an agentstage component: ``<component> <name>: <what to fix>``."""

    def __init__(self, component: str, name: str, message: str) -> None:
        self.component = component
        self.name = name
        self.detail = message
        super().__init__(f"{component} {name}: {message}")
