"""Display names: how a name is written down, every rule it must keep, how its length is counted, and when two names
look alike (TR39 skeletons from ICU)."""

import json
import re
import unicodedata

import pytest

from leaderboard import http, names
from leaderboard.bodies import RegisterBody
from leaderboard.problems import InvalidRequest
from tests.conftest import load_event


def full_width(text: str) -> str:
    """ASCII letters and digits in their full-width forms (U+FF01...), which NFKC maps back."""
    return "".join(chr(ord(character) + 0xFEE0) for character in text)


def refusal(text: str) -> str:
    with pytest.raises(names.InvalidName) as caught:
        names.normalize(text)
    return str(caught.value)


def shared_keys(first: str, second: str) -> bool:
    return bool(names.lookalike_keys(names.normalize(first)) & names.lookalike_keys(names.normalize(second)))


# --- how a name is written down --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("Bob Ross", "Bob Ross"),
        ("  Bob Ross  ", "Bob Ross"),  # no space at either end
        ("Bob   Ross", "Bob Ross"),  # a run of spaces is one
        ("Bob\u00a0Ross", "Bob Ross"),  # no-break space
        ("Bob\u3000\u2003Ross", "Bob Ross"),  # ideographic and em spaces
        ("Bob\u1680Ross", "Bob Ross"),  # a space separator NFKC leaves alone (Ogham)
        (full_width("Player") + "\u3000" + full_width("1"), "Player 1"),  # full-width forms
        ("ﬁsh", "fish"),  # a ligature
        ("Zoe\u0308", "Zoë"),  # a letter and its mark, composed
        ("\u2126mega", "Ωmega"),  # OHM SIGN is the Greek letter
        ("ﷺ", "صلى الله عليه وسلم"),  # one code point, eighteen characters once NFKC has spelled it out
    ],
)
def test_names_are_stored_in_nfkc_with_spaces_tidied(sent: str, stored: str) -> None:
    assert names.normalize(sent) == stored


@pytest.mark.parametrize(
    "sent", ["  Bob  Ross ", full_width("Player"), "Zoe\u0308", "a\u0332\u0333 b", "ﷺ", "스타 크래프트"]
)
def test_writing_a_name_down_twice_changes_nothing(sent: str) -> None:
    once = names.normalize(sent)
    assert names.normalize(once) == once
    assert unicodedata.is_normalized("NFKC", once)


# --- what a name may hold ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "allowed",
    [
        "Ada",  # Lu, Ll
        "々木",  # Lm, Lo
        "a\u0332",  # Mn (a combining low line)
        "कि",  # Mc (a Devanagari vowel sign)
        "a\u20dd",  # Me (an enclosing circle)
        "R2D2",  # Nd
        "\u3007",  # Nl (ideographic zero)
        "௰",  # No (Tamil ten)
        "a_b-c(d)e«f»g!h'i",  # Pc, Pd, Ps, Pe, Pi, Pf, Po
        "Ann Lee",  # Zs
    ],
)
def test_letters_marks_numbers_punctuation_and_spaces_are_allowed(allowed: str) -> None:
    assert names.normalize(allowed) == allowed


@pytest.mark.parametrize(
    ("character", "what"),
    [
        ("\x00", "a control character"),
        ("\n", "a control character"),
        ("\x85", "a control character"),  # C1: NEXT LINE
        ("\u00ad", "an invisible formatting character"),  # soft hyphen
        ("\u200b", "an invisible formatting character"),  # zero width space
        ("\u200d", "an invisible formatting character"),  # zero width joiner
        ("\u202e", "an invisible formatting character"),  # right-to-left override
        ("\u2066", "an invisible formatting character"),  # left-to-right isolate
        ("\ufeff", "an invisible formatting character"),  # byte order mark
        ("\U000e0041", "an invisible formatting character"),  # tag letter A
        ("\ue000", "a private-use character"),
        ("\U000f0000", "a private-use character"),
        ("\ud800", "a lone surrogate"),
        ("\u0378", "not an assigned character"),
        ("\u2028", "a line separator"),
        ("\u2029", "a paragraph separator"),
        ("+", "a symbol"),  # Sm
        ("$", "a symbol"),  # Sc
        ("^", "a symbol"),  # Sk
        ("✓", "a symbol"),  # So
        ("😀", "a symbol"),  # So: emoji
        ("\u2800", "a symbol"),  # BRAILLE PATTERN BLANK, which renders as nothing
    ],
)
def test_every_other_kind_of_character_is_refused_by_name(character: str, what: str) -> None:
    detail = refusal(f"Ann{character}Lee")

    assert f"U+{ord(character):04X}" in detail
    assert detail.endswith(f"is {what}")
    assert detail.startswith("may hold letters, marks, numbers, punctuation and spaces only")


