"""One table of a TOML config read key by key: each value checked for its kind and range, and
every key the reader did not ask for refused by name, with the key it probably meant."""

from __future__ import annotations

import difflib
import math
from typing import Any, Mapping

__all__ = ["AssignmentError", "Table", "describe"]


class AssignmentError(ValueError):
    """The assignment file is wrong; the message names the file and the key."""


class Table:
    """One TOML table being read: remembers which keys were used, to reject the others."""

    def __init__(self, data: Mapping[str, Any], where: str, file: str) -> None:
        self.data, self.where, self.file = data, where, file
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, problem: str) -> AssignmentError:
        return AssignmentError(f"{self.file}: '{self.key(name)}' {problem}")

    def get(self, name: str, kinds: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
            raise self.fail(name, f"is {value!r}, expected {_kind_names(kinds)}")
        if not isinstance(value, kinds):
            raise self.fail(name, f"is {describe(value)}, expected {_kind_names(kinds)}")
        return value

    def number(self, name: str, default: Any = None, *, positive: bool = True,
               integer: bool = False) -> Any:
        value = self.get(name, int if integer else (int, float), default)
        if value is default:
            return default
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(name, f"is {value!r}, expected a finite number")
        if positive and value <= 0:
            raise self.fail(name, f"is {value!r}, expected a number greater than 0")
        if not positive and value < 0:
            raise self.fail(name, f"is {value!r}, expected a number of 0 or more")
        return value

    def choice(self, name: str, options: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in options:
            raise self.fail(name, f"is {value!r}, expected one of {', '.join(options)}")
        return value

    def table(self, name: str) -> "Table":
        value = self.get(name, dict, {})
        return Table(value, self.key(name), self.file)

    def finish(self) -> None:
        """Every key not read is unknown: say which, and what was probably meant."""
        for name in self.data:
            if name not in self.used:
                close = difflib.get_close_matches(name, sorted(self.used), n=1)
                hint = f": did you mean '{close[0]}'?" if close else \
                    f" (known keys here: {', '.join(sorted(self.used))})"
                raise self.fail(name, f"is not a known key{hint}")


def _kind_names(kinds: type | tuple[type, ...]) -> str:
    names = {int: "a number", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a table"}
    seen: list[str] = []
    for k in kinds if isinstance(kinds, tuple) else (kinds,):
        if names.get(k, k.__name__) not in seen:
            seen.append(names.get(k, k.__name__))
    return " or ".join(seen)


def describe(value: Any) -> str:
    """A value as a message shows it: its kind, and its start."""
    kind = {str: "a string", int: "a number", float: "a number", bool: "a boolean",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} ({text[:40]}{'...' if len(text) > 40 else ''})"
