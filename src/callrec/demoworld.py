"""The demo contact center's population: its agents (common, rare and non-ASCII names, and
the user names a directory gives them), its frequent callers and its service numbers, in the
formats recorders send. It depends only on the contact center's id, so every seed of
``callrec.demo`` sees the same staff and customers."""

from __future__ import annotations

import hashlib
import math
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

_AGENT_COUNT = 2000
_FREQUENT_CALLERS = 300
_SERVICE_NUMBERS = 300
_SIP_CALLER_RATE = 0.02
_EMAIL_DOMAIN = "example.com"

# (weight, first names, last names). Latin names are mostly pre-composed (NFC), as people type.
_CULTURES: tuple[tuple[float, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        55,
        (
            "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda",
            "William", "Elizabeth", "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica",
            "Thomas", "Sarah", "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa",
            "Anthony", "Betty", "Mark", "Sandra", "Steven", "Ashley", "Paul", "Emily", "Andrew",
            "Donna", "Kevin", "Michelle", "Brian", "Carol", "Kim", "Amber", "Alice", "Ann",
            "Bob", "Eve", "Chris", "Pat", "Sam", "Alex", "Jordan", "Taylor", "Mary Jo",
        ),
        (
            "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson",
            "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Thompson",
            "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen",
            "King", "Wright", "Scott", "Green", "Baker", "Adams", "O'Brien", "McDonald",
            "Smith-Jones", "Van der Berg",
        ),
    ),
    (
        8,
        ("Priya", "Rahul", "Ananya", "Arjun", "Sneha", "Vikram", "Deepa", "Sanjay"),
        ("Sharma", "Patel", "Singh", "Iyer", "Reddy", "Gupta", "Nair", "Kumar"),
    ),
    (
        8,
        ("José", "Ana María", "María José", "Jesús", "João", "Iñaki", "Lucía", "Andrés"),
        ("García", "Pérez", "Muñoz", "Gonçalves", "Núñez", "de la Fuente", "Rodríguez"),
    ),
    (
        5,
        ("Jürgen", "Jörg", "Günter", "Lena", "Käthe", "Uwe", "Björn", "Gisela"),
        ("Müller", "Schröder", "Großmann", "Strauß", "Straßer", "Weiß", "Köhler", "Bäcker"),
    ),
    (
        4,
        ("Zoë", "Chloé", "Hélène", "François", "Anaïs", "Noël", "Jean-Luc", "Théo"),
        ("Lefèvre", "Béranger", "Dupré", "Léger", "Gauthier", "Roussel"),
    ),
    (
        3,
        ("Søren", "Ólafur", "Björk", "Åsa", "Þór", "Sigríður", "Mette"),
        ("Sørensen", "Jørgensen", "Þórsson", "Guðmundsdóttir", "Åberg", "Lindqvist"),
    ),
    (
        3,
        ("Łukasz", "Małgorzata", "Wojciech", "Jiří", "Zdeněk", "Agnieszka"),
        ("Wiśniewski", "Kowalczyk", "Dvořák", "Nowak", "Wójcik", "Łuczak"),
    ),
    (
        3,
        ("Ayşe", "Çağla", "Gökhan", "İlker", "Şule", "Emre"),
        ("Yılmaz", "Öztürk", "Çelik", "Şahin", "Doğan"),  # noqa: RUF001 - Turkish dotless i
    ),
    (
        3,
        ("Anh", "Thảo", "Dũng", "Hương", "Minh"),
        ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng"),
    ),
    (2, ("Σοφία", "Γιώργος", "Ελένη", "Νίκος"), ("Παπαδόπουλος", "Οικονόμου", "Γεωργίου")),
    (2, ("Дмитрий", "Анна", "Сергей", "Ольга"), ("Иванов", "Смирнова", "Кузнецов", "Попова")),
    (2, ("伟", "芳", "娜", "秀英", "敏"), ("王", "李", "张", "刘", "陈")),
    (1, ("翔太", "さくら", "健"), ("佐藤", "鈴木", "高橋")),
    (1, ("محمد", "فاطمة", "ليلى"), ("العلي", "حداد")),
)  # fmt: skip

