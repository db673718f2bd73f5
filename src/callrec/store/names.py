"""userName planning shared by both stores: a query as ordered ranges of a names index.

Both stores key their names index ``(ccid, name, start_ms, id)``, so the recordings of one
exact name are a range of the index already in the search order, and a page of them is its
first ``limit`` entries however common the name is. Every query is a set of *branches*, each
an ordered range of one exact name:

* one term: one branch;
* OR of terms: one branch per term, merged in order (a recording found twice counts once);
* AND of terms: one branch per group, driven by the group's rarest term and filtered by the
  others. Each index entry carries a 64-bit signature of all the names of its recording (three
  bits per name), so an entry whose recording lacks one of the other names is mostly dropped
  without leaving the index; the few that remain are checked exactly;
* a wildcard term stands for the names it matches in the store's dictionary of names: a
  driver gives a branch per name; another term, a check among the recording's names.

When wildcards stand for too many names to merge, the store's generic plan answers. How the
branches become SQL is each store's own (``pgsearch``, ``sqlitenames``).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

MAX_BRANCHES = 64
"""Most ordered ranges merged by one query; more, and the generic plan answers."""
EXPANSION_LIMIT = 1000
"""Names of the dictionary a wildcard is expanded to at most (more gives the generic plan)."""
BLOOM_OR_MAX = 8
"""A wildcard term standing for at most this many names is also checked in the signature."""
SIGNATURE_BITS = 3
"""Bits a name sets in a recording's 64-bit signature."""


# Agents' names repeat on every call they take: an import asks for the same few thousand.
@functools.lru_cache(maxsize=65536)
def name_bits(name: str) -> int:
    """The bits a (folded) name sets in a signature: bytes of its MD5, modulo 64."""
    digest = hashlib.md5(name.encode(), usedforsecurity=False).digest()
    bits = 0
    for byte in digest[:SIGNATURE_BITS]:
        bits |= 1 << (byte & 63)
    return bits


def signed(bits: int) -> int:
    """A 64-bit pattern as a signed 64-bit SQL integer holds it."""
    return bits - (1 << 64) if bits >> 63 else bits


def signature(names: Iterable[str]) -> int:
    """A recording's signature: the union of its names' bits."""
    bits = 0
    for name in names:
        bits |= name_bits(name)
    return signed(bits)


class NameCounts(Protocol):
    """How many index entries names have (exactly or as estimated), and how many recordings
    there are."""

    @property
    def recordings(self) -> float: ...

    def rows(self, names: Iterable[str]) -> float: ...


@dataclass(frozen=True, slots=True)
class Term:
    """A query term and the exact names it stands for."""

    pattern: str  # folded, as in the query
    names: tuple[str, ...]  # the term itself when exact; the dictionary's matches otherwise
    rows: float = 0.0  # index entries of those names

    @property
    def exact(self) -> bool:
        return "*" not in self.pattern


@dataclass(frozen=True, slots=True)
class Branch:
    """An ordered range of one exact name, kept where the recording also has ``others``."""

    name: str
    others: tuple[Term, ...] = ()
    rows: float = 0.0  # index entries of the range (before any bound or filter)


def signature_filter(others: Sequence[Term]) -> tuple[list[str], list[Any]]:
    """SQL conditions on an entry's signature ``n.sig`` that its recording may have every
    term of ``others``: all exact names' bits, and one of each narrow wildcard's names'."""
    clauses: list[str] = []
    params: list[Any] = []
    mask = 0
    for term in others:
        if term.exact:
            mask |= name_bits(term.pattern)
        elif len(term.names) <= BLOOM_OR_MAX:
            alternatives = [signed(name_bits(name)) for name in term.names]
            clauses.append("(" + " OR ".join(["(n.sig & ?) = ?"] * len(alternatives)) + ")")
            params += [bits for bits in alternatives for _ in (0, 1)]
    if mask:
        clauses.append("(n.sig & ?) = ?")
        params += [signed(mask)] * 2
    return clauses, params


@dataclass(frozen=True, slots=True)
class NamePlan:
    """The branches to merge, or None when the generic plan answers (then ``dense`` says
    whether it should walk in time order)."""

    branches: tuple[Branch, ...] | None
    dense: bool = False

    @property
    def rows(self) -> float:
        """Index entries the branches read at most."""
        return sum(branch.rows for branch in self.branches or ())


def wildcards(user: tuple[tuple[str, ...], ...]) -> list[str]:
    """The query's wildcard terms, each once, in order."""
    return sorted({term for group in user for term in group if "*" in term})


def plan_names(
    user: tuple[tuple[str, ...], ...],
    expanded: dict[str, tuple[str, ...]],
    counts: NameCounts,
    limit: int,
) -> NamePlan:
    groups = [[_term(t, expanded, counts) for t in group] for group in _minimal(user)]
    branches: dict[Branch, None] = {}
    cap = max(1000, math.isqrt(limit * max(int(counts.recordings), 1)))
    dense = False
    for group in groups:
        if any(not term.names for term in group):
            continue  # a term that matches no name: the group matches nothing
        # One term drives: its range is read until the page is full (or to its end).
        driver = rarest(group)
        if len(group) == 1 and driver.rows >= cap:
            dense = True
        if len(driver.names) > EXPANSION_LIMIT:
            return NamePlan(None, dense)  # not every name it stands for is known
        others = tuple(term for term in group if term is not driver)
        for name in driver.names:
            branches[Branch(name, others, counts.rows((name,)))] = None
    # A name that matches alone makes its filtered branches redundant.
    alone = {branch.name for branch in branches if not branch.others}
    kept = tuple(b for b in branches if not b.others or b.name not in alone)
    if len(kept) > MAX_BRANCHES:
        return NamePlan(None, dense)
    return NamePlan(kept)


def _term(pattern: str, expanded: dict[str, tuple[str, ...]], counts: NameCounts) -> Term:
    names = expanded.get(pattern, (pattern,))
    # A wildcard cut at EXPANSION_LIMIT names stands for more entries than can be told.
    rows = math.inf if len(names) > EXPANSION_LIMIT else counts.rows(names)
    return Term(pattern, names, rows)


def rarest(group: Sequence[Term]) -> Term:
    """The term of a group whose ranges are read: the fewest index entries, then the fewest
    names (the first such term when nothing is known)."""
    return min(group, key=lambda term: (term.rows, len(term.names)))


def _minimal(user: tuple[tuple[str, ...], ...]) -> list[tuple[str, ...]]:
    """The groups without those that contain another group's terms (the OR already has it)."""
    sets = [frozenset(group) for group in user]
    return [
        group
        for i, group in enumerate(user)
        if not any(j != i and other < sets[i] for j, other in enumerate(sets))
    ]
