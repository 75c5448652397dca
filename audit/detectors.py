"""The built-in PII and secret detectors behind `RedactionRule.detector`.

Each detector is a precompiled pattern that finds candidates, an optional checksum or
shape check that rejects look-alikes (a Luhn-failing number is not a card, 1.2.3.4.5 is
a version and not an address), and a cheap trigger that lets the caller skip the regex
scan entirely when the text cannot contain a match (no '@', no digit). Every pattern is
written so that the engine cannot backtrack more than linearly: runs of digits are only
ever split at explicit separators.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tenants.keys import KEY_MARK

# Takes a candidate match and returns how many of its leading characters are sensitive:
# 0 rejects it, len(candidate) takes all of it.
Check = Callable[[str], int]
Trigger = Callable[[str], bool]


@dataclass(frozen=True)
class Detector:
    pattern: re.Pattern[str]
    trigger: Trigger
    check: Check | None = None
    # A cheap pattern that every match of `pattern` contains: text without it is skipped.
    # The patterns open with lookbehinds, which stop the regex engine from skipping ahead
    # to a possible first character; these open with one character class, so the engine
    # jumps from digit to digit at C speed (a prefix it can only use when the pattern's
    # very first item is a literal or a class, not a repeat or an alternation).
    prefilter: re.Pattern[str] | None = None


_A = re.ASCII | re.VERBOSE
_DIGITS = "0123456789"


def _has_digit(text: str) -> bool:
    # Ten substring tests (memchr) beat one regex scan for [0-9] by about fifty times.
    return any(digit in text for digit in _DIGITS)


_digits_only = re.compile(r"[^0-9]").sub


# --- e-mail -------------------------------------------------------------------------------
_EMAIL = re.compile(
    r"""
    (?<![A-Za-z0-9._%+\-])            # start of the local part, never inside one
    [A-Za-z0-9._%+\-]{1,64}
    @
    (?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+
    [A-Za-z]{2,63}
    (?![A-Za-z0-9\-])
    """,
    _A,
)


# --- phone numbers --------------------------------------------------------------------------
_PHONE = re.compile(
    r"""
    (?<![\w+])(?<![0-9][ .\-/])       # not the tail of a longer number
    (?:
        # International: +CC, then digit groups split by one separator each, with an
        # optional parenthesised area code or "(0)" trunk marker.
        \+[0-9]{1,15}
        (?:(?:[ .\-]?\([0-9]{1,4}\)[ .\-]?|[ .\-])[0-9]{1,12}){0,6}
      |
        # North American: (415) 555-2671, 415.555.2671, 1-800-555-1234.
        (?:1[ .\-])?(?:\([0-9]{3}\)[ ]?|[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4}
      |
        # Trunk-prefix national numbers with one consistent separator:
        # 020 7946 0958, 06 12 34 56 78, 030/1234567.
        0[0-9]{1,4}(?P<sep>[ .\-/])[0-9]{2,8}(?:(?P=sep)[0-9]{2,8}){0,4}
    )
    (?![\w])(?![.\-/][0-9])
    """,
    _A,
)
_PHONE_PREFILTER = re.compile(
    r"""
    [+0-9]
    (?:
        (?<=\+)[0-9]                             # international: +CC
      | (?<=[0-9])[0-9]{2}[ .\-][0-9]{4}          # how every North American number ends
      | (?<=0)(?<![\w+]0)[0-9]{1,4}[ .\-/][0-9]{2} # trunk prefix, not inside a longer number
    )
    """,
    _A,
)
_DATE_LIKE = re.compile(r"[0-9]{1,4}([./\-])[0-9]{1,2}\1[0-9]{2,4}")
_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")


def _phone_check(candidate: str) -> int:
    digits = len(_digits_only("", candidate))
    if not 7 <= digits <= 15:
        return 0
    if candidate[0] != "+" and (
        _DATE_LIKE.fullmatch(candidate) or _DOTTED_QUAD.fullmatch(candidate)
    ):
        return 0
    return len(candidate)


# --- payment cards --------------------------------------------------------------------------
_CARD = re.compile(
    r"""
    (?<![\w+])(?<![0-9][.,])
    (?:
        [0-9]{13,19}
      |
        # 4-4-4-4 (most brands), 4-6-5 (Amex) and 4-6-4 (Diners), one separator kind.
        [0-9]{4}(?P<cs>[ \-])
        (?:[0-9]{4}(?P=cs)[0-9]{4}(?P=cs)[0-9]{4}|[0-9]{6}(?P=cs)[0-9]{4,5})
    )
    (?![\w])(?![.,][0-9])
    """,
    _A,
)
# Every card form has eight digits with at most one separator among them.
_CARD_PREFILTER = re.compile(r"[0-9][0-9]{3}[ \-]?[0-9]{4}", _A)
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        total += _DOUBLED[value] if index & 1 else value
    return total % 10 == 0


def _card_check(candidate: str) -> int:
    digits = _digits_only("", candidate)
    # A run of one repeated digit passes Luhn (all zeros trivially) but is a placeholder.
    if len(set(digits)) == 1 or not luhn_valid(digits):
        return 0
    return len(candidate)


# --- IBAN -----------------------------------------------------------------------------------
# Registered IBAN lengths by country (SWIFT IBAN registry). The exact length, on top of
# mod-97, is what keeps ordinary tokens such as "AB12 CDEF GHIJ" from being redacted.
_IBAN_REGISTRY = """
    AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24
    DE22 DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27
    GT28 HN28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20
    LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24
    PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25
    SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20 YE30
"""
_IBAN_LENGTHS: dict[str, int] = {entry[:2]: int(entry[2:]) for entry in _IBAN_REGISTRY.split()}
_IBAN = re.compile(
    r"""
    (?<![A-Za-z0-9])
    [A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?
    (?![A-Za-z0-9])
    """,
    _A,
)


# Two letters, two digits, then a group: led by the digit, so letters are skipped fast.
_IBAN_PREFILTER = re.compile(r"[0-9](?<=[A-Z]{2}[0-9])[0-9][ ]?[A-Z0-9]{4}", _A)


def iban_valid(compact: str) -> bool:
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _iban_check(candidate: str) -> int:
    expected = _IBAN_LENGTHS.get(candidate[:2])
    if expected is None:
        return 0
    # The pattern may run on into a following upper-case word ("... 7034 CODE"), so
    # take exactly the country's length and require it to end on a group boundary.
    seen = 0
    for end, char in enumerate(candidate, start=1):
        if char != " ":
            seen += 1
        if seen == expected:
            if end < len(candidate) and candidate[end] != " ":
                return 0
            return end if iban_valid(candidate[:end].replace(" ", "")) else 0
    return 0


# --- IPv4 -----------------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(
    rf"""
    (?<![\w])(?<![0-9]\.)             # not the tail of 1.2.3.4.5
    {_OCTET}(?:\.{_OCTET}){{3}}
    (?![\w])(?!\.[0-9])               # nor its head
    """,
    _A,
)


def _ipv4_trigger(text: str) -> bool:
    return "." in text and _has_digit(text)


# --- provider-style API keys ----------------------------------------------------------------
_API_KEY = re.compile(
    rf"""
    (?<![A-Za-z0-9_\-])
    (?:
        sk-[A-Za-z0-9_\-]{{20,}}                  # OpenAI sk-/sk-proj-, Anthropic sk-ant-
      | (?:AKIA|ASIA)[A-Z0-9]{{16}}               # AWS access key id
      | gh[pousr]_[A-Za-z0-9]{{36,255}}           # GitHub tokens
      | github_pat_[A-Za-z0-9_]{{22,255}}         # GitHub fine-grained tokens
      | xox[abpr]-[A-Za-z0-9\-]{{10,}}            # Slack
      | AIza[A-Za-z0-9_\-]{{35}}                  # Google API key
      | [rs]k_(?:live|test)_[A-Za-z0-9]{{16,}}    # Stripe
      | {re.escape(KEY_MARK)}[A-Za-z0-9]{{16,}}   # this gateway's own keys
    )
    (?![A-Za-z0-9_\-])
    """,
    _A,
)
# Substrings every key of the pattern above holds, in three families. Most hold a '-' or
# '_', so one substring test rules a whole family out: testing all ten markers on every
# text took about three times as long.
_KEY_MARKERS_DASH = ("sk-", "xox")  # sk-..., xox?-...
_KEY_MARKERS_UNDERSCORE: tuple[str, ...] = (
    "gh",
    "github_pat_",
    "k_live_",
    "k_test_",
)  # gh?_..., ?k_live_...
_KEY_MARKERS_OTHER: tuple[str, ...] = ("AKIA", "ASIA", "AIza")
if "_" in KEY_MARK:
    _KEY_MARKERS_UNDERSCORE += (KEY_MARK,)
else:  # pragma: no cover
    _KEY_MARKERS_OTHER += (KEY_MARK,)


def _api_key_trigger(text: str) -> bool:
    for marker in _KEY_MARKERS_OTHER:
        if marker in text:
            return True
    if "-" in text:
        for marker in _KEY_MARKERS_DASH:
            if marker in text:
                return True
    if "_" in text:
        for marker in _KEY_MARKERS_UNDERSCORE:
            if marker in text:
                return True
    return False


BUILT_IN: dict[str, Detector] = {
    "email": Detector(_EMAIL, lambda text: "@" in text),
    "phone": Detector(_PHONE, _has_digit, _phone_check, _PHONE_PREFILTER),
    "credit_card": Detector(_CARD, _has_digit, _card_check, _CARD_PREFILTER),
    "iban": Detector(_IBAN, _has_digit, _iban_check, _IBAN_PREFILTER),
    "ipv4": Detector(_IPV4, _ipv4_trigger),
    "api_key": Detector(_API_KEY, _api_key_trigger),
}


def contains_api_key(text: str) -> bool:
    """Used by the config importer to refuse files that carry a secret."""
    return _api_key_trigger(text) and _API_KEY.search(text) is not None
