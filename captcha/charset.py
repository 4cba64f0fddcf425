"""The character map: which symbols a model reads, and how labels become class indices."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import ConfigError

DEFAULT_ALPHABET = string.digits + string.ascii_uppercase  # the course's 36 classes


_RANGE = re.compile(r"[0-9]-[0-9]|[A-Z]-[A-Z]|[a-z]-[a-z]")


def spell_out(chars: str) -> str:
    """Characters as a user types them, ranges spelled out: ``0-9A-F`` -> ``0123456789ABCDEF`` (digits, or letters
    of one case, in order); a ``-`` anywhere else (``+-=``, ``-0-9``) is the character itself."""
    def spell(m: re.Match) -> str:
        first, last = m.group()[0], m.group()[2]
        return "".join(map(chr, range(ord(first), ord(last) + 1))) if first < last else m.group()

    return _RANGE.sub(spell, chars)


class CharsetError(ConfigError):
    """A label holds characters the charset cannot represent."""


@dataclass(frozen=True)
class Charset:
    """An ordered alphabet with encode/decode and optional case folding of labels.

    With ``fold_case`` on, labels are folded to the one case the alphabet writes its letters in
    before lookup (``a7k2`` -> ``A7K2`` for the default alphabet, which has no lower case; upper case
    to lower for an alphabet of lower-case letters): real sites mix cases a reader cannot tell apart.
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
            # Fold only when it is lossless: an alphabet whose letters are all of one case.
            object.__setattr__(self, "fold_case", self.alphabet in (self.alphabet.upper(), self.alphabet.lower()))

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

    @property
    def lower_case(self) -> bool:
        """True when the alphabet writes its letters in lower case only (labels fold down, not up)."""
        return self.alphabet == self.alphabet.lower() != self.alphabet.upper()

    def normalize(self, label: str) -> str:
        """Return ``label`` as the charset spells it (folded to the alphabet's case when folding)."""
        if not self.fold_case:
            return label
        return label.lower() if self.lower_case else label.upper()

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


LOWER_ALPHABET = string.digits + string.ascii_lowercase
CASED_ALPHABET = DEFAULT_ALPHABET + string.ascii_lowercase
# Labels are read case-sensitively when each case writes at least this share of their letters: a site that
# draws both cases and labels them so. Below it the few letters of the other case are taken for slips and fold.
CASE_MIXED = 0.2


def for_labels(labels: Iterable[str]) -> Charset:
    """The charset ``labels`` ask for when none is given: the digits and the letters in the case the labels
    write them (upper case when they use none), both cases apart where each writes at least
    :data:`CASE_MIXED` of their letters, plus any other character they use (:func:`covering`)."""
    labels = list(labels)
    upper = sum(c.isascii() and c.isupper() for label in labels for c in label)
    lower = sum(c.isascii() and c.islower() for label in labels for c in label)
    if upper and lower and min(upper, lower) >= CASE_MIXED * (upper + lower):
        base = Charset(CASED_ALPHABET, fold_case=False)
    elif lower > upper:
        base = Charset(LOWER_ALPHABET)
    else:
        base = DEFAULT_CHARSET
    return covering(labels, base)


def covering(labels: Iterable[str], base: Charset = DEFAULT_CHARSET) -> Charset:
    """``base`` plus every other character ``labels`` use, spelled as ``base`` spells labels (in its case
    when it folds), in sorted order after its own: a site whose captchas show ``+`` or ``@`` is read whole."""
    extra = sorted({c for label in labels for c in base.unknown(label)})
    return Charset(base.alphabet + "".join(extra), base.fold_case) if extra else base