@pytest.mark.parametrize(
    ("invisible", "shown_as"),
    [
        ("\u3164", "U+1160 (HANGUL JUNGSEONG FILLER), which NFKC makes of U+3164 (HANGUL FILLER),"),
        ("\uffa0", "U+1160 (HANGUL JUNGSEONG FILLER), which NFKC makes of U+FFA0 (HALFWIDTH HANGUL FILLER),"),
        ("\u115f", "U+115F (HANGUL CHOSEONG FILLER)"),
        ("\u1160", "U+1160 (HANGUL JUNGSEONG FILLER)"),
        ("\u034f", "U+034F (COMBINING GRAPHEME JOINER)"),  # a mark
        ("\ufe0f", "U+FE0F (VARIATION SELECTOR-16)"),
        ("\u17b4", "U+17B4 (KHMER VOWEL INHERENT AQ)"),
    ],
)
def test_letters_and_marks_unicode_calls_invisible_are_refused(invisible: str, shown_as: str) -> None:
    # Given a name that would read "Alice" on the board, or nothing at all
    for sent in (f"Alice{invisible}", f"Al{invisible}ice", invisible):
        assert refusal(sent) == (
            f"may hold letters, marks, numbers, punctuation and spaces only, and {shown_as} is invisible"
        )


def test_a_compatibility_form_that_holds_a_symbol_is_refused_naming_the_symbol() -> None:
    assert refusal("Ann ½") == (
        "may hold letters, marks, numbers, punctuation and spaces only, "
        "and U+2044 (FRACTION SLASH), which NFKC makes of U+00BD (VULGAR FRACTION ONE HALF), is a symbol"
    )


@pytest.mark.parametrize("blank", ["", "   ", "\u3000", "...", "- _ -", "«»", "\u0301", "\u0332\u0333"])
def test_a_name_needs_a_letter_or_a_number(blank: str) -> None:
    assert refusal(blank) == "must have at least one letter or number"


# --- marks -----------------------------------------------------------------------------------------------------------


def test_a_name_cannot_start_with_a_mark() -> None:
    detail = "cannot start with a mark, U+0332 (COMBINING LOW LINE): it has no character to sit on"
    assert refusal("\u0332Ann") == detail
    assert refusal(" \u0332Ann") == refusal("\u0332Ann")  # the space before it goes, the mark stays first


def test_at_most_four_marks_sit_on_one_character() -> None:
    four = "a\u0316\u0317\u0318\u0319"  # four different marks below, none of which NFKC composes with "a"

    assert names.normalize(f"Ann {four}") == f"Ann {four}"
    assert refusal(f"Ann {four}\u031a") == "may have at most 4 marks on one character"
    assert names.normalize(f"{four}{four}") == f"{four}{four}"  # four on each of two characters


@pytest.mark.parametrize("doubled", ["Zoe\u0308\u0308", "Zoë\u0308", "e\u0301\u0323\u0301"])
def test_the_same_mark_twice_on_one_character_is_refused(doubled: str) -> None:
    # The second is drawn over the first: "Zoë̈" would pass for "Zoë" (the last one: canonical order puts them together)
    assert refusal(doubled) == "has the same mark twice on one character, where the second cannot be seen"


