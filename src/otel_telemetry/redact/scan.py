"""Text scanning for ``otel_telemetry.redact``: the detectors run over one string, and a cheap gate.

``scan`` is pure (no shared state): it returns the redacted string and adds ``{rule: n}`` to the
``hits`` dict it is given. Before any regex runs, ``_plain`` classifies an ASCII string with two
C-level byte operations: most attribute values (routes, methods, host names, versions, paths
with a short id) hold none of the characters the detectors need (``@ % : =``, whitespace, seven
or more digits, four digits with three dots), and then only the length-gated API-key and
secret-token patterns can still match. Every detector stays gated by a test that is necessary
for it to match, so the gate never hides a hit (``tests/redact/test_redact.py`` checks this against the
full scan on the corpus and on generated strings).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from . import rules

DETECTORS: tuple[str, ...] = (
    "url_credentials", "private_key", "jwt", "bearer", "basic_auth", "api_key", "kv_secret", "email",
    "ipv6", "card", "ipv4", "phone", "secret_token",
)

# ASCII bytes that some detector needs besides letters: digits, '.', '@', '%', ':', '=' and the
# characters ``\s`` matches. ``_DELETE`` is every other ASCII byte.
_KEEP = frozenset(b"0123456789.@%:=" + b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f")
_DELETE = bytes(b for b in range(128) if b not in _KEEP)
_DIGITS13 = re.compile(r"\d{13}")
_HEX_LOWER, _HEX_UPPER = "0123456789abcdef", "0123456789ABCDEF"
# Literals one of which every API_KEY alternative starts with (rules.API_KEY).
_API_PREFIXES = ("sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "AKIA", "ASIA", "AGPA",
                 "AIDA", "AROA", "ANPA", "ANVA", "AIPA", "AIza", "k_live_", "k_test_", "glpat-", "npm_")
_KV_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "cookie", "ssn", "card", "cvv")  # rules.KV_PRE
# Byte classes: SECRET_RUN's token characters -> "a"; hex digits -> "h" and ":" kept (IPv6 groups).
_TOKEN = bytes(ord("a") if chr(c).isascii() and (chr(c).isalnum() or chr(c) in "+/_=-") else ord(" ")
               for c in range(256))
_TOKEN_RUN = b"a" * 32
# Looser patterns that begin with a digit, so the regex engine skips to digits in C (the detectors
# begin with a lookbehind, which makes it try every position): a card holds 13 digits with at most
# one space or dash between two of them, an IPv4 address d.d.d.d, a phone number 8 digits with at
# most two of whitespace . ( ) - between two of them ("+1 (415) 555-2671").
_CARD_PRE = re.compile(r"\d(?:[ -]?\d){12}")
_IPV4_PRE = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")
_PHONE_PRE = re.compile(r"\d(?:[\s.()-]{0,2}\d){7}")
_HEX_COLON = bytes(ord("h") if chr(c) in "0123456789abcdefABCDEF" else ord(":") if c == ord(":") else ord(" ")
                   for c in range(256))


def mark(rule: str) -> str:
    return f"[REDACTED:{rule}]"


def plain(s: str) -> bool:
    """``s`` (ASCII) cannot hold a hit of any detector except ``api_key``/``secret_token``:
    no ``@ % : =`` or whitespace (e-mail, URL credentials, key=value, IPv6, bearer/basic, private
    keys), fewer than 7 digits (phones and cards need more), not 4 digits with 3 dots (IPv4), and
    no ``eyJ`` with dots (JWT)."""
    kept = s.encode("ascii").translate(None, _DELETE)
    if not kept:
        return True
    if kept.isdigit():
        if len(kept) < 7:
            return True
        # Digits with no whitespace, '.', '-', '+' or '(' cannot form a phone number (every phone
        # pattern needs one of them), and a card needs 13 in a row: ids such as hex request ids and
        # paths like /items/1234567 are settled here instead of by the full scan.
        return "-" not in s and "+" not in s and "(" not in s and _DIGITS13.search(s) is None
    digits = kept.replace(b".", b"")
    if digits and not digits.isdigit():
        return False
    nd = len(digits)
    return (nd < 4 or (nd < 7 and len(kept) - nd < 3)) and "eyJ" not in s


def scan(s: str, on: frozenset[str] | set[str], custom: list[tuple[str, re.Pattern[str]]],
         hits: dict[str, int]) -> str:
    """All enabled detectors over ``s``; records {rule: n} in ``hits``. Pure: no shared state."""
    n = len(s)
    if 7 <= n <= 15 and "ipv4" in on and (m := rules.IPV4.fullmatch(s)) is not None:
        # A whole string that is one IPv4 address (client.address, net.peer.ip, ...): the only
        # detector that can hit it is ipv4 (no phone or card fits in four octets).
        if not rules.ipv4_ok(m):
            return _custom(s, custom, hits)
        hits["ipv4"] = hits.get("ipv4", 0) + 1
        return _custom(mark("ipv4"), custom, hits)
    if n >= 6:
        if (not s.strip(_HEX_LOWER) or not s.strip(_HEX_UPPER)) and _DIGITS13.search(s) is None:
            # One-case hex (request and trace ids): no API-key prefix, one case only for a secret
            # token, no phone without a separator, no card without 13 digits in a row.
            return _custom(s, custom, hits)
        if s.isascii() and plain(s):
            if n >= 15 and "api_key" in on and any(p in s for p in _API_PREFIXES):
                s = sub(rules.API_KEY, s, "api_key", hits)
            if n >= 32 and "secret_token" in on and _TOKEN_RUN in s.encode().translate(_TOKEN):
                s = sub(rules.SECRET_RUN, s, "secret_token", hits, check=rules.entropy_ok)
        else:
            s = _full(s, on, hits)
    return _custom(s, custom, hits)


def _custom(s: str, custom: list[tuple[str, re.Pattern[str]]], hits: dict[str, int]) -> str:
    for name, rx in custom:
        s = sub(rx, s, name, hits)
    return s


def _full(s: str, on: frozenset[str] | set[str], hits: dict[str, int]) -> str:
    # Each detector runs only past a test of the original text that its match needs (digit counts,
    # literal prefixes, a run of token characters), made with C-level byte operations: on long
    # text (prompts, messages) the regexes are most of the cost. A replacement never adds digits,
    # prefixes or token runs, so testing the original text is enough.
    b = s.encode("utf-8", "ignore")
    nd = len(b) - len(b.translate(None, b"0123456789"))  # digit count, in C
    if "@" in s and "://" in s and "url_credentials" in on:
        s = sub(rules.URL_CREDENTIALS, s, "url_credentials", hits, keep=1, tail="@")
    if "PRIVATE KEY" in s and "private_key" in on:
        s = sub(rules.PRIVATE_KEY, s, "private_key", hits)
    if "eyJ" in s and "jwt" in on:
        s = sub(rules.JWT, s, "jwt", hits)
    low = s.lower()
    if ("earer" in low or "token" in low) and "bearer" in on:
        s = sub(rules.BEARER, s, "bearer", hits, keep=1, check=rules.bearer_ok, sep=" ")
    if "basic" in low and "basic_auth" in on:
        s = sub(rules.BASIC, s, "basic_auth", hits, keep=1, check=rules.basic_ok, sep=" ")
    if "api_key" in on and any(p in s for p in _API_PREFIXES):
        s = sub(rules.API_KEY, s, "api_key", hits)
    if ("=" in s or ":" in s) and "kv_secret" in on and any(w in low for w in _KV_WORDS):
        s = sub(rules.KV_SECRET, s, "kv_secret", hits, keep=1, check=rules.kv_ok)
    if ("@" in s or "%40" in s) and "email" in on:
        s = sub(rules.EMAIL, s, "email", hits)
    # An address without "::" has eight groups: a hex digit, a colon, a hex digit somewhere.
    if ("::" in s or (s.count(":") >= 7 and b"h:h" in b.translate(_HEX_COLON))) and "ipv6" in on:
        s = sub(rules.IPV6_CANDIDATE, s, "ipv6", hits, check=rules.ipv6_ok)
    if nd >= 13 and "card" in on and _CARD_PRE.search(s):  # card_ok wants 13 to 19 digits
        s = sub(rules.CARD, s, "card", hits, check=rules.card_ok)
    if nd >= 4 and s.count(".") >= 3 and "ipv4" in on and _IPV4_PRE.search(s):
        s = sub(rules.IPV4, s, "ipv4", hits, check=rules.ipv4_ok)
    if nd >= 8 and "phone" in on and _PHONE_PRE.search(s):  # phone_ok wants 8 or more
        s = sub(rules.PHONE, s, "phone", hits, check=rules.phone_ok)
    if len(s) >= 32 and "secret_token" in on and _TOKEN_RUN in b.translate(_TOKEN):
        s = sub(rules.SECRET_RUN, s, "secret_token", hits, check=rules.entropy_ok)
    return s


def sub(rx: re.Pattern[str], s: str, rule: str, hits: dict[str, int], keep: int = 0,
        check: Callable[[re.Match[str]], bool] | None = None, tail: str = "", sep: str = "") -> str:
    """Replace matches of ``rx`` (that pass ``check``) by the rule's marker, keeping group ``keep``."""
    if rx.search(s) is None:  # the common case: no closure, no new string
        return s
    marker = mark(rule)

    def repl(m: re.Match[str]) -> str:
        if check is not None and not check(m):
            return m.group(0)
        hits[rule] = hits.get(rule, 0) + 1
        return (m.group(keep) + sep if keep else "") + marker + tail

    return rx.sub(repl, s)
