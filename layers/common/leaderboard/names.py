"""Display names players can trust: what a name may hold, how it is written down, and when two names look alike.

A display name is what the boards and the live feed show of a player; the login username never is. The rules, in
the order they are checked (a refusal names the first one broken):

1. NFKC first (full-width and other compatibility forms become their plain letters, "ﬁ" becomes "fi"), so the rules
   and the look-alike test see what is shown.
2. Only letters, marks, numbers, punctuation and spaces (Unicode categories L*, M*, N*, P*, Zs): no control, format
   (zero-width, bidirectional), private-use, unassigned or symbol characters, and nothing Unicode calls invisible
   (Default_Ignorable_Code_Point: the Hangul fillers, variation selectors, the combining grapheme joiner...).
3. Spaces are tidied, not refused: every space separator becomes " ", none at either end, runs become one; so
   "Bob Ross", " Bob  Ross " and "Bob Ross" with an ideographic space are one name, the one stored and shown.
4. At least one letter or number: a name of spaces, marks or punctuation alone would show as blank or as noise.
5. Marks sit on something: not first, at most MAX_MARKS_IN_A_ROW in a row (enough for any script's stacked
   diacritics, not for "Zalgo" text spilling over the rows around it), never the same mark twice on one character
   (ICU's invisible check: the second one is drawn over the first).
6. At most MAX_LENGTH characters as players see them (UAX #29 grapheme clusters: "é" is one whether written as one
   code point or two), and at most MAX_CODE_POINTS code points in all (a bound on what is stored).

Two names look alike when they share a key of `lookalike_keys`: the confusable skeleton of Unicode TR39 (ICU's
implementation), of the name as written and of its case-folded form. See README, "Display names players can trust".
"""

import functools
import hashlib
import secrets
import unicodedata
from typing import Any

MAX_LENGTH = 32
MAX_CODE_POINTS = 128
MAX_MARKS_IN_A_ROW = 4
DEFAULT_NAME_PREFIX = "Player"

_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Co": "a private-use character",
    "Cs": "a lone surrogate",
    "Cn": "not an assigned character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


class InvalidName(ValueError):
    """A display name breaks a rule; the message says which, in words for the player (it follows "display_name: ")."""


def normalize(text: str) -> str:
    """The display name as it is stored and shown (NFKC, spaces tidied); InvalidName naming the rule it breaks."""
    name = unicodedata.normalize("NFKC", text)
    for character in name:
        _refuse_unshowable(character, sent=text)
    spaced = "".join(" " if unicodedata.category(character) == "Zs" else character for character in name)
    name = " ".join(word for word in spaced.split(" ") if word)  # no run of spaces, none at either end
    if not any(unicodedata.category(character)[0] in "LN" for character in name):
        raise InvalidName("must have at least one letter or number")
    _refuse_stray_marks(name)
    if len(name) > MAX_CODE_POINTS:
        raise InvalidName(f"is too long: at most {MAX_CODE_POINTS} Unicode code points")
    length = visible_length(name)
    if length > MAX_LENGTH:
        raise InvalidName(f"is {length} characters long; at most {MAX_LENGTH} are allowed")
    return name


def visible_length(name: str) -> int:
    """How many characters a player sees: the extended grapheme clusters of UAX #29, as ICU counts them."""
    characters = _icu().BreakIterator.createCharacterInstance(_icu().Locale.getRoot())
    characters.setText(name)
    return sum(1 for _ in characters)  # one boundary after each cluster


def lookalike_keys(name: str) -> frozenset[str]:
    """Keys that two names share exactly when they look alike: SHA-256 digests (a fixed size, whatever the name) of
    the TR39 skeleton of the name, and of the skeleton of its case-folded form.

    The skeleton alone keeps letter case, which TR39 means it to: its data knows that a capital I looks like a small
    L, which folding first would lose ("Iris" and "lris"). The folded form's skeleton adds what the eye also takes
    for the same name on a board: "Alice", "alice" and "ALICE". A name conflicts with another when any key of one is
    a key of the other."""
    checker = _spoof_checker()
    skeletons = {str(checker.getSkeleton(0, name)), str(checker.getSkeleton(0, name.casefold()))}
    return frozenset(hashlib.sha256(skeleton.encode()).hexdigest() for skeleton in skeletons)


def default_name(digits: int) -> str:
    """A name for a player who chose none, e.g. "Player 48213", with a number of `digits` digits (not 0-led)."""
    low = 10 ** (digits - 1)
    return f"{DEFAULT_NAME_PREFIX} {low + secrets.randbelow(9 * low)}"


def _refuse_unshowable(character: str, sent: str) -> None:
    category = unicodedata.category(character)
    if category in _REFUSED_CATEGORIES:
        what = _REFUSED_CATEGORIES[category]
    elif category[0] == "S":
        what = "a symbol"
    elif _icu().Char.hasBinaryProperty(character, _icu().UProperty.DEFAULT_IGNORABLE_CODE_POINT):
        what = "invisible"
    else:
        return
    raise InvalidName(
        f"may hold letters, marks, numbers, punctuation and spaces only, and {_as_sent(character, sent)} is {what}"
    )


def _as_sent(character: str, sent: str) -> str:
    """The character named, with the one sent that NFKC made it from when that is another ("½" holds a U+2044
    FRACTION SLASH): the player should recognise what they typed."""
    if character in sent:
        return _describe(character)
    origin = next((typed for typed in sent if character in unicodedata.normalize("NFKC", typed)), None)
    return f"{_describe(character)}, which NFKC makes of {_describe(origin) if origin else 'what was sent'},"


def _refuse_stray_marks(name: str) -> None:
    if unicodedata.category(name[0])[0] == "M":
        raise InvalidName(f"cannot start with a mark, {_describe(name[0])}: it has no character to sit on")
    in_a_row = 0
    for character in name:
        in_a_row = in_a_row + 1 if unicodedata.category(character)[0] == "M" else 0
        if in_a_row > MAX_MARKS_IN_A_ROW:
            raise InvalidName(f"may have at most {MAX_MARKS_IN_A_ROW} marks on one character")
    if _spoof_checker().check(name) & _icu().USpoofChecks.INVISIBLE:
        raise InvalidName("has the same mark twice on one character, where the second cannot be seen")


def _describe(character: str) -> str:
    """A character named safely for any reader: "U+3164 (HANGUL FILLER)"."""
    name = unicodedata.name(character, "")
    return f"U+{ord(character):04X}" + (f" ({name})" if name else "")


@functools.cache
def _icu() -> Any:
    """ICU (PyICU), imported on first use: only registration needs it, and its import (~10 ms) would otherwise add to
    the cold start of every function that parses a request body."""
    import icu  # type: ignore[import-untyped]

    return icu


@functools.cache
def _spoof_checker() -> Any:
    """ICU's TR39 spoof checker: skeletons, and the invisible-mark check."""
    checker = _icu().SpoofChecker()
    checker.setChecks(_icu().USpoofChecks.INVISIBLE)
    return checker