# A few odd usernames every real directory has: they catch over-eager validation and
# case/character handling in the search.
_RARE_AGENTS = (
    ("Kim.Lee@Example.COM", "Kim", "Lee"),
    ("kim.lee+support@example.com", "Kim", "Lee"),
    ("jean-luc_picard@example.com", "Jean-Luc", "Picard"),
    ("o'neil.shaun@example.com", "Shaun", "O'Neil"),
    ("zoë.dupré@example.com", "Zoë", "Dupré"),
    ("x@example.com", "X", "X"),
    ("temp.agent01", "Temp", "Agent"),
    ("DOMAIN\\jsmith", "John", "Smith"),
    ("a.very.long.username.from.the.outsourcing.partner@partner-contact-centre.example.co.uk",
     "Maximilian", "Featherstonehaugh-Wolfeschlegelsteinhausen"),
)  # fmt: skip

# ASCII folds that NFKD does not provide (these letters do not decompose).
_FOLD = str.maketrans(
    {"ß": "ss", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "þ": "th",
     "Þ": "Th", "ð": "d", "Ð": "D", "đ": "d", "Đ": "D", "ı": "i"}  # noqa: RUF001 - folds the dotless i
)  # fmt: skip

_US_AREA_CODES = (
    "650", "415", "408", "510", "212", "646", "617", "312", "773", "206", "303", "512",
    "213", "310", "702", "602", "404", "305", "214", "713", "503", "416", "604", "647",
)  # fmt: skip
_TOLL_FREE = ("800", "888", "877", "866", "855")
_SIP_HOSTS = ("pbx.example.com", "sip.example.net", "voip.example.org", "sbc.example.com")


@dataclass(frozen=True, slots=True)
class World:
    """The population of one contact center: who calls, who answers, which lines exist."""

    agents: list[tuple[str, str, str, str]]  # (phoneNumber, userName, firstName, lastName)
    people: list[tuple[str, str]]  # (firstName, lastName) pairs, for SIP caller names
    agent_cum: list[float]
    agent_total: float
    callers: list[str]
    caller_cum: list[float]
    caller_total: float
    dialed: list[str]
    dialed_cum: list[float]
    dialed_total: float


def _zipf_cum(n: int, exponent: float, offset: float) -> tuple[list[float], float]:
    """Cumulative Zipf-like weights (rank k gets 1 / (k + offset) ** exponent) and their total.

    Sample with ``bisect_right(cum, random() * total)``. The last entry is +inf rather than the
    total, so a product that rounds up to the total still lands on the last rank.
    """
    cum = list(accumulate(1.0 / (k + offset) ** exponent for k in range(1, n + 1)))
    total, cum[-1] = cum[-1], math.inf
    return cum, total


def _ascii_slug(name: str) -> str:
    """Fold a name to lowercase ASCII letters for usernames; '' for non-Latin scripts."""
    folded = unicodedata.normalize("NFKD", name.translate(_FOLD))
    return "".join(c for c in folded.lower() if c.isascii() and c.isalnum())


def _digits(r: Callable[[], float], n: int) -> str:
    """n random decimal digits (leading zeros allowed)."""
    return f"{int(r() * 10**n):0{n}d}"


def _us_parts(r: Callable[[], float]) -> tuple[str, str, str]:
    """A plausible North-American number: area code, exchange (never 0/1-led), line."""
    area = _US_AREA_CODES[int(r() * len(_US_AREA_CODES))]
    return area, str(200 + int(r() * 800)), _digits(r, 4)


def _international(r: Callable[[], float]) -> str:
    """An international number as humans write them (spaces, dashes), several countries."""
    k = int(r() * 8)
    if k == 0:
        return f"+44 20 7946 {_digits(r, 4)}"  # London, Ofcom drama range
    if k == 1:
        return f"+44 7700 900{_digits(r, 3)}"  # UK mobile, Ofcom drama range
    if k == 2:
        return f"+49 30 {_digits(r, 7)}"
    if k == 3:
        return f"+33 1 {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)}"
    if k == 4:
        return f"+91 98{_digits(r, 3)} {_digits(r, 5)}"
    if k == 5:
        return f"+52 55 {_digits(r, 4)} {_digits(r, 4)}"
    if k == 6:
        return f"+81 3-{_digits(r, 4)}-{_digits(r, 4)}"
    return f"+4930{_digits(r, 7)}"  # E.164 without spaces


def _short_internal(r: Callable[[], float]) -> str:
    """A short internal number like the recorder example's '8522001'."""
    return f"85{_digits(r, 5)}"


def _sip_caller(r: Callable[[], float], people: list[tuple[str, str]]) -> str:
    """A SIP URI (letters in the ANI) or, rarely, a withheld caller id."""
    x = r()
    if x < 0.1:
        return "anonymous"
    first, last = people[int(r() * len(people))]
    user = f"{_ascii_slug(first)}.{_ascii_slug(last)}".strip(".") or f"user{_digits(r, 4)}"
    if x < 0.2:
        user = f"+1{''.join(_us_parts(r))}"
    return f"sip:{user}@{_SIP_HOSTS[int(r() * len(_SIP_HOSTS))]}"


