"""The result records of logcal: immutable, attribute access, read-only mappings; they pickle
and copy like any value (so ``multiprocessing`` can return them)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from ._arrays import dtype_name

__all__ = ["Record"]


class Record(Mapping):
    """An immutable record of named results; also a read-only mapping of the fields it has.

    Subclasses list their fields in ``_FIELDS`` (and annotate them, for editors and type
    checkers) and, for fields that exist only when an argument is given, the hint
    ``_OPTIONAL[field]`` naming that argument.
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

    def __reduce__(self) -> tuple:
        # Rebuilt through __init__ from its fields: the immutable __setattr__ is never asked.
        return (_rebuild, (type(self), self._fields))

    def __copy__(self) -> Record:
        return self  # immutable: a copy may be the record itself

    def __deepcopy__(self, memo: dict) -> Record:
        from copy import deepcopy

        return type(self)(**deepcopy(self._fields, memo))

    def __eq__(self, other: object) -> bool:
        # Same type and fields, arrays equal element by element (NaN equal to NaN).
        if type(other) is not type(self) or self.keys() != other.keys():
            return False
        return all(_same(self[k], other[k]) for k in self)

    __hash__ = None  # type: ignore[assignment] - holds arrays

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


def _rebuild(cls: type, fields: dict) -> Record:
    return cls(**fields)


def _same(a: Any, b: Any) -> bool:
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        import numpy as np

        def host(x: Any) -> Any:
            return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

        x, y = host(a), host(b)
        return x.shape == y.shape and bool(np.array_equal(x, y, equal_nan=x.dtype.kind == "f"))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN statistics (e.g. an AUROC with one class) are equal to themselves
    return bool(a == b)
