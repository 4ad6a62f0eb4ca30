"""Team and method names: one normal form, and a key under which look-alike names are one name.

A name is normalised with Unicode NFKC, trimmed, runs of spaces collapsed, at most 64 characters. It
must not contain anything that renders as nothing: control and format characters (what
``str.isprintable`` refuses), the default-ignorable code points (which ``isprintable`` lets through
when they are letters or marks: the Hangul fillers, the combining grapheme joiner, variation
selectors), and a few blank symbols. Issue 24 registered "Alpha" followed by a Hangul filler as a
second team that rendered exactly like "Alpha". Such names are refused, never stripped: a stripped
name would silently be another team's.

The uniqueness key is then case-folded and passed through a small table of Cyrillic and Greek letters
that look Latin ("bаseline" with a Cyrillic "а" is "baseline"). The table covers the common
homoglyphs, not all of Unicode's confusables.
"""
from __future__ import annotations

import bisect
import unicodedata

MAX_NAME_CHARS = 64

# Default_Ignorable_Code_Point, from DerivedCoreProperties.txt of Unicode 14.0.0 (Python 3.11's
# unicodedata version; checked against Perl's Unicode::UCD 14.0.0, which the tests repeat where Perl is
# installed): 4174 code points. Inclusive ranges.
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),    # SOFT HYPHEN
    (0x034F, 0x034F),    # COMBINING GRAPHEME JOINER
    (0x061C, 0x061C),    # ARABIC LETTER MARK
    (0x115F, 0x1160),    # HANGUL CHOSEONG FILLER, HANGUL JUNGSEONG FILLER
    (0x17B4, 0x17B5),    # KHMER VOWEL INHERENT AQ, AA
    (0x180B, 0x180F),    # MONGOLIAN FREE VARIATION SELECTORS, VOWEL SEPARATOR
    (0x200B, 0x200F),    # ZERO WIDTH SPACE .. RIGHT-TO-LEFT MARK
    (0x202A, 0x202E),    # LEFT-TO-RIGHT EMBEDDING .. RIGHT-TO-LEFT OVERRIDE
    (0x2060, 0x206F),    # WORD JOINER .. NOMINAL DIGIT SHAPES (2065 reserved)
    (0x3164, 0x3164),    # HANGUL FILLER
    (0xFE00, 0xFE0F),    # VARIATION SELECTOR-1 .. 16
    (0xFEFF, 0xFEFF),    # ZERO WIDTH NO-BREAK SPACE
    (0xFFA0, 0xFFA0),    # HALFWIDTH HANGUL FILLER
    (0xFFF0, 0xFFF8),    # reserved
    (0x1BCA0, 0x1BCA3),  # SHORTHAND FORMAT LETTER OVERLAP .. UP STEP
    (0x1D173, 0x1D17A),  # MUSICAL SYMBOL BEGIN BEAM .. END PHRASE
    (0xE0000, 0xE0FFF),  # LANGUAGE TAG, TAG characters, VARIATION SELECTOR-17 .. 256, reserved
)
# Not default-ignorable, but blank in common fonts: a name made of them, or padded with them, looks
# like another (issue 24 used the braille blank).
BLANK = {0x2800: "BRAILLE PATTERN BLANK", 0x1D159: "MUSICAL SYMBOL NULL NOTEHEAD",
         0x16FE4: "KHITAN SMALL SCRIPT FILLER"}

_STARTS = [lo for lo, _ in DEFAULT_IGNORABLE]

# Lower-case Cyrillic and Greek letters that look like Latin ones (after case folding).
_HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "н": "h", "і": "i", "ї": "i", "ј": "j", "к": "k",
    "ӏ": "l", "м": "m", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t", "у": "y", "х": "x", "с": "c",
    "ԁ": "d", "ԝ": "w", "α": "a", "β": "b", "ε": "e", "η": "h", "ι": "i", "κ": "k", "μ": "m", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ζ": "z",
})


class BadName(ValueError):
    """A team or method name that cannot be accepted; the message says why."""


def default_ignorable(c: str) -> bool:
    """Whether ``c`` has Unicode's Default_Ignorable_Code_Point property (see the table above)."""
    k = bisect.bisect_right(_STARTS, ord(c)) - 1
    return k >= 0 and ord(c) <= DEFAULT_IGNORABLE[k][1]


def invisible(c: str) -> bool:
    """Whether ``c`` may render as nothing: not printable, default-ignorable, or a blank symbol."""
    return not c.isprintable() or default_ignorable(c) or ord(c) in BLANK


def normalise_name(raw: str, what: str = "team name") -> tuple[str, str]:
    """``(name to show, uniqueness key)`` of a team or method name; raises BadName if unusable."""
    if not isinstance(raw, str):
        raise BadName(f"{what} must be text")
    name = unicodedata.normalize("NFKC", raw).strip()
    # Reported as given where NFKC changes them (U+3164 becomes U+1160); spaces that NFKC makes ordinary
    # spaces (U+2002, U+3000) are fine, as before.
    given = [c for c in raw if default_ignorable(c) or ord(c) in BLANK]
    bad = list(dict.fromkeys(f"U+{ord(c):04X}" for c in given + [c for c in name if invisible(c)]))
    if bad:
        raise BadName(f"{what} contains control or invisible characters ({', '.join(bad[:5])})")
    name = " ".join(part for part in name.split(" ") if part)
    if not name:
        raise BadName(f"{what} is empty")
    if len(name) > MAX_NAME_CHARS:
        raise BadName(f"{what} has {len(name)} characters; at most {MAX_NAME_CHARS}")
    key = unicodedata.normalize("NFKC", name.casefold()).translate(_HOMOGLYPHS)
    return name, key
