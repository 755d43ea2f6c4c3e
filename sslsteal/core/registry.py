"""The one registry mechanism (VISSL-style decorators): a spec-side declaration per name, torch-free, and the
implementation that the stage module holding it attaches, so validating a YAML never imports torch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")
F = TypeVar("F")


def unknown_name(kind: str, name: object, known: Iterable[str]) -> str:
    """The one message for a name that no registry holds: what was asked for, and every name there is."""
    return f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}"


class Registry(Mapping[str, T], Generic[T]):
    """Maps names to declarations (`@registry.register("name")`); `@registry.implements("name")` attaches the
    code that does the job, and `implementation(name)` returns it. Unknown names fail with `unknown_name`."""

    def __init__(self, kind: str, check_implementation: Callable[[str, T, Any], None] | None = None) -> None:
        """`check_implementation(name, declaration, impl)` raises when an implementation does not fit its declaration."""
        self.kind = kind
        self._check_impl = check_implementation
        self._items: dict[str, T] = {}
        self._impls: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator declaring `name`; a name is declared once."""

        def decorate(item: T) -> T:
            self.add(name, item)
            return item

        return decorate

    def add(self, name: str, item: T) -> None:
        """Declare `name` (the non-decorator form of `register`)."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item

    def implements(self, name: str) -> Callable[[F], F]:
        """Decorator attaching the implementation of a declared name."""

        def decorate(impl: F) -> F:
            if name not in self._items:
                raise KeyError(f"{self.kind} {name!r} is implemented but not declared")
            if name in self._impls:
                raise ValueError(f"{self.kind} {name!r} is implemented twice")
            if self._check_impl is not None:
                self._check_impl(name, self._items[name], impl)
            self._impls[name] = impl
            return impl

        return decorate

    def implementation(self, name: str) -> Any:
        """What `implements` attached to `name` (the implementing module must have been imported); KeyError when unknown."""
        if name not in self._items:
            raise KeyError(unknown_name(self.kind, name, self._items))
        if name not in self._impls:
            raise LookupError(f"{self.kind} {name!r} is declared but its implementation was not imported")
        return self._impls[name]

    def check(self, name: object) -> str:
        """`name` when it is declared; ValueError with the one unknown-name message otherwise (for validators)."""
        if not isinstance(name, str) or name not in self._items:
            raise ValueError(unknown_name(self.kind, name, self._items))
        return name

    def check_all(self, names: Iterable[object]) -> list[str]:
        """`names` without repeats, in order, when every one is declared; ValueError naming the first unknown one."""
        return list(dict.fromkeys(self.check(name) for name in names))

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(unknown_name(self.kind, name, self._items)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
