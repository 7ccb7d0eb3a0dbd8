"""The second factor: TOTP codes, each accepted once per time step, and single-use recovery codes.

A code matches the previous, current or next time step (clock drift); the step is then claimed with one
conditional UPDATE, so two requests carrying the same code cannot both pass, and a code seen over a shoulder is
dead once used. Recovery codes stand in for a TOTP code when the authenticator is lost: ten, shown once, stored as
SHA-256 (80 random bits each: no slow hash needed, and a lookup by digest) and burned by a conditional UPDATE too.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta

import pyotp
from tortoise.expressions import Q

from domain.accounts.models import RecoveryCode, User
from domain.accounts.passwords import token_digest
from domain.errors import ErrorCode, FieldError

RECOVERY_CODE_COUNT = 10
BAD_TOTP = "bad_totp"
TOTP_REUSED = "totp_reused"


def matching_step(secret: str | None, code: str | None, at: datetime) -> int | None:
    """The time step whose code this is (previous, current or next), or None."""
    if not secret or not isinstance(code, str) or not code.strip() or len(code) > 16:
        return None
    totp = pyotp.TOTP(secret)
    for offset in (0, -1, 1):
        moment = at + timedelta(seconds=offset * totp.interval)
        if totp.verify(code.strip(), for_time=moment):
            return totp.timecode(moment)
    return None


async def use_totp(user: User, code: str | None, at: datetime) -> str | None:
    """Accepts a code once: None when it is right and now used, else why not (BAD_TOTP, TOTP_REUSED)."""
    step = matching_step(user.totp_secret, code, at)
    if step is None:
        return BAD_TOTP
    claimed = await User.filter(Q(totp_last_step__isnull=True) | Q(totp_last_step__lt=step), id=user.id).update(
        totp_last_step=step
    )
    return None if claimed == 1 else TOTP_REUSED


def wrong_totp(field: str, reason: str | None = None) -> FieldError:
    """The refusal of a missing or wrong code (`reason` from `use_totp`)."""
    if reason == TOTP_REUSED:
        return FieldError(field, "This code was used already: enter the next one.", ErrorCode.INVALID_TOTP)
    return FieldError(field, "Enter the current code from your authenticator app.", ErrorCode.INVALID_TOTP)


def _normalised(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def _new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 80 bits, 16 characters
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


async def replace_recovery_codes(user_id: int) -> list[str]:
    """Stores a new set of codes in place of the old ones (inside the caller's transaction) and returns them: the
    only time they are readable."""
    codes = [_new_code() for _ in range(RECOVERY_CODE_COUNT)]
    await RecoveryCode.filter(user_id=user_id).delete()
    await RecoveryCode.bulk_create(
        [RecoveryCode(user_id=user_id, code_hash=token_digest(_normalised(code))) for code in codes]
    )
    return codes


async def use_recovery_code(user_id: int, code: str, at: datetime) -> bool:
    """Burns an unused code of the user; False when it is not one."""
    if not isinstance(code, str) or not code.strip() or len(code) > 64:
        return False
    burned = await RecoveryCode.filter(user_id=user_id, code_hash=token_digest(_normalised(code)), used_at=None).update(
        used_at=at
    )
    return burned == 1


async def recovery_codes_left(user_id: int) -> int:
    return await RecoveryCode.filter(user_id=user_id, used_at=None).count()


async def drop_recovery_codes(user_id: int) -> None:
    await RecoveryCode.filter(user_id=user_id).delete()