def caller(r: Callable[[], float], people: list[tuple[str, str]]) -> str:
    """One caller number (ANI) in the mix of formats recorders send."""
    x = r()
    if x < 0.40:
        a, e, n = _us_parts(r)
        return f"+1{a}{e}{n}"
    if x < 0.58:
        a, e, n = _us_parts(r)
        return f"1{a}{e}{n}"
    if x < 0.70:
        a, e, n = _us_parts(r)
        return f"({a}) {e}-{n}"
    if x < 0.73:
        a, e, n = _us_parts(r)
        return f"{a}.{e}.{n}" if x < 0.715 else f"+1 {a}-{e}-{n}"
    if x < 0.85:
        return _international(r)
    if x < 1.0 - _SIP_CALLER_RATE:
        return _short_internal(r)
    return _sip_caller(r, people)


def _service_number(r: Callable[[], float]) -> str:
    """A contact-center service line (DNIS) in one of a few formats."""
    x = r()
    if x < 0.55:
        a, _, n = _us_parts(r)
        return f"+1{a}555{n}"
    if x < 0.75:
        return f"1{_TOLL_FREE[int(r() * len(_TOLL_FREE))]}555{_digits(r, 4)}"
    if x < 0.85:
        a, _, n = _us_parts(r)
        return f"{a}555{n}"
    if x < 0.95:
        return f"+44207946{_digits(r, 4)}"
    return f"+1416000{_digits(r, 4)}"


def _pick_name(rng: random.Random, cum: list[float], mixed: bool) -> tuple[str, str]:
    """A (first, last) pair, usually from one culture; ``mixed`` pairs across cultures."""
    first_culture = rng.choices(_CULTURES, cum_weights=cum)[0]
    last_culture = rng.choices(_CULTURES, cum_weights=cum)[0] if mixed else first_culture
    return rng.choice(first_culture[1]), rng.choice(last_culture[2])


@lru_cache(maxsize=16)
def world(ccid: str) -> World:
    """Build (once per contact center) its agents, frequent callers and service numbers."""
    digest = hashlib.blake2b(f"world\0{ccid}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    r = rng.random
    culture_cum = list(accumulate(c[0] for c in _CULTURES))

    agents: list[tuple[str, str, str, str]] = []
    seen: set[str] = set()
    people: list[tuple[str, str]] = []
    for k in range(_AGENT_COUNT):
        first, last = _pick_name(rng, culture_cum, mixed=r() < 0.1)
        people.append((first, last))
        ext = str(6000 + k)
        slug_first, slug_last = _ascii_slug(first), _ascii_slug(last)
        style = r()
        if not (slug_first and slug_last) or style < 0.04:
            base = f"agent{ext}"  # non-Latin names get the directory's fallback id
        elif style < 0.88:
            base = f"{slug_first}.{slug_last}"
        else:
            base = f"{slug_first[0]}{slug_last}"
        user, n = base, 1
        while user in seen:  # namesakes get a number, as in any real directory
            n += 1
            user = f"{base}{n}"
        seen.add(user)
        if not user.startswith("agent"):
            user = f"{user}@{_EMAIL_DOMAIN}"
        where = r()
        if where < 0.6:
            phone = ext
        elif where < 0.85:
            phone = f"+1416000{ext}"
        else:
            phone = f"sip:{ext}@{_SIP_HOSTS[0]}"
        agents.append((phone, user, first, last))
    # Rare agents sit deep in the tail so they appear, but seldom.
    for j, (user, first, last) in enumerate(_RARE_AGENTS):
        pos = 400 + j * 150
        phone = str(6000 + pos)
        agents[pos] = (phone, user, first, last)

    callers = [caller(r, people) for _ in range(_FREQUENT_CALLERS)]
    dialed = list(dict.fromkeys(_service_number(r) for _ in range(_SERVICE_NUMBERS)))
    agent_cum, agent_total = _zipf_cum(len(agents), 0.9, 20.0)
    caller_cum, caller_total = _zipf_cum(len(callers), 1.0, 0.0)
    dialed_cum, dialed_total = _zipf_cum(len(dialed), 1.1, 1.0)
    return World(
        agents, people, agent_cum, agent_total, callers, caller_cum, caller_total,
        dialed, dialed_cum, dialed_total,
    )  # fmt: skip
