"""The built-in detector patterns and sensitive key names of ``otel_telemetry.redact``.

Constants only, compiled once at import. Every pattern is linear-time on hostile input (no nested
unbounded repeats), since the collector runs them on data from the network.
"""

from __future__ import annotations

import binascii
import ipaddress
import math
import re
from collections import Counter

_DIGIT = re.compile(r"\d")
_NONDIGIT = re.compile(r"\D")
_WORDISH = re.compile(r"[a-z]{4,}|[A-Z][a-z]{3,}")

# Credentials inside a URL: scheme://user:pass@ (user may be empty: redis://:pw@host).
URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,20}://)(?!\[REDACTED)[^\s/@:]{0,256}:[^\s/@]{1,256}@")
PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]{0,40}PRIVATE KEY-----|\Z)")
# JWT / JWS: base64url('{"...') . base64url('{"...') . signature (may be empty: alg none).
JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
BEARER = re.compile(r"(?i)\b(bearer|token)\s+([A-Za-z0-9._~+/-]{8,}=*)")
BASIC = re.compile(r"(?i)\b(basic)\s+([A-Za-z0-9+/]{6,}={0,2})")
API_KEY = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"sk-(?:proj-|ant-|live-|test-|svcacct-)?[A-Za-z0-9_-]{20,}"  # OpenAI / Anthropic style
    r"|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"  # GitHub
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}(?![A-Z0-9])"  # AWS access key id
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|glpat-[A-Za-z0-9_-]{20,}|npm_[A-Za-z0-9]{36}"  # GitLab, npm
    r")")
# key=value / "key": "value" with a secret-looking key inside free text (query strings, JSON, logs).
KV_PRE = re.compile(r"pass|pwd|secret|token|key|auth|cookie|ssn|card|cvv")  # on the lowercased text
KV_SECRET = re.compile(
    r"(?i)(?<![A-Za-z0-9])((?:password|passwd|passphrase|pwd|secret|client[_-]?secret|token|access[_-]?token"
    r"|refresh[_-]?token|auth[_-]?token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key"
    r"|authorization|cookie|set-cookie|ssn|credit[_-]?card|card[_-]?number|cvv|cvc)"
    r"[\"']?\s{0,3}[:=]\s{0,3}[\"']?)"
    r"(?!\[?[\"']?\[REDACTED|(?:bearer|basic|token)\s+\[REDACTED)([^\s\"'&,;}\]]+)")  # JSON: ["[REDACTED..
# Key names whose values are secret even when they are only digits (PINs, card data, SSNs).
_KV_NUMERIC_SECRET = re.compile(r"(?i)pass|pwd|ssn|card|cvv|cvc")


def kv_ok(m: re.Match[str]) -> bool:
    """A key=value hit, except a digits-only value under a token/key/secret/auth/cookie name:
    counters and limits (``"api_key": 138``, ``max_token=4096``) are not credentials."""
    return not m.group(2).isdigit() or _KV_NUMERIC_SECRET.search(m.group(1)) is not None


EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}(?:@|%40)"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])")
IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}|:)(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}(?:%[A-Za-z0-9]+)?(?![\w:])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
CARD = re.compile(r"(?<![\w.+-])\d(?:[ -]?\d){12,18}(?![\w]|[.-]?\d)")
# Issuer prefixes: Visa, Mastercard (51-55, 2221-2720), Amex/Diners/JCB (3x), Discover/UnionPay/Maestro.
CARD_PREFIX = re.compile(r"4|5|6|3|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720")
PHONE = re.compile(
    r"(?<![\w+./-])(?>"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{1,4}){1,5}"  # +E.164 / international
    r"|(?:1[\s.-])?\(\d{3}\)\s?\d{3}[\s.-]\d{4}"  # (415) 555-2671
    r"|(?:1[\s.-])?\d{3}[\s.-]\d{3}[\s.-]\d{4}"  # 415-555-2671, 415.555.2671
    r"|0\d{1,4}(?:[\s.-]\d{2,4}){2,4}"  # 020 7946 0958, 06 12 34 56 78
    r")(?![\w-]|[.:]\d)")
