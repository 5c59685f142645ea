"""What is read from shared source, kept per process: most cells of a class are the lecture's
own, the same text in every notebook, so their parse trees and what is read from them are
worked out once (grader.submissions.code_cells, statements) and shared. Nothing that reads a
shared tree changes it (grader.submissions.expression_match works on a copy).

Two kinds of store, each bounded (the oldest entry dropped first): by text, and by the
identity of a tree's node (the node itself held, so that its id stays its own).
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

__all__ = ["KeptByNode", "KeptByText"]

V = TypeVar("V")


class KeptByText(Generic[V]):
    """At most ``size`` values, by the text they were made from."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: dict[str, V] = {}

    def get(self, text: str) -> V | None:
        return self._values.get(text)

    def keep(self, text: str, value: V) -> V:
        if len(self._values) >= self.size:      # the oldest (another thread may have been first)
            self._values.pop(next(iter(self._values), ""), None)
        self._values[text] = value
        return value

    def of(self, text: str, make: Callable[[str], V]) -> V:
        """The value kept for ``text``, made (and kept) if there is none."""
        found = self._values.get(text)
        return found if found is not None else self.keep(text, make(text))


class KeptByNode(Generic[V]):
    """At most ``size`` values, by the tree node they were read from."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: dict[int, tuple[object, V]] = {}

    def of(self, node: object, make: Callable[[], V]) -> V:
        found = self._values.get(id(node))
        if found is None or found[0] is not node:
            if len(self._values) >= self.size:
                self._values.pop(next(iter(self._values), 0), None)
            found = self._values[id(node)] = (node, make())
        return found[1]
