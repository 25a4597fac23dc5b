"""Progress reporting contract between the engine and the front end.

The engine reports phases and steps to a :class:`ProgressSink`; it never draws anything
itself. The CLI passes a rich implementation (``console.RichProgress``); Python users pass
nothing and get :class:`NullProgress`.
"""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    def start(self, phase: str, total: int | None, unit: str = "steps") -> None:
        """A new phase begins with ``total`` steps (``None`` if unknown); ``unit`` is the
        plural noun of what a step is (``steps``, ``images``, ``pairs``, ``layers``,
        ``groups``, ``states``), for the front end's words."""

    def update(self, completed: int, **fields: float | str) -> None:
        """``completed`` steps of the current phase are done; ``fields`` are shown beside."""

    def finish(self) -> None:
        """The current phase ended."""


class NullProgress:
    """Reports nothing."""

    def start(self, phase: str, total: int | None, unit: str = "steps") -> None:
        pass

    def update(self, completed: int, **fields: float | str) -> None:
        pass

    def finish(self) -> None:
        pass