# Long runs of token characters; _entropy_ok then wants mixed case + digits + high entropy.
SECRET_RUN = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_=-]{32,}")
PSEUDONYM_RE = re.compile(r"ph_[0-9a-f]{24}")

# Sensitive attribute key names: the last dotted segment, lowercased, '-' read as '_'.
SENSITIVE_SEGMENTS = frozenset({
    "password", "passwd", "passphrase", "pwd", "secret", "client_secret", "token", "access_token",
    "refresh_token", "id_token", "auth_token", "session_token", "csrf_token", "xsrf_token", "jwt",
    "authorization", "proxy_authorization", "www_authenticate", "cookie", "set_cookie", "cookies",
    "api_key", "apikey", "x_api_key", "private_key", "secret_key", "access_key", "credentials",
    "credential", "ssn", "social_security_number", "credit_card", "creditcard", "card_number",
    "cc_number", "cvv", "cvc", "iban", "otp",
})
SENSITIVE_SUFFIXES: tuple[str, ...] = (
    "_password", "_passwd", "_secret", "_token", "_api_key", "_apikey", "_cookie", "_private_key",
    "_secret_key", "_access_key", "_credentials",
)
# Whole keys (OTel semantic conventions) that name a person.
SENSITIVE_FULL = frozenset({"user.email", "user.full_name", "user.name", "enduser.email"})
DEFAULT_PSEUDONYMIZE_KEYS: tuple[str, ...] = (
    "enduser.id", "enduser.pseudo.id", "user.id", "user_id", "userid", "customer.id", "customer_id",
)
# Keys the pipeline itself reads: kept in allow-list mode (their values are still scanned).
ALWAYS_ALLOWED = frozenset({
    "service.name", "service.namespace", "service.version", "service.instance.id", "session.id",
})


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Validators: a regex match -> is it really a hit (``_sub`` keeps the text otherwise).
def bearer_ok(m: re.Match[str]) -> bool:
    cred = m.group(2)
    return not cred.startswith("[") and (_DIGIT.search(cred) is not None or len(cred) >= 20)


def basic_ok(m: re.Match[str]) -> bool:
    cred = m.group(2)
    try:
        raw = binascii.a2b_base64(cred + "=" * (-len(cred) % 4))
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return ":" in text and text.isprintable()


def card_ok(m: re.Match[str]) -> bool:
    digits = _NONDIGIT.sub("", m.group(0))
    return 13 <= len(digits) <= 19 and CARD_PREFIX.match(digits) is not None and luhn_ok(digits)


def ipv4_ok(m: re.Match[str]) -> bool:
    s = m.group(0)
    return not (s.startswith("127.") or s == "0.0.0.0")


def ipv6_ok(m: re.Match[str]) -> bool:
    cand = m.group(0)
    try:
        addr = ipaddress.IPv6Address(cand.split("%", 1)[0])
    except ValueError:
        return False
    if addr.is_loopback or addr.is_unspecified:
        return False
    groups = [g for g in re.split(r"[:.]", cand.split("%", 1)[0]) if g]
    return len(groups) >= 2 and sum(len(g) for g in groups) >= 5


def phone_ok(m: re.Match[str]) -> bool:
    s = m.group(0)
    n = len(_NONDIGIT.sub("", s))
    if s.startswith("+"):
        return 8 <= n <= 15
    if s.startswith("0"):
        return 9 <= n <= 12
    return 10 <= n <= 11


def entropy(s: str) -> float:
    """Shannon entropy of ``s`` in bits per character."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def entropy_ok(m: re.Match[str]) -> bool:
    """Random-looking: mixed case, a digit or base64 symbol, few word-like runs, high entropy."""
    s = m.group(0)
    if s == s.lower() or s == s.upper():  # one case only (hex ids, base32): settled in C
        return False
    upper = sum(1 for c in s if c.isupper())
    lower = sum(1 for c in s if c.islower())
    if upper < 2 or lower < 2 or s.count("/") > 2 or not (_DIGIT.search(s) or "+" in s or "=" in s):
        return False
    if sum(len(w) for w in _WORDISH.findall(s)) >= 0.6 * len(s):  # CamelCase identifiers, paths
        return False
    return entropy(s) >= 4.2
