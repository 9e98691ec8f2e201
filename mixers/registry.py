"""A name -> plug-in table, one per kind of plug-in (mixers, blocks, activations, datasets, recipes).

Unknown names raise with the list of known ones and the closest match; registering a name twice raises.
This module imports nothing heavy (no torch), so the study runner and the dataset registry can use it cheaply.
A registry may be given `plugins`, a function that imports the modules which register its entries: it runs on
first use, so importing the registry alone stays cheap.
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, known: list[str]) -> str:
    """A ' (did you mean ...?)' hint for a misspelt name, or ''."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, plugins: Callable[[], object] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._plugins = plugins

    @property
    def entries(self) -> dict[str, T]:
        if self._plugins is not None:
            plugins, self._plugins = self._plugins, None  # cleared first: the plugins register through here
            plugins()
        return self._entries

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@MIXERS.register("dwconv")` on a class or factory."""
        def add(obj: T) -> T:
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is already registered (by {self.entries[name]!r})")
            self.entries[name] = obj
            return obj
        return add

    def get(self, name: str) -> T:
        try:
            return self.entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        known = self.names()
        return f"unknown {self.kind} {name!r}{did_you_mean(str(name), known)}; known: {', '.join(known)}"

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.entries)
