"""The character map: which symbols a model reads, and how labels become class indices."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import ConfigError

DEFAULT_ALPHABET = string.digits + string.ascii_uppercase  # the course's 36 classes


class CharsetError(ConfigError):
    """A label holds characters the charset cannot represent."""


@dataclass(frozen=True)
class Charset:
    """An ordered alphabet with encode/decode and optional case folding of labels.

    With ``fold_case`` on, labels are upper-cased before lookup (``a7k2`` -> ``A7K2``): the
    default alphabet has no lower case, and real sites mix cases that a reader cannot tell apart.
    """

    alphabet: str = DEFAULT_ALPHABET
    fold_case: bool | None = None

    def __post_init__(self) -> None:
        if not self.alphabet:
            raise CharsetError("a charset needs at least one character")
        dupes = sorted({c for c in self.alphabet if self.alphabet.count(c) > 1})
        if dupes:
            raise CharsetError(f"charset {self.alphabet!r} repeats {''.join(dupes)!r}; list each character once")
        if self.fold_case is None:
            # Fold only when it is lossless: an alphabet with no lower-case letters.
            object.__setattr__(self, "fold_case", self.alphabet == self.alphabet.upper())

    def __len__(self) -> int:
        return len(self.alphabet)

    def __contains__(self, char: object) -> bool:
        return isinstance(char, str) and len(char) == 1 and self.normalize(char) in self._index

    @property
    def _index(self) -> dict[str, int]:
        # Built lazily and cached on the frozen instance.
        cache = self.__dict__.get("_index_cache")
        if cache is None:
            cache = {c: i for i, c in enumerate(self.alphabet)}
            object.__setattr__(self, "_index_cache", cache)
        return cache

    def normalize(self, label: str) -> str:
        """Return ``label`` as the charset spells it (upper-cased when folding)."""
        return label.upper() if self.fold_case else label

    def unknown(self, label: str) -> list[str]:
        """Characters of ``label`` that are not in the charset, in order of first appearance."""
        seen: list[str] = []
        for c in self.normalize(label):
            if c not in self._index and c not in seen:
                seen.append(c)
        return seen

    def validate(self, label: str) -> str:
        """Normalise ``label`` and raise :class:`CharsetError` naming every unknown character."""
        bad = self.unknown(label)
        if bad:
            names = ", ".join(repr(c) for c in bad)
            raise CharsetError(
                f"label {label!r} has characters not in the charset {self.alphabet!r}: {names}; "
                "fix the label or train with a charset that includes them (--charset)"
            )
        return self.normalize(label)

    def encode(self, label: str) -> list[int]:
        """Turn a label into class indices."""
        norm = self.validate(label)
        return [self._index[c] for c in norm]

    def decode(self, indices: Iterable[int]) -> str:
        """Turn class indices back into a string."""
        out = []
        for i in indices:
            i = int(i)
            if not 0 <= i < len(self.alphabet):
                raise IndexError(f"class index {i} out of range for a {len(self.alphabet)}-character charset")
            out.append(self.alphabet[i])
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict for checkpoints and JSON."""
        return {"alphabet": self.alphabet, "fold_case": bool(self.fold_case)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Charset":
        """Rebuild a charset written by :meth:`to_dict`."""
        try:
            return cls(alphabet=str(data["alphabet"]), fold_case=bool(data["fold_case"]))
        except (KeyError, TypeError) as exc:
            raise CharsetError(f"not a charset description: {data!r} (needs 'alphabet' and 'fold_case')") from exc


DEFAULT_CHARSET = Charset()


def covering(labels: Iterable[str], base: Charset = DEFAULT_CHARSET) -> Charset:
    """``base`` plus every other character ``labels`` use, spelled as ``base`` spells labels (upper case
    when it folds), in sorted order after its own: a site whose captchas show ``+`` or ``@`` is read whole."""
    extra = sorted({c for label in labels for c in base.unknown(label)})
    return Charset(base.alphabet + "".join(extra), base.fold_case) if extra else base
