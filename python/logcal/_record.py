"""The result records of logcal: immutable, attribute access, and read-only mappings."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from ._arrays import dtype_name

__all__ = ["Record"]


class Record(Mapping):
    """An immutable record of named results; also a read-only mapping of the fields it has.

    Subclasses list their fields in ``_FIELDS`` and, for fields that exist only when an
    argument is given, the hint ``_OPTIONAL[field]`` naming that argument.
    """

    __slots__ = ("_fields",)
    _FIELDS: ClassVar[tuple] = ()
    _OPTIONAL: ClassVar[dict] = {}

    def __init__(self, **fields: Any) -> None:
        name = type(self).__name__
        unknown = set(fields) - set(self._FIELDS)
        if unknown:
            raise TypeError(f"unknown {name} fields: {sorted(unknown)}")
        object.__setattr__(self, "_fields", {k: fields[k] for k in self._FIELDS if k in fields})

    def __getattr__(self, name: str) -> Any:
        fields = object.__getattribute__(self, "_fields")
        if name in fields:
            return fields[name]
        raise AttributeError(self._missing(name))

    def _missing(self, name: str) -> str:
        """The message for reading a field this record does not have."""
        cls = type(self).__name__
        if name in self._OPTIONAL:
            return f"{cls} has no {name}: {self._OPTIONAL[name]}"
        return f"{cls} has no field {name!r}"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        parts = []
        for k, v in self._fields.items():
            if hasattr(v, "shape") and hasattr(v, "dtype"):
                parts.append(f"{k}: {dtype_name(v.dtype)}{list(v.shape)}")
            else:
                parts.append(f"{k}: {v!r}")
        return f"{type(self).__name__}(" + ", ".join(parts) + ")"
