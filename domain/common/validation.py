"""Collects every validation failure of one input before anything is written."""

from __future__ import annotations

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
        if "\x00" in cleaned:
            self.add(field, "Must not contain NUL characters.")
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
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        v.add(field, f"Use at most {places} decimal places.")
        return None
    return amount
