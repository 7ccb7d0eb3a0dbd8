"""Collects every validation failure of one input before anything is written."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from email_validator import EmailNotValidError, validate_email

from domain.errors import DomainError, ErrorCode, FieldError

_PASSWORD_SPECIAL = re.compile(r"[^A-Za-z0-9]")
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,49}$")
_PHONE = re.compile(r"^\+?[0-9 ().-]{6,24}$")
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")


class Validator:
    """Accumulates `FieldError`s; `raise_if_invalid()` raises them all at once."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field: str | None, message: str, code: ErrorCode = ErrorCode.INVALID) -> None:
        self.errors.append(FieldError(field, message, code))

    def has(self, field: str) -> bool:
        return any(e.field == field for e in self.errors)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise DomainError(self.errors)

    def text(
        self, field: str, value: Any, *, required: bool = False, max_length: int = 255, min_length: int = 0
    ) -> str | None:
        """Strips and checks a string; returns the cleaned value or None."""
        if value is None:
            if required:
                self.add(field, "This field is required.", ErrorCode.REQUIRED)
            return None
        if not isinstance(value, str):
            self.add(field, "Must be a string.")
            return None
        cleaned = value.strip()
        if not cleaned:
            if required:
                self.add(field, "This field is required.", ErrorCode.REQUIRED)
            return None if required else ""
        problem = text_problem(cleaned)
        if problem:
            self.add(field, problem)
            return None
        if len(cleaned) > max_length:
            self.add(field, f"Must be at most {max_length} characters.")
            return None
        if len(cleaned) < min_length:
            self.add(field, f"Must be at least {min_length} characters.")
            return None
        return cleaned

    def email(self, field: str, value: Any, *, required: bool = True) -> str | None:
        cleaned = self.text(field, value, required=required, max_length=254)
        if not cleaned:
            return cleaned
        try:
            return validate_email(cleaned, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            self.add(field, f"Enter a valid email address ({exc}).")
            return None

    def username(self, field: str, value: Any) -> str | None:
        cleaned = self.text(field, value, required=True, max_length=50)
        if cleaned and not _USERNAME.match(cleaned):
            self.add(field, "Use 3-50 letters, digits, dots, dashes or underscores, starting with a letter or digit.")
            return None
        return cleaned

    def phone(self, field: str, value: Any, *, required: bool = False) -> str | None:
        cleaned = self.text(field, value, required=required, max_length=24)
        if cleaned and not _PHONE.match(cleaned):
            self.add(field, "Enter a valid phone number (digits, spaces, +, -, parentheses).")
            return None
        return cleaned

    def color(self, field: str, value: Any) -> str | None:
        cleaned = self.text(field, value, max_length=7)
        if cleaned and not _COLOR.match(cleaned):
            self.add(field, "Use a hex colour like #1A2B3C.")
            return None
        return cleaned

    def password(
        self, field: str, value: Any, confirmation_field: str | None = None, confirmation: Any = None
    ) -> str | None:
        """8-20 characters with a digit, an upper-case and a lower-case letter and a special character."""
        if not isinstance(value, str) or not value:
            self.add(field, "This field is required.", ErrorCode.REQUIRED)
            return None
        problems = []
        if not 8 <= len(value) <= 20:
            problems.append("be 8-20 characters long")
        if not any(c.isdigit() for c in value):
            problems.append("include a number")
        if not any(c.isupper() for c in value):
            problems.append("include an uppercase letter")
        if not any(c.islower() for c in value):
            problems.append("include a lowercase letter")
        if not _PASSWORD_SPECIAL.search(value):
            problems.append("include a special character")
        if problems:
            self.add(field, "Password must " + ", ".join(problems) + ".", ErrorCode.WEAK_PASSWORD)
            return None
        if confirmation_field is not None and confirmation != value:
            self.add(confirmation_field, "Passwords do not match.")
            return None
        return value


def text_problem(value: str) -> str | None:
    """Why PostgreSQL would refuse to store this text (NUL, or an unpaired surrogate that has no UTF-8), or None."""
    if "\x00" in value:
        return "Must not contain NUL characters."
    if value.isascii():  # O(1) in CPython, and ASCII has no surrogates: most text needs no trial encoding
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return "Must be valid Unicode text."
    return None


JSON_NUMBER_LIMIT = 10**15  # integers this small are exact as doubles (what JSON readers, and ours, turn numbers into)
JSON_MAX_PLACES = 30


def json_problem(value: Any, *, max_depth: int, max_bytes: int) -> str | None:
    """Why a decoded JSON value must not be stored, or None: nested deeper than `max_depth`, more than about
    `max_bytes` of JSON, text `text_problem` refuses, or a number that would not read back as a number (not finite,
    ±10^15 or beyond, more than 30 decimal places: 1e5000 reads back as infinity, which no JSON can carry).

    Walks the value with a stack, so no nesting exhausts Python's recursion."""
    if type(value) is dict and max_depth >= 1 and _flat_text_fits(value, max_bytes):  # most metadata: one pass
        return None
    budget = max_bytes
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        problem = None
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"Must not be nested more than {max_depth} levels deep."
            budget -= 2
            if isinstance(item, list):
                stack.extend((element, depth + 1) for element in item)
            for key, element in item.items() if isinstance(item, dict) else ():
                if not isinstance(key, str):
                    return "Object keys must be text."
                problem = text_problem(key)
                if problem:
                    break
                budget -= len(key) + 4
                stack.append((element, depth + 1))
        elif isinstance(item, str):
            problem = text_problem(item)
            budget -= len(item) + 2
        elif item is None or isinstance(item, bool):
            budget -= 5
        elif isinstance(item, int | float | Decimal):
            problem = _json_number_problem(item)
            budget -= 0 if problem else len(str(item))
        else:
            return "Must be plain JSON."
        if problem:
            return problem
        if budget < 0:
            return f"Must be at most {max_bytes:,} bytes of JSON."
    return None


def _flat_text_fits(value: dict[Any, Any], max_bytes: int) -> bool:
    """An object of ASCII text values without NUL within `max_bytes`: what `json_problem` accepts, decided in one
    pass (False: not such an object, let the full walk decide)."""
    budget = max_bytes - 2
    for key, element in value.items():
        text = key + element if type(key) is str and type(element) is str else None
        if text is None or not text.isascii() or "\x00" in text:
            return False
        budget -= len(key) + len(element) + 6
    return budget >= 0


def _json_number_problem(number: int | float | Decimal) -> str | None:
    if isinstance(number, Decimal):
        finite = number.is_finite()
    else:  # an int never converts to float here: past ~10^308 that raises
        finite = isinstance(number, int) or math.isfinite(number)
    if not finite or not -JSON_NUMBER_LIMIT < number < JSON_NUMBER_LIMIT:
        return f"Numbers must be finite and below {JSON_NUMBER_LIMIT:.0e} in size."
    if isinstance(number, Decimal) and decimal_places(number) > JSON_MAX_PLACES:
        return f"Numbers may have at most {JSON_MAX_PLACES} decimal places."
    return None


MAX_AMOUNT = Decimal("1000000000000")


def parse_amount(
    v: Validator, field: str, value: Any, *, places: int = 6, required: bool = True, allow_zero: bool = False
) -> Decimal | None:
    """A positive, finite Decimal with at most `places` decimals and below 10^12; strings and ints accepted."""
    if value is None:
        if required:
            v.add(field, "This field is required.", ErrorCode.REQUIRED)
        return None
    if isinstance(value, bool) or not isinstance(value, (Decimal, str, int)):
        v.add(field, 'Send amounts as decimal strings, e.g. "100.00".')
        return None
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        v.add(field, "Not a decimal number.")
        return None
    if not amount.is_finite():
        v.add(field, "Must be a finite number.")
        return None
    if amount < 0 or (amount == 0 and not allow_zero):
        v.add(field, "Must be greater than zero." if not allow_zero else "Must not be negative.")
        return None
    if amount >= MAX_AMOUNT:
        v.add(field, "Amount is too large.")
        return None
    if decimal_places(amount) > places:
        v.add(field, f"Use at most {places} decimal places.")
        return None
    return amount


def decimal_places(amount: Decimal) -> int:
    """Digits after the point once trailing zeros are dropped, read from the digits themselves: `normalize()`
    works in the default context, which rounds 1e-9999999999 to 0 (no decimals at all)."""
    _, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int) or not any(digits):
        return 0
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros))
