"""A tiny name -> component registry with decorator registration (VISSL style)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


def unknown_name(kind: str, name: object, known: Iterable[str]) -> str:
    """The one message for a name that no registry holds: what was asked for, and every name there is."""
    return f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}"


class Registry(Mapping[str, T], Generic[T]):
    """Maps names to components; `@registry.register("name")` adds one, lookups of unknown names fail clearly."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorate

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(unknown_name(self.kind, name, self._items)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
