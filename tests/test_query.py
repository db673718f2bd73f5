"""Unit and property tests for callrec.query, the search semantics of SPEC §3."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import unicodedata
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callrec.errors import InvalidParameter, MissingParameter
from callrec.query import (
    MAX_INSTANT_MS,
    MAX_PARAMETER_LENGTH,
    MIN_INSTANT_MS,
    QUERY_PARAMETERS,
    RecordingQuery,
    canonical_instant,
    fold_name,
    format_instant,
    matches,
    normalise_phone,
    parse_instant,
    parse_phone_pattern,
    parse_query,
    parse_user_query,
    recording_names,
    to_glob,
    user_query_matches,
    wildcard_match,
)

PROPERTY = settings(max_examples=300, deadline=None)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_of(dt: datetime) -> int:
    """Independent reference: epoch ms of an aware datetime, via timedelta arithmetic."""
    return (dt - EPOCH) // timedelta(milliseconds=1)


def recording(
    *,
    caller: str | None = "+16504668888",
    dialed: str | None = "+14155550100",
    start: Any = "2013-05-17T19:45:32.000+0000",
    stop: Any = "2013-05-17T19:50:00.000+0000",
    contacts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "call-1", "region": "us"}
    if caller is not None:
        doc["callerPhoneNumber"] = caller
    if dialed is not None:
        doc["dialedPhoneNumber"] = dialed
    if start is not None:
        doc["startTime"] = start
    if stop is not None:
        doc["stopTime"] = stop
    if contacts is None:
        contacts = [
            {"type": "Agent", "userName": "alice.a", "firstName": "Alice", "lastName": "Amber"},
            {"type": "External", "phoneNumber": "+16504668888"},
        ]
    doc["eventHistory"] = [
        {"occurredAt": "2013-05-17T19:45:32.000+0000", "event": "Joined", "contact": contact}
        for contact in contacts
    ]
    return doc


# =============================================================================== constants


def test_query_parameters_are_the_five_of_spec() -> None:
    assert QUERY_PARAMETERS == (
        "callerPhoneNumber",
        "dialedPhoneNumber",
        "startTime",
        "endTime",
        "userName",
    )
    assert MAX_PARAMETER_LENGTH == 1024


def test_instant_bounds_are_years_1_and_9999() -> None:
    assert ms_of(datetime(1, 1, 1, tzinfo=UTC)) == MIN_INSTANT_MS
    assert ms_of(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)) == MAX_INSTANT_MS


# =============================================================================== phones


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (650) 466-8888", "16504668888"),
        ("+16504668888", "16504668888"),
        ("16504668888", "16504668888"),
        ("sip:Alice@x", "sipAlicex"),
        ("SIP:alice@X.example", "SIPaliceXexample"),
        ("", ""),
        ("()-+ ", ""),
        ("*123*", "123"),  # stored numbers have no wildcard
        ("\u0661\u0662\u0663", ""),  # Arabic-Indic digits are not ASCII
        ("\uff11\uff12\uff13", ""),  # fullwidth digits neither
        ("Ünïcode 42", "ncode42"),
        ("tel:+1-650-466-8888;ext=12", "tel16504668888ext12"),
    ],
)
def test_normalise_phone(raw: str, expected: str) -> None:
    assert normalise_phone(raw) == expected


@given(st.text())
@PROPERTY
def test_normalise_phone_keeps_exactly_ascii_alphanumerics(raw: str) -> None:
    out = normalise_phone(raw)
    assert out == "".join(ch for ch in raw if ch.isascii() and ch.isalnum())
    assert normalise_phone(out) == out


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (650) 466-8888", "16504668888"),
        ("*4668*", "*4668*"),
        ("1650*", "1650*"),
        ("*8888", "*8888"),
        ("*", "*"),
        ("**", "*"),
        ("***", "*"),
        ("1**2***3", "1*2*3"),
        ("* *", "*"),  # the space goes, then the stars are adjacent
        ("*-*-*", "*"),
        ("+1 * 650", "1*650"),
        ("sip:Alice@x*", "sipAlicex*"),
        ("  4668  ", "4668"),
    ],
)
def test_parse_phone_pattern(raw: str, expected: str) -> None:
    assert parse_phone_pattern(raw, "callerPhoneNumber") == expected


@pytest.mark.parametrize(
    "raw", ["", " ", "()-+", "+ ( ) -", "\u0661\u0662\u0663", "\uff11\uff12\uff13", "\t\n", "ü"]
)
def test_parse_phone_pattern_rejects_values_that_normalise_to_nothing(raw: str) -> None:
    with pytest.raises(InvalidParameter, match="dialedPhoneNumber") as info:
        parse_phone_pattern(raw, "dialedPhoneNumber")
    assert info.value.status_code == 2
    assert info.value.http_status == 400


@given(st.text())
@PROPERTY
def test_parse_phone_pattern_output_shape(raw: str) -> None:
    try:
        pattern = parse_phone_pattern(raw, "callerPhoneNumber")
    except InvalidParameter:
        assert not re.sub(r"[^A-Za-z0-9*]", "", raw)
        return
    assert pattern
    assert re.fullmatch(r"[A-Za-z0-9*]+", pattern)
    assert "**" not in pattern
    assert parse_phone_pattern(pattern, "callerPhoneNumber") == pattern


@pytest.mark.parametrize(
    ("request_value", "found"),
    [
        ("+1 (650) 466-8888", True),
        ("+16504668888", True),
        ("16504668888", True),
        ("*4668*", True),
        ("1650*", True),
        ("*8888", True),
        ("*", True),
        ("1*6*5*0*4*6*6*8*8*8*8", True),
        ("*1*6*5*0*4*6*6*8*8*8*8*", True),
        ("16504668888*", True),
        ("*16504668888", True),
        ("**4668**", True),
        ("4668", False),
        ("1650", False),
        ("8888", False),
        ("*46689*", False),
        ("165046688888", False),
        ("16504668888*8", False),
        ("2650*", False),
    ],
)
def test_spec_phone_examples(request_value: str, found: bool) -> None:
    stored = "+16504668888"
    pattern = parse_phone_pattern(request_value, "callerPhoneNumber")
    assert wildcard_match(pattern, normalise_phone(stored)) is found
    query = parse_query({"callerPhoneNumber": request_value})
    assert matches(query, recording(caller=stored)) is found


@pytest.mark.parametrize(
    ("request_value", "found"),
    [
        ("sip:Alice@x", True),
        ("sipAlice*", True),
        ("*Alice*", True),
        ("sip:alice@x", False),
        ("SIP:Alice@x", False),
        ("*alice*", False),
        ("sip:Alice@X", False),
    ],
)
def test_phone_matching_is_case_sensitive(request_value: str, found: bool) -> None:
    query = parse_query({"dialedPhoneNumber": request_value})
    assert matches(query, recording(dialed="sip:Alice@x")) is found


# =============================================================================== wildcards


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("", "", True),
        ("", "a", False),
        ("*", "", True),
        ("*", "anything at all", True),
        ("**", "", True),
        ("***", "xyz", True),
        ("a", "a", True),
        ("a", "A", False),
        ("A", "a", False),
        ("a", "ab", False),
        ("ab", "a", False),
        ("a*", "a", True),
        ("a*", "abc", True),
        ("a*", "ba", False),
        ("*a", "ba", True),
        ("*a", "ab", False),
        ("*a*", "bab", True),
        ("*a*", "bbb", False),
        ("a*b", "ab", True),
        ("a*b", "axxb", True),
        ("a*b", "axxbx", False),
        ("a**b", "ab", True),
        ("a***b", "a*b", True),
        ("ab*ba", "aba", False),  # prefix and suffix must not overlap
        ("ab*ba", "abba", True),
        ("ab*ba", "abxba", True),
        ("a*a*a", "aa", False),
        ("a*a*a", "aaa", True),
        ("*aa*aa*", "aaa", False),
        ("*aa*aa*", "aaaa", True),
        ("*ab*ab*", "abab", True),
        ("*ab*ab*", "aabb", False),
        ("*abc*abd*", "abcabcabd", True),
        ("*ss*", "mississippi", True),
        ("m*ss*pi", "mississippi", True),
        ("m*ss*ss*ss*pi", "mississippi", False),
        ("*a*b*c*", "cba", False),
        ("*a*b*c*", "xaybzc", True),
        ("?", "x", False),  # only '*' is special
        ("?", "?", True),
        (".*", "abc", False),
        (".*", ".anything", True),
        ("[a]", "a", False),
        ("[a]", "[a]", True),
        ("a\\*", "a\\", True),  # a backslash does not escape
        ("a\\*", "a*", False),
        ("^a$", "^a$", True),
        ("*\n*", "x\ny", True),
        ("élodie", "e\u0301lodie", False),  # no normalisation: the caller folds first
        ("王*", "王小明", True),
        ("*小*", "王小明", True),
        ("*小", "王小明", False),
        ("*", "*", True),
        ("a*", "a*", True),
    ],
)
def test_wildcard_match(pattern: str, value: str, expected: bool) -> None:
    assert wildcard_match(pattern, value) is expected


def test_wildcard_match_has_no_catastrophic_backtracking() -> None:
    # Exponential for a naive backtracking matcher; must return at once here.
    value = "a" * 20_000
    assert not wildcard_match("*a" * 200 + "*b", value)
    assert not wildcard_match("*" + "a*" * 200 + "b*", value)
    assert wildcard_match("*" + "a*" * 200, value)
    assert not wildcard_match("*" + "aaaaaaaaab*" * 50, value)


def reference_fullmatch(pattern: str, value: str) -> bool:
    """Independent reference: a regex built from escaped pieces joined by '.*'."""
    regex = ".*".join(re.escape(piece) for piece in pattern.split("*"))
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


# Characters that are special to regexes, GLOB or this module, and a few Unicode ones.
META_ALPHABET = st.sampled_from(
    ["a", "b", "A", "*", "?", "[", "]", "^", "-", ".", "\\", "$", "\n", "é", "e", "\u0301", "日"]
)
# codec="utf-8" leaves out lone surrogates, which neither SQLite nor a URL can carry.
ANY_CHAR = st.characters(codec="utf-8", exclude_characters="\x00")
MIXED_CHAR = st.one_of(META_ALPHABET, META_ALPHABET, ANY_CHAR)


@st.composite
def pattern_and_value(draw: st.DrawFn) -> tuple[str, str]:
    """Random pattern/value pairs, half of them built to match (or nearly)."""
    value = draw(st.text(MIXED_CHAR, max_size=20))
    if draw(st.booleans()):
        return draw(st.text(MIXED_CHAR, max_size=12)), value
    # Derive the pattern from the value: replace random slices with '*', maybe mutate.
    chars = list(value)
    for _ in range(draw(st.integers(0, 4))):
        if not chars:
            break
        i = draw(st.integers(0, len(chars) - 1))
        j = draw(st.integers(i, len(chars)))
        chars[i:j] = ["*"]
    if draw(st.booleans()) and chars:
        chars[draw(st.integers(0, len(chars) - 1))] = draw(MIXED_CHAR)
    return "".join(chars), value


@given(pattern_and_value())
@PROPERTY
def test_wildcard_match_agrees_with_regex_reference(pair: tuple[str, str]) -> None:
    pattern, value = pair
    assert wildcard_match(pattern, value) == reference_fullmatch(pattern, value)


@given(st.text(MIXED_CHAR, max_size=20), st.data())
@PROPERTY
def test_value_with_slices_starred_always_matches(value: str, data: st.DataObject) -> None:
    chars = list(value)
    for _ in range(data.draw(st.integers(0, 5))):
        i = data.draw(st.integers(0, len(chars)))
        j = data.draw(st.integers(i, len(chars)))
        chars[i:j] = ["*"]
    assert wildcard_match("".join(chars), value)


@given(pattern_and_value())
@PROPERTY
def test_collapsing_star_runs_does_not_change_matching(pair: tuple[str, str]) -> None:
    pattern, value = pair
    collapsed = re.sub(r"\*+", "*", pattern)
    assert wildcard_match(collapsed, value) == wildcard_match(pattern, value)


# =============================================================================== GLOB


@pytest.fixture(scope="module")
def sql() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    yield connection
    connection.close()


def glob(connection: sqlite3.Connection, value: str, pattern: str) -> bool:
    row = connection.execute("SELECT ? GLOB ?", (value, pattern)).fetchone()
    return bool(row[0])


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("", ""),
        ("*", "*"),
        ("a*b", "a*b"),
        ("?", "[?]"),
        ("[", "[[]"),
        ("]", "]"),
        ("[a]", "[[]a]"),
        ("[?]", "[[][?]]"),
        ("a?b*[c]^-d", "a[?]b*[[]c]^-d"),
        ("王*ß", "王*ß"),
    ],
)
def test_to_glob(pattern: str, expected: str) -> None:
    assert to_glob(pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("?", "?", True),
        ("?", "x", False),
        ("[a]", "[a]", True),
        ("[a]", "a", False),
        ("[!a]", "[!a]", True),
        ("[!a]", "b", False),
        ("[^a]", "[^a]", True),
        ("]", "]", True),
        ("a-z", "a-z", True),
        ("a-z", "b", False),
        ("*?*", "x?y", True),
        ("*?*", "xy", False),
        ("ALICE", "alice", False),  # GLOB is case-sensitive, like wildcard_match
        ("ß*", "ßtraße", True),
        ("*ß", "strasse", False),
    ],
)
def test_to_glob_in_sqlite(
    sql: sqlite3.Connection, pattern: str, value: str, expected: bool
) -> None:
    assert wildcard_match(pattern, value) is expected
    assert glob(sql, value, to_glob(pattern)) is expected


@given(pattern_and_value())
@PROPERTY
def test_to_glob_agrees_with_wildcard_match_in_sqlite(
    sql: sqlite3.Connection, pair: tuple[str, str]
) -> None:
    pattern, value = pair
    assert glob(sql, value, to_glob(pattern)) == wildcard_match(pattern, value)


@given(st.text(ANY_CHAR, max_size=15), st.text(ANY_CHAR, max_size=15))
@PROPERTY
def test_to_glob_agrees_on_arbitrary_unicode(
    sql: sqlite3.Connection, pattern: str, value: str
) -> None:
    assert glob(sql, value, to_glob(pattern)) == wildcard_match(pattern, value)
    # And a value always matches itself once turned into a GLOB literal (no '*' inside).
    literal = value.replace("*", "")
    assert glob(sql, literal, to_glob(literal))


# =============================================================================== names


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("STRASSE", "straße"),
        ("Straße", "STRASSE"),
        ("ÉLODIE", "élodie"),
        ("E\u0301LODIE", "élodie"),  # NFD upper vs NFC lower
        ("e\u0301lodie", "\u00e9lodie"),  # NFD vs NFC
        ("ΣΊΣΥΦΟΣ", "σίσυφος"),  # Greek, final sigma
        ("ΟΔΥΣΣΕΥΣ", "οδυσσευς"),
        ("\u0390", "\u0399\u0308\u0301"),  # ΐ vs capital iota + diaeresis + acute
        ("ΐ", "ΐ".upper()),
        ("ǅ", "ǆ"),  # titlecase digraph
        ("Ǆ", "ǆ"),
        ("ﬁ", "FI"),  # ligature folds to its letters
        ("\u017f", "S"),  # long s
        ("ÅNGSTRÖM", "ångström"),
        ("\u212bngstr\u00f6m", "ångström"),  # Angstrom sign is canonically Å
        ("ИВАН", "иван"),
        ("İSTANBUL", "i\u0307stanbul"),  # dotted capital I keeps its dot, consistently
        ("ISTANBUL", "istanbul"),
        ("王小明", "王小明"),
        (
            "\uff21\uff2c\uff29\uff23\uff25",
            "\uff41\uff4c\uff49\uff43\uff45",
        ),  # fullwidth stays fullwidth, case-folded
    ],
)
def test_fold_name_equates(a: str, b: str) -> None:
    assert fold_name(a) == fold_name(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ISTANBUL", "\u0131stanbul"),  # dotless i is its own letter under casefold
        ("İstanbul", "istanbul"),  # dotted capital I folds to i + U+0307
        ("\uff21\uff2c\uff29\uff23\uff25", "alice"),  # no compatibility folding
        ("élodie", "elodie"),  # accents matter
        ("王小明", "王小朋"),
    ],
)
def test_fold_name_distinguishes(a: str, b: str) -> None:
    assert fold_name(a) != fold_name(b)


def test_fold_name_values() -> None:
    assert fold_name("STRASSE") == "strasse"
    assert fold_name("straße") == "strasse"
    assert fold_name("ÉLODIE") == "\u00e9lodie"
    assert fold_name("E\u0301LODIE") == "\u00e9lodie"
    assert fold_name("İ") == "i\u0307"
    assert fold_name("\u0131") == "\u0131"
    assert fold_name("") == ""


@given(st.text(ANY_CHAR))
@PROPERTY
def test_fold_name_properties(name: str) -> None:
    folded = fold_name(name)
    assert fold_name(folded) == folded  # idempotent: stored names can be refolded
    assert unicodedata.is_normalized("NFC", folded)
    assert fold_name(unicodedata.normalize("NFD", name)) == folded
    assert fold_name(unicodedata.normalize("NFC", name)) == folded
    assert fold_name(name.lower()) == folded
    # Upper-casing loses information for exactly one letter: dotless i becomes I.
    if "\u0131" not in name:
        assert fold_name(name.upper()) == folded


@given(st.text(st.one_of(st.characters(max_codepoint=127), ANY_CHAR)))
@PROPERTY
def test_fold_name_is_nfc_of_casefold(name: str) -> None:
    # ASCII names take a shortcut (lower-casing): it must give what the definition gives.
    nfc = unicodedata.normalize
    assert fold_name(name) == nfc("NFC", nfc("NFC", name).casefold())


# =============================================================================== userName grammar


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice", (("alice",),)),
        ("  Alice  ", (("alice",),)),
        ("Alice AND Amber", (("alice", "amber"),)),
        ("Ann Bob AND Eve", (("ann",), ("bob", "eve"))),
        ("Bob AND Eve Ann", (("bob", "eve"), ("ann",))),
        ("a AND b c AND d", (("a", "b"), ("c", "d"))),
        ("a AND b AND c", (("a", "b", "c"),)),
        ("Ann Bob", (("ann",), ("bob",))),
        ("Ann\tBob\nEve", (("ann",), ("bob",), ("eve",))),
        ("Ann   AND\t\tBob", (("ann", "bob"),)),
        ("Ann\u3000Bob", (("ann",), ("bob",))),  # ideographic space is whitespace
        ("Ann and Bob", (("ann",), ("and",), ("bob",))),  # only uppercase AND is the operator
        ("Ann And Bob", (("ann",), ("and",), ("bob",))),
        ("ANDY AND ANDREA", (("andy", "andrea"),)),
        ("and", (("and",),)),
        ("A**l*", (("a*l*",),)),
        ("*", (("*",),)),
        ("***", (("*",),)),
        ("STRASSE", (("strasse",),)),
        ("Straße", (("strasse",),)),
        ("E\u0301LODIE", (("\u00e9lodie",),)),
        ("王小明 AND 李", (("王小明", "李"),)),
        ("Alice alice ALICE", (("alice",),)),  # duplicate groups dropped
        ("Alice AND alice", (("alice",),)),  # duplicate terms within a group dropped
        ("a AND b b AND a", (("a", "b"), ("b", "a"))),  # order kept, so these differ
        ("a?[b]", (("a?[b]",),)),  # every other character is literal
    ],
)
def test_parse_user_query(raw: str, expected: tuple[tuple[str, ...], ...]) -> None:
    assert parse_user_query(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " ",
        "\t\n ",
        "AND",
        " AND ",
        "AND x",
        "x AND",
        "x AND ",
        "x AND AND y",
        "AND AND",
        "x y AND",
        "AND x y",
        "x AND y AND",
    ],
)
def test_parse_user_query_rejects(raw: str) -> None:
    with pytest.raises(InvalidParameter, match="userName") as info:
        parse_user_query(raw)
    assert info.value.status_code == 2


TERM = st.text(
    st.sampled_from(["a", "B", "c", "*", "é", "ß", "王", "-", "."]), min_size=1, max_size=5
).filter(lambda t: t != "AND")


@given(st.lists(st.lists(TERM, min_size=1, max_size=3), min_size=1, max_size=4))
@PROPERTY
def test_parse_user_query_round_trips_rendered_groups(groups: list[list[str]]) -> None:
    rendered = "  " + "   ".join(" AND ".join(group) for group in groups) + "\n"
    expected: dict[tuple[str, ...], None] = {}
    for group in groups:
        terms = dict.fromkeys(re.sub(r"\*+", "*", fold_name(term)) for term in group)
        expected.setdefault(tuple(terms), None)
    assert parse_user_query(rendered) == tuple(expected)


# ========================================================================= names in recordings


def test_recording_names_collects_folded_contact_names_in_order() -> None:
    doc = recording(
        contacts=[
            {"type": "Agent", "userName": "Alice.A", "firstName": "Alice", "lastName": "Amber"},
            {"type": "User", "userName": "bob", "firstName": "ALICE", "lastName": "Straße"},
            {"type": "External", "phoneNumber": "+16504668888"},
        ]
    )
    assert recording_names(doc) == ["alice.a", "alice", "amber", "bob", "strasse"]


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"eventHistory": None},
        {"eventHistory": "Alice"},
        {"eventHistory": {"contact": {"userName": "Alice"}}},
        {"eventHistory": [None, 1, "x", []]},
        {"eventHistory": [{"contact": None}, {"contact": "Alice"}, {"contact": ["Alice"]}]},
        {"eventHistory": [{"contact": {"userName": 1, "firstName": None, "lastName": ["x"]}}]},
        {"eventHistory": [{"contact": {"userName": "", "firstName": "  ", "lastName": "\t"}}]},
        {"eventHistory": [{"userName": "Alice"}]},  # not inside a contact
    ],
)
def test_recording_names_tolerates_malformed_documents(doc: dict[str, Any]) -> None:
    assert recording_names(doc) == []


def test_recording_names_skips_only_the_malformed_parts() -> None:
    doc = {
        "eventHistory": [
            None,
            {"contact": "x"},
            {"contact": {"userName": 5, "firstName": " Eve ", "lastName": ""}},
            {"event": "Left"},
            {"contact": {"userName": "eve", "lastName": "Ng"}},
        ]
    }
    assert recording_names(doc) == ["eve", "ng"]


@pytest.mark.parametrize(
    ("query", "names", "expected"),
    [
        ((("alice",),), ["alice", "amber"], True),
        ((("alice", "amber"),), ["alice", "amber"], True),  # different contacts is fine
        ((("alice", "bob"),), ["alice", "amber"], False),
        ((("bob",), ("alice",)), ["alice"], True),
        ((("bob",), ("eve",)), ["alice"], False),
        ((("al*",),), ["alice"], True),
        ((("al*", "*ber"),), ["alice", "amber"], True),
        ((("ali",),), ["alice"], False),  # whole-field match without '*'
        ((("*",),), ["x"], True),
        ((("*",),), [], False),
        ((), ["alice"], False),
    ],
)
def test_user_query_matches(
    query: tuple[tuple[str, ...], ...], names: list[str], expected: bool
) -> None:
    assert user_query_matches(query, names) is expected


@pytest.mark.parametrize(
    ("user_name", "found"),
    [
        ("Alice", True),
        ("alice", True),
        ("ALICE", True),
        ("Amber", True),
        ("alice.a", True),
        ("Alice AND Amber", True),
        ("Alice AND Bob", True),  # Bob is in another contact
        ("Alice AND Zed", False),
        ("Zed Alice", True),
        ("Zed", False),
        ("Ann Bob AND Eve", False),
        ("Ann Bob AND Straße", True),
        ("Ann Bob AND STRASSE", True),
        ("ann bob AND strasse", True),
        ("Ali", False),
        ("Ali*", True),
        ("*ICE", True),
        ("*l*c*", True),
        ("A*R", True),
        ("A**R", True),
        ("Éloïse", True),
        ("E\u0301LOI\u0308SE", True),
        ("ΣΊΣΥΦΟΣ", True),
        ("王小明", True),
        ("王*", True),
        ("*明", True),
        ("王", False),
        ("İstanbul", True),  # same dotted capital I as stored
        ("istanbul", False),  # casefold keeps the dot of İ
    ],
)
def test_spec_username_examples(user_name: str, found: bool) -> None:
    doc = recording(
        contacts=[
            {"type": "Agent", "userName": "alice.a", "firstName": "Alice", "lastName": "Amber"},
            {"type": "User", "userName": "bob", "firstName": "Bob", "lastName": "Straße"},
            {"type": "User", "userName": "éloïse", "firstName": "σίσυφος", "lastName": "王小明"},
            {"type": "User", "userName": "İstanbul"},
        ]
    )
    assert matches(parse_query({"userName": user_name}), doc) is found


# =============================================================================== instants


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        ("-0", 0),
        ("00", 0),
        ("1368819932000", 1368819932000),
        ("-1", -1),
        ("-86400000", -86400000),
        (str(MIN_INSTANT_MS), MIN_INSTANT_MS),
        (str(MAX_INSTANT_MS), MAX_INSTANT_MS),
        ("1970-01-01", 0),
        ("2013-05-17", ms_of(datetime(2013, 5, 17, tzinfo=UTC))),
        ("1969-12-31", -86_400_000),
        ("0001-01-01", MIN_INSTANT_MS),
        ("9999-12-31", ms_of(datetime(9999, 12, 31, tzinfo=UTC))),
        ("2000-02-29", ms_of(datetime(2000, 2, 29, tzinfo=UTC))),
        ("2013-05-17T19:45:32", 1368819932000),
        ("2013-05-17T19:45:32Z", 1368819932000),
        ("2013-05-17T19:45:32.000 0000", 1368819932000),  # an unencoded "+" arrives as a space
        ("2013-05-17T19:45:32.000+0000", 1368819932000),
        ("2013-05-17T19:45:32.000Z", 1368819932000),
        ("2013-05-17T19:45:32.5Z", 1368819932500),
        ("2013-05-17T19:45:32.12Z", 1368819932120),
        ("2013-05-17T19:45:32.123Z", 1368819932123),
        ("2013-05-17T19:45:32.1239Z", 1368819932123),  # truncated, not rounded
        ("2013-05-17T19:45:32.999999999Z", 1368819932999),
        ("2013-05-17T19:45:32.000000001", 1368819932000),
        ("2013-05-17T21:45:32+0200", 1368819932000),
        ("2013-05-17T21:45:32+02:00", 1368819932000),
        ("2013-05-17T21:45:32+02", 1368819932000),
        ("2013-05-17T12:45:32.000-0700", 1368819932000),
        ("2013-05-17T12:45:32-07:00", 1368819932000),
        ("2013-05-17T12:45:32-07", 1368819932000),
        ("2013-05-18T01:15:32+05:30", 1368819932000),
        ("2013-05-17T19:45:32-00:00", 1368819932000),
        ("2013-05-18T13:45:32+18:00", 1368819932000),
        ("2013-05-17T01:45:32-18:00", 1368819932000),
        ("1970-01-01T00:00:00.000+0000", 0),
        ("1969-12-31T23:59:59.999Z", -1),
        ("1970-01-01T01:00:00+01:00", 0),
        ("0001-01-01T00:00:00.000Z", MIN_INSTANT_MS),
        ("0001-01-01T00:00:00-01:00", MIN_INSTANT_MS + 3_600_000),
        ("9999-12-31T23:59:59.999Z", MAX_INSTANT_MS),
        ("9999-12-31T23:59:59.999999999Z", MAX_INSTANT_MS),
        ("9999-12-31T23:59:59.999+01:00", MAX_INSTANT_MS - 3_600_000),
        ("2016-12-31T23:59:59Z", ms_of(datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC))),
    ],
)
def test_parse_instant_accepts(raw: str, expected: int) -> None:
    assert parse_instant(raw, "startTime") == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " ",
        "now",
        "garbage",
        " 0",
        "0 ",
        "0\n",
        "+5",
        "--1",
        "-",
        "1.5",
        "1e3",
        "0x10",
        "1_000",
        "1,000",
        "\u0661\u0662\u0663",  # Arabic-Indic digits
        "\uff11\uff12\uff13",  # fullwidth digits
        "\uff12\uff10\uff11\uff13-05-17",
        "9" * 30,
        "-" + "9" * 30,
        "9" * 5000,
        str(MAX_INSTANT_MS + 1),
        str(MIN_INSTANT_MS - 1),
        "0000-01-01",
        "0000-12-31T23:59:59Z",
        "99999-01-01",
        "10000-01-01T00:00:00Z",
        "2013-13-01",
        "2013-00-10",
        "2013-05-00",
        "2013-02-29",
        "2013-04-31",
        "2013-5-17",
        "13-05-17",
        "2013/05/17",
        "20130517T194532Z",  # basic format (a bare 20130517 is epoch ms)
        "2013-05",
        "2013Z",
        "2013-137",  # ordinal date
        "2013-W20-5",  # week date
        "2013-05-17T",
        "2013-05-17 19:45:32",  # space instead of T
        "2013-05-17t19:45:32Z",
        "2013-05-17T19:45:32z",
        "2013-05-17T19:45",
        "2013-05-17T19",
        "2013-05-17T194532",
        "2013-05-17T19:45:32.",
        "2013-05-17T19:45:32.1234567890Z",  # ten fraction digits
        "2013-05-17T19:45:32,123Z",
        "2013-05-17T24:00:00",
        "2013-05-17T23:60:00",
        "2013-05-17T23:59:60Z",  # leap second
        "2013-05-17T9:45:32",
        "2013-05-17T19:45:32+5",
        "2013-05-17T19:45:32+050",
        "2013-05-17T19:45:32+05:3",
        "2013-05-17T19:45:32+05:60",
        "2013-05-17T19:45:32+19:00",
        "2013-05-17T19:45:32-1801",
        "2013-05-17T19:45:32+00:00:00",
        "2013-05-17T19:45:32 +0000",
        "2013-05-17T19:45:32GMT",
        "2013-05-17T19:45:32UTC",
        "2013-05-17T19:45:32Z[UTC]",
        "2013-05-17T19:45:32ZZ",
        "2013-05-17T19:45:32\u22120700",  # Unicode minus sign
        "2013-05-17T19:45:32.000+0000\n",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "0001-01-01T00:00:00.000+0000-",
        "9999-12-31T23:59:59.999-00:01",  # after year 9999 in UTC
        "9999-12-31T23:00:00-01:00",
        "Fri, 17 May 2013 19:45:32 GMT",
        "\x00",
        "\ufffd",
        "1368819932000\x00",
    ],
)
def test_parse_instant_rejects(raw: str) -> None:
    with pytest.raises(InvalidParameter, match="endTime") as info:
        parse_instant(raw, "endTime")
    assert info.value.status_code == 2
    assert info.value.http_status == 400


@pytest.mark.parametrize("raw", [None, 0, 1368819932000, b"0", ["0"]])
def test_parse_instant_rejects_non_strings(raw: Any) -> None:
    with pytest.raises(InvalidParameter, match="startTime"):
        parse_instant(raw, "startTime")


INSTANT_FRAGMENTS = st.sampled_from(
    ["0", "1", "9", "-", "+", ":", "T", "Z", ".", " ", "20", "13", "00", "99", "\u0661", "\n", "e"]
)


@given(st.one_of(st.text(), st.lists(INSTANT_FRAGMENTS, max_size=20).map("".join)))
@PROPERTY
def test_parse_instant_only_ever_raises_invalid_parameter(raw: str) -> None:
    try:
        ms: int | None = parse_instant(raw, "startTime")
    except InvalidParameter as exc:
        message, ms = exc.message, None
    if ms is None:
        assert "startTime" in message
    else:
        assert MIN_INSTANT_MS <= ms <= MAX_INSTANT_MS


@given(
    st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
        r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?\Z"
    )
)
@PROPERTY
def test_parse_instant_well_shaped_values_agree_with_datetime(raw: str) -> None:
    # Reference: datetime.fromisoformat, given the fraction cut to microseconds and the
    # zone rewritten as ±hh:mm, which every Python 3.11 build understands.
    m = re.fullmatch(
        r"(?P<date>[^T]{10})(?:T(?P<time>[0-9:]{8})(?:\.(?P<frac>[0-9]+))?"
        r"(?P<zone>Z|(?P<sign>[+-])(?P<oh>[0-9]{2}):?(?P<om>[0-9]{2})?)?)?",
        raw,
    )
    assert m is not None
    frac = (m["frac"] or "")[:6].ljust(6, "0")
    zone = f"{m['sign']}{m['oh']}:{m['om'] or '00'}" if m["sign"] else "+00:00"
    iso = f"{m['date']}T{m['time'] or '00:00:00'}.{frac}{zone}"
    expected: int | None
    try:
        reference = datetime.fromisoformat(iso)
        offset = reference.utcoffset()
        assert offset is not None
        expected = ms_of(reference) if abs(offset) <= timedelta(hours=18) else None
    except (ValueError, OverflowError):
        expected = None
    if expected is not None and not MIN_INSTANT_MS <= expected <= MAX_INSTANT_MS:
        expected = None
    if expected is None:
        with pytest.raises(InvalidParameter):
            parse_instant(raw, "startTime")
    else:
        assert parse_instant(raw, "startTime") == expected


@given(
    st.one_of(
        st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}\+0000\Z"),
        st.integers(MIN_INSTANT_MS, MAX_INSTANT_MS).map(format_instant),
        st.integers(-(10**14), 10**14).map(str),
        st.sampled_from(["2013-05-17", "2013-05-17T19:45:32Z", "2013-05-17T21:45:32+02:00"]),
    )
)
@PROPERTY
def test_canonical_instant_is_parse_then_format(raw: str) -> None:
    # The shortcut for values already canonical (checked, not parsed again) must agree with
    # the long way round, rejections included: hour 24, minute 60, 30 February, year 0.
    try:
        expected: str | None = format_instant(parse_instant(raw, "startTime"))
    except InvalidParameter:
        expected = None
    if expected is None:
        with pytest.raises(InvalidParameter, match="startTime"):
            canonical_instant(raw, "startTime")
    else:
        assert canonical_instant(raw, "startTime") == expected


@pytest.mark.parametrize(
    "raw",
    [
        "2023-02-29T10:00:00.000+0000",
        "0000-01-01T00:00:00.000+0000",
        "2023-01-01T24:00:00.000+0000",
        "2023-01-01T23:60:00.000+0000",
        "2023-01-01T23:00:60.000+0000",
        "2023-13-01T00:00:00.000+0000",
    ],
)
def test_canonical_instant_rejects_what_looks_canonical_but_is_no_instant(raw: str) -> None:
    with pytest.raises(InvalidParameter, match="occurredAt"):
        canonical_instant(raw, "occurredAt")


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (0, "1970-01-01T00:00:00.000+0000"),
        (1368819932000, "2013-05-17T19:45:32.000+0000"),
        (1368819932123, "2013-05-17T19:45:32.123+0000"),
        (1, "1970-01-01T00:00:00.001+0000"),
        (-1, "1969-12-31T23:59:59.999+0000"),
        (-1000, "1969-12-31T23:59:59.000+0000"),
        (-1001, "1969-12-31T23:59:58.999+0000"),
        (-86_400_000, "1969-12-31T00:00:00.000+0000"),
        (MIN_INSTANT_MS, "0001-01-01T00:00:00.000+0000"),
        (MIN_INSTANT_MS + 1, "0001-01-01T00:00:00.001+0000"),
        (MAX_INSTANT_MS, "9999-12-31T23:59:59.999+0000"),
        (ms_of(datetime(999, 3, 4, 5, 6, 7, tzinfo=UTC)), "0999-03-04T05:06:07.000+0000"),
        (ms_of(datetime(2000, 2, 29, 12, tzinfo=UTC)), "2000-02-29T12:00:00.000+0000"),
    ],
)
def test_format_instant(ms: int, expected: str) -> None:
    assert format_instant(ms) == expected
    assert parse_instant(expected, "startTime") == ms


@pytest.mark.parametrize("ms", [MIN_INSTANT_MS - 1, MAX_INSTANT_MS + 1, 10**20, -(10**20)])
def test_format_instant_rejects_out_of_range(ms: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        format_instant(ms)


@given(st.integers(MIN_INSTANT_MS, MAX_INSTANT_MS))
@PROPERTY
def test_format_parse_round_trip(ms: int) -> None:
    text = format_instant(ms)
    assert re.fullmatch(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}\+0000", text
    )
    assert parse_instant(text, "startTime") == ms
    assert parse_instant(str(ms), "startTime") == ms
    reference = EPOCH + timedelta(milliseconds=ms) if ms >= 0 else None
    if reference is not None:
        assert text == reference.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


@given(st.integers(MIN_INSTANT_MS, MAX_INSTANT_MS))
@PROPERTY
def test_format_instant_agrees_with_datetime(ms: int) -> None:
    reference = datetime(1, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms - MIN_INSTANT_MS)
    assert format_instant(ms) == (
        f"{reference.year:04d}-{reference:%m-%dT%H:%M:%S}.{reference.microsecond // 1000:03d}+0000"
    )


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    st.integers(-18 * 60, 18 * 60),
    st.sampled_from(["colon", "compact", "hours"]),
)
@PROPERTY
def test_parse_instant_with_offsets(local: datetime, offset_minutes: int, style: str) -> None:
    if style == "hours":
        offset_minutes -= offset_minutes % 60 if offset_minutes >= 0 else -(-offset_minutes % 60)
    sign = "-" if offset_minutes < 0 else "+"
    hh, mm = divmod(abs(offset_minutes), 60)
    zone = {"colon": f"{sign}{hh:02d}:{mm:02d}", "compact": f"{sign}{hh:02d}{mm:02d}"}.get(
        style, f"{sign}{hh:02d}"
    )
    millis = local.microsecond // 1000
    raw = f"{local.year:04d}-{local:%m-%dT%H:%M:%S}.{local.microsecond:06d}{zone}"
    aware = local.replace(
        microsecond=millis * 1000, tzinfo=timezone(timedelta(minutes=offset_minutes))
    )
    assert parse_instant(raw, "startTime") == ms_of(aware)


@given(st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
@PROPERTY
def test_parse_instant_dates_are_midnight_utc(day: date) -> None:
    raw = f"{day.year:04d}-{day:%m-%d}"
    expected = ms_of(datetime(day.year, day.month, day.day, tzinfo=UTC))
    assert parse_instant(raw, "startTime") == expected
    assert format_instant(expected) == raw + "T00:00:00.000+0000"


# =============================================================================== RecordingQuery


def test_recording_query_is_empty() -> None:
    assert RecordingQuery().is_empty()
    assert not RecordingQuery(caller="1*").is_empty()
    assert not RecordingQuery(dialed="1*").is_empty()
    assert not RecordingQuery(start_from=0).is_empty()
    assert not RecordingQuery(end_before=0).is_empty()
    assert not RecordingQuery(user=(("a",),)).is_empty()


def test_recording_query_is_frozen_and_slotted() -> None:
    query = RecordingQuery(caller="1*")
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.caller = "2*"  # type: ignore[misc]
    assert not hasattr(query, "__dict__")
    assert query == RecordingQuery(caller="1*")
    assert hash(query) == hash(RecordingQuery(caller="1*"))


# =============================================================================== parse_query


def test_parse_query_reads_all_five() -> None:
    query = parse_query(
        {
            "callerPhoneNumber": "+1 (650) 466-8888",
            "dialedPhoneNumber": "*0100",
            "startTime": "2013-05-17",
            "endTime": "1368819932000",
            "userName": "Ann Bob AND Eve",
            "limit": "5",
            "cursor": "garbage\x00",
        }
    )
    assert query == RecordingQuery(
        caller="16504668888",
        dialed="*0100",
        start_from=ms_of(datetime(2013, 5, 17, tzinfo=UTC)),
        end_before=1368819932000,
        user=(("ann",), ("bob", "eve")),
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"callerPhoneNumber": "1650*"}, RecordingQuery(caller="1650*")),
        ({"dialedPhoneNumber": "**"}, RecordingQuery(dialed="*")),
        ({"startTime": "0"}, RecordingQuery(start_from=MIN_INSTANT_MS)),  # all, 1969 too
        ({"startTime": "1970-01-01"}, RecordingQuery(start_from=0)),
        ({"endTime": "1970-01-01T00:00:00Z"}, RecordingQuery(end_before=0)),
        ({"userName": " Alice AND Amber "}, RecordingQuery(user=(("alice", "amber"),))),
        ({"userName": "x" * MAX_PARAMETER_LENGTH}, RecordingQuery(user=(("x" * 1024,),))),
    ],
)
def test_parse_query_single_parameters(params: dict[str, str], expected: RecordingQuery) -> None:
    assert parse_query(params) == expected


@pytest.mark.parametrize(
    "params",
    [{}, {"limit": "5"}, {"cursor": "abc", "callerphonenumber": "1"}, {"CallerPhoneNumber": "1"}],
)
def test_parse_query_without_a_recognised_parameter_is_missing(params: dict[str, str]) -> None:
    with pytest.raises(MissingParameter, match="at least one of") as info:
        parse_query(params)
    assert info.value.status_code == 1
    assert info.value.http_status == 400
    for name in QUERY_PARAMETERS:
        assert name in info.value.message


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({"callerPhoneNumber": ""}, "callerPhoneNumber"),
        ({"callerPhoneNumber": "()-+"}, "callerPhoneNumber"),
        ({"dialedPhoneNumber": " "}, "dialedPhoneNumber"),
        ({"startTime": ""}, "startTime"),
        ({"startTime": "yesterday"}, "startTime"),
        ({"endTime": "2013-05-17 19:45:32"}, "endTime"),
        ({"userName": ""}, "userName"),
        ({"userName": "Alice AND"}, "userName"),
        ({"userName": "Al\x00ice"}, "userName"),
        ({"userName": "Al\ufffdice"}, "userName"),
        ({"userName": "Al" + chr(0xD800) + "ice"}, "userName"),  # lone surrogate
        ({"callerPhoneNumber": "1650\x00"}, "callerPhoneNumber"),
        ({"callerPhoneNumber": "1650\ufffd"}, "callerPhoneNumber"),
        ({"startTime": "0\x00"}, "startTime"),
        ({"userName": "x" * (MAX_PARAMETER_LENGTH + 1)}, "userName"),
        ({"callerPhoneNumber": "1" * (MAX_PARAMETER_LENGTH + 1)}, "callerPhoneNumber"),
        ({"startTime": "0" * (MAX_PARAMETER_LENGTH + 1)}, "startTime"),
        # The first bad parameter in QUERY_PARAMETERS order is the one reported.
        ({"userName": "AND", "callerPhoneNumber": "()"}, "callerPhoneNumber"),
        ({"endTime": "x", "startTime": "y"}, "startTime"),
        ({"callerPhoneNumber": "1", "dialedPhoneNumber": "\x00"}, "dialedPhoneNumber"),
    ],
)
def test_parse_query_invalid(params: dict[str, str], bad: str) -> None:
    with pytest.raises(InvalidParameter, match=bad) as info:
        parse_query(params)
    assert info.value.status_code == 2
    assert info.value.http_status == 400


def test_parse_query_accepts_exactly_max_length() -> None:
    value = "1" * MAX_PARAMETER_LENGTH
    assert parse_query({"callerPhoneNumber": value}).caller == value


def test_parse_query_rejects_non_string_values() -> None:
    with pytest.raises(InvalidParameter, match="startTime"):
        parse_query({"startTime": 0})  # type: ignore[dict-item]


@given(st.dictionaries(st.sampled_from([*QUERY_PARAMETERS, "limit", "x"]), st.text(max_size=40)))
@PROPERTY
def test_parse_query_only_raises_gws_parameter_errors(params: dict[str, str]) -> None:
    try:
        query = parse_query(params)
    except MissingParameter:
        assert not set(params) & set(QUERY_PARAMETERS)
    except InvalidParameter:
        assert set(params) & set(QUERY_PARAMETERS)
    else:
        assert not query.is_empty()


# =============================================================================== matches


def test_empty_query_matches_everything() -> None:
    assert matches(RecordingQuery(), recording())
    assert matches(RecordingQuery(), {})


START = 1368819932000  # 2013-05-17T19:45:32.000Z
STOP = START + 268_000  # 2013-05-17T19:50:00.000Z


@pytest.mark.parametrize(
    ("params", "found"),
    [
        ({"startTime": "0"}, True),
        ({"startTime": str(START)}, True),  # at or after: equality included
        ({"startTime": str(START + 1)}, False),
        ({"startTime": "2013-05-17"}, True),
        ({"startTime": "2013-05-18"}, False),
        ({"startTime": "2013-05-17T21:45:32+02:00"}, True),
        ({"startTime": "2013-05-17T21:45:32.001+02:00"}, False),
        ({"startTime": "-1"}, True),
        ({"endTime": str(STOP)}, True),  # at or before: equality included
        ({"endTime": str(STOP - 1)}, False),
        ({"endTime": "2013-05-18"}, True),
        ({"endTime": "2013-05-17"}, False),
        ({"endTime": "2013-05-17T19:50:00Z"}, True),
        ({"endTime": "2013-05-17T19:49:59.999Z"}, False),
        ({"startTime": str(START), "endTime": str(STOP)}, True),
        ({"startTime": str(START), "endTime": str(START)}, False),
    ],
)
def test_time_filters(params: dict[str, str], found: bool) -> None:
    assert matches(parse_query(params), recording()) is found


def test_stored_times_in_any_accepted_form() -> None:
    doc = recording(start="2013-05-17T21:45:32+02:00", stop="2013-05-17T19:50:00Z")
    assert matches(parse_query({"startTime": str(START), "endTime": str(STOP)}), doc)
    assert not matches(parse_query({"startTime": str(START + 1)}), doc)
    as_ints = recording(start=START, stop=STOP)
    assert matches(parse_query({"startTime": str(START), "endTime": str(STOP)}), as_ints)
    assert not matches(parse_query({"endTime": str(STOP - 1)}), as_ints)


@pytest.mark.parametrize("stop", [None, "", "garbage", True, 1.5, {"x": 1}, 10**30])
def test_recording_without_a_usable_stop_time_never_matches_end_time(stop: Any) -> None:
    doc = recording(stop=stop)
    assert not matches(parse_query({"endTime": str(MAX_INSTANT_MS)}), doc)
    assert matches(parse_query({"startTime": "0"}), doc)


@pytest.mark.parametrize("start", [None, "", "garbage", False, [START]])
def test_recording_without_a_usable_start_time_never_matches_start_time(start: Any) -> None:
    doc = recording(start=start)
    assert not matches(parse_query({"startTime": str(MIN_INSTANT_MS)}), doc)
    assert matches(parse_query({"endTime": str(MAX_INSTANT_MS)}), doc)


@pytest.mark.parametrize(
    ("params", "found"),
    [
        ({"callerPhoneNumber": "*"}, True),
        ({"callerPhoneNumber": "1"}, False),
        ({"dialedPhoneNumber": "*"}, True),
    ],
)
def test_missing_phone_numbers_are_empty(params: dict[str, str], found: bool) -> None:
    doc = recording(caller=None, dialed=None)
    assert matches(parse_query(params), doc) is found
    doc_bad = recording(caller=None, dialed=None) | {"callerPhoneNumber": 16504668888}
    assert matches(parse_query(params), doc_bad) is found


@pytest.mark.parametrize(
    ("params", "found"),
    [
        ({"callerPhoneNumber": "1650*", "dialedPhoneNumber": "*0100"}, True),
        ({"callerPhoneNumber": "1650*", "dialedPhoneNumber": "*0101"}, False),
        ({"callerPhoneNumber": "1415*", "dialedPhoneNumber": "*0100"}, False),
        ({"callerPhoneNumber": "*8888", "userName": "Alice", "startTime": "0"}, True),
        ({"callerPhoneNumber": "*8888", "userName": "Bob", "startTime": "0"}, False),
        ({"callerPhoneNumber": "*8888", "userName": "Alice", "endTime": "0"}, False),
        ({"dialedPhoneNumber": "14155550100", "userName": "*"}, True),
    ],
)
def test_all_criteria_must_hold(params: dict[str, str], found: bool) -> None:
    assert matches(parse_query(params), recording()) is found


def test_phone_criteria_are_not_cross_matched() -> None:
    doc = recording(caller="+16504668888", dialed="+14155550100")
    assert not matches(parse_query({"callerPhoneNumber": "14155550100"}), doc)
    assert not matches(parse_query({"dialedPhoneNumber": "16504668888"}), doc)


def test_user_query_on_malformed_history_never_matches() -> None:
    doc = recording() | {"eventHistory": "Alice"}
    assert not matches(parse_query({"userName": "*"}), doc)
    assert matches(parse_query({"callerPhoneNumber": "*"}), doc)
