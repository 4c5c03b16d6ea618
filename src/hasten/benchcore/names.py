"""Contender names: ``NAME@VARIANT`` parsed once into a :class:`Contender`.

Every bench names what it runs the same way: a method or peer name, optionally followed by
``@`` and a *variant* (a dtype such as ``bfloat16``, a backend such as ``llamacpp``, a
model size...). Parse the text once at the command line's edge; pass the dataclass on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Contender"]


@dataclass(frozen=True)
class Contender:
    """One contender's name: ``base`` (method or peer) and ``variant`` (None = the run's default).

    Example::

        >>> c = Contender.parse("trie@bf16", normalize=lambda v: {"bf16": "bfloat16"}.get(v, v))
        >>> c.base, c.variant, c.name
        ('trie', 'bfloat16', 'trie@bfloat16')
        >>> Contender.parse("ar").name, Contender.parse("ar").baseline("ar").name
        ('ar', 'ar')
        >>> Contender.parse("trie@bfloat16").baseline("ar").name
        'ar@bfloat16'

    Raises:
        ValueError: an empty base or an empty variant after ``@`` (``"trie@"``).
    """

    base: str
    variant: str | None = None

    def __post_init__(self) -> None:
        if not self.base or "@" in self.base:
            raise ValueError(f"bad contender name {self.base!r}: expected NAME or NAME@VARIANT")
        if self.variant is not None and not self.variant:
            raise ValueError(f"bad contender name {self.base + '@'!r}: empty variant after '@'")

    @classmethod
    def parse(cls, text: str, normalize: Callable[[str], str] | None = None) -> Contender:
        """``"NAME"`` or ``"NAME@VARIANT"``; ``normalize`` maps the variant to its canonical
        spelling (and raises ``ValueError`` for an unknown one)."""
        base, at, variant = text.partition("@")
        if not at:
            return cls(base)
        if not variant:
            raise ValueError(f"bad contender name {text!r}: empty variant after '@'")
        return cls(base, normalize(variant) if normalize is not None else variant)

    @property
    def name(self) -> str:
        """The canonical text: ``base`` or ``base@variant``."""
        return self.base if self.variant is None else f"{self.base}@{self.variant}"

    def baseline(self, base: str) -> Contender:
        """The contender this one is compared against: ``base`` in the same variant."""
        return Contender(base, self.variant)

    def __str__(self) -> str:
        return self.name