# --- length: what players see ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("Ann", 3),
        ("e\u0301", 1),  # one character, written as two code points
        ("a\u0316\u0317\u0318\u0319", 1),
        ("한국", 2),
        ("स्त्री", 1),  # a Devanagari conjunct with its vowel sign: one character on screen
        ("李小龍", 3),
        ("Bob Ross", 8),  # spaces are seen too
    ],
)
def test_the_length_counts_characters_as_players_see_them(text: str, length: int) -> None:
    assert names.visible_length(text) == length


def test_at_most_32_characters_are_allowed() -> None:
    assert names.normalize("x" * 32) == "x" * 32
    assert names.normalize("a\u0332" * 32) == "a\u0332" * 32  # 64 code points, 32 characters
    assert refusal("x" * 33) == "is 33 characters long; at most 32 are allowed"
    assert refusal("ﷺ ﷺ") == "is 37 characters long; at most 32 are allowed"  # counted once spelled out


def test_at_most_128_code_points_are_stored() -> None:
    heavy = "a\u0316\u0317\u0318\u0319" * 26  # 26 characters, 130 code points

    assert names.visible_length(heavy) == 26
    assert refusal(heavy) == "is too long: at most 128 Unicode code points"


# --- look-alikes -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("paypal", "p\u0430yp\u0430l"),  # Cyrillic small a
        ("Alice", "\u0410lice"),  # Cyrillic capital A
        ("BoB", "\u0392\u03bf\u0392"),  # Greek Beta, omicron
        ("modern", "rnodern"),  # TR39's data: "m" looks like "rn"
        ("Iris", "lris"),  # a capital I and a small L
        ("B0B", "BOB"),  # zero and capital O
        ("Alice", full_width("Alice")),  # through NFKC
        ("Alice", "alice"),  # letter case: folded before a second skeleton
        ("Alice", "ALICE"),
        ("Straße", "STRASSE"),  # full case folding
        ("Player 1", "Player  1 "),  # spaces tidied first
    ],
)
def test_names_that_look_alike_share_a_key(first: str, second: str) -> None:
    assert shared_keys(first, second)


@pytest.mark.parametrize(
    ("first", "second"),
    [("Alice", "Alicia"), ("Bob", "Rob"), ("Player 48213", "Player 48214"), ("Anna", "Ann a"), ("Zoe", "Zoë")],
)
def test_names_that_look_different_share_no_key(first: str, second: str) -> None:
    assert not shared_keys(first, second)


def test_keys_are_fixed_size_digests_one_or_two_per_name() -> None:
    assert len(names.lookalike_keys("alice")) == 1  # already folded: both skeletons are one
    keys = names.lookalike_keys("Alice")

    assert len(keys) == 2
    assert all(re.fullmatch(r"[0-9a-f]{64}", key) for key in keys)


# --- generated names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("digits", [5, 6, 9])
def test_a_generated_name_is_player_and_a_number_of_that_many_digits(digits: int) -> None:
    for _ in range(50):
        name = names.default_name(digits)

        assert re.fullmatch(rf"Player [1-9]\d{{{digits - 1}}}", name)
        assert names.normalize(name) == name


# --- in a request body: one rule, one place ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("display_name", "detail"),
    [
        ("\u3164", "display_name: may hold letters, marks, numbers, punctuation and spaces only"),
        ("...", "display_name: must have at least one letter or number"),
        ("x" * 40, "display_name: is 40 characters long; at most 32 are allowed"),
    ],
)
def test_a_broken_rule_is_a_400_naming_it(display_name: str, detail: str) -> None:
    event = load_event("register_ok")
    event["body"] = json.dumps({"username": "alice", "password": "correct horse battery", "display_name": display_name})

    with pytest.raises(InvalidRequest) as caught:
        http.parse_body(event, RegisterBody)

    body = caught.value.body()
    assert body["status"] == 400
    assert detail in body["detail"]
    assert [error["field"] for error in body["errors"]] == ["display_name"]


def test_the_body_carries_the_name_as_stored() -> None:
    event = load_event("register_ok")
    sent = f" {full_width('Bob')}  Ross"
    event["body"] = json.dumps({"username": "alice", "password": "correct horse battery", "display_name": sent})

    assert http.parse_body(event, RegisterBody).display_name == "Bob Ross"
