"""Personal settings (seed 003) through the GraphQL HTTP API: profile, theme and notification preferences, password
change, two-factor sign-in, and email change with real confirmation emails (aiosmtpd)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest

from domain import config as domain_config
from domain.accounts import settings as personal
from domain.accounts.models import RecoveryCode, Role, Session, User
from domain.audit.models import AuditEvent
from domain.events import services as events
from domain.events.models import OutboxEvent
from tests.conftest import GQL, PASSWORD, Factory
from tests.test_accounts import attempt_login, codes
from tests.test_alerts import PUBLIC_URL, Mailbox, mailbox, public_url, run_jobs  # noqa: F401 (fixtures)

NEW_PASSWORD = "New-pass-2!"
ME = "{ me { id email displayName theme totpEnabled avatarUrl notificationPreferences } }"
ME_UPDATE = """mutation($i: MeUpdateInput!) { meUpdate(input: $i) {
  user { displayName theme notificationPreferences } errors { field code message } } }"""
PASSWORD_CHANGE = """mutation($i: PasswordChangeInput!) { passwordChange(input: $i) {
  revokedSessions errors { field code message } } }"""
TOTP_SETUP = "mutation { totpSetup { secret otpauthUri errors { field code message } } }"
TOTP_ENABLE = """mutation($i: TotpEnableInput!) { totpEnable(input: $i) {
  user { totpEnabled } errors { field code message } } }"""
TOTP_DISABLE = """mutation($i: TotpDisableInput!) { totpDisable(input: $i) {
  user { totpEnabled } errors { field code message } } }"""
EMAIL_REQUEST = """mutation($i: EmailChangeRequestInput!) { emailChangeRequest(input: $i) {
  newEmail errors { field code message } } }"""
EMAIL_CONFIRM = """mutation($i: EmailChangeConfirmInput!) { emailChangeConfirm(input: $i) {
  user { email } errors { field code message } } }"""
ALL_ON = dict.fromkeys(personal.NOTIFICATION_KEYS, True)


@pytest.fixture(autouse=True)
async def empty_queues(app: Any) -> AsyncIterator[None]:
    app.state.broker.flush_all()
    yield
    app.state.broker.flush_all()


def wrong_code(secret: str) -> str:
    """A code the verifier rejects: not the previous, current or next one."""
    totp, now = pyotp.TOTP(secret), time.time()
    accepted = {totp.at(now + d) for d in (-30, 0, 30)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in accepted)


async def actions(user_id: int) -> list[tuple[str, str]]:
    rows = await AuditEvent.filter(object_type="User", object_id=str(user_id)).order_by("id")
    return [(str(e.type), e.action) for e in rows]


# --- meUpdate --------------------------------------------------------------------------------------------------


async def test_me_update_changes_name_theme_and_merges_notification_preferences(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=1)
    token = await gql.login(tenant.admins[0].email)
    before = (await gql(ME, token=token))["me"]
    # when
    first = await gql(
        ME_UPDATE,
        {"i": {"displayName": "  Cara C. ", "theme": "DARK", "notificationPreferences": {"assignedTickets": False}}},
        token=token,
    )
    second = await gql(ME_UPDATE, {"i": {"notificationPreferences": {"assignedReminders": False}}}, token=token)
    # then
    assert before["theme"] == "SYSTEM" and before["notificationPreferences"] == ALL_ON
    assert first["meUpdate"]["errors"] == []
    assert first["meUpdate"]["user"]["displayName"] == "Cara C."
    assert first["meUpdate"]["user"]["theme"] == "DARK"
    me = (await gql(ME, token=token))["me"]
    assert me["displayName"] == "Cara C." and me["theme"] == "DARK"
    assert me["notificationPreferences"] == {**ALL_ON, "assignedTickets": False, "assignedReminders": False}
    assert second["meUpdate"]["user"]["notificationPreferences"] == me["notificationPreferences"]
    assert me["avatarUrl"] is None and me["totpEnabled"] is False
    assert [a for a in await actions(tenant.admins[0].id) if a[1] == "me.update"] == [("DATA_CHANGE", "me.update")] * 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"displayName": "x" * 201}, "displayName"),
        ({"displayName": "   "}, "displayName"),
        ({"notificationPreferences": {"marketing": True}}, "notificationPreferences"),
        ({"notificationPreferences": {"assignedTickets": "no"}}, "notificationPreferences"),
        ({"notificationPreferences": ["assignedTickets"]}, "notificationPreferences"),
        ({"notificationPreferences": True}, "notificationPreferences"),
    ],
    ids=["name-too-long", "name-blank", "unknown-key", "not-boolean", "list", "scalar"],
)
async def test_me_update_refuses_invalid_input_and_changes_nothing(
    gql: GQL, factory: Factory, change: dict[str, Any], field: str
) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    # when
    payload = (await gql(ME_UPDATE, {"i": {"theme": "LIGHT", **change}}, token=token))["meUpdate"]
    # then
    assert payload["user"] is None
    assert [(e["field"], e["code"]) for e in payload["errors"]] in ([(field, "INVALID")], [(field, "REQUIRED")])
    user = await User.get(id=owner.id)
    assert user.theme == "SYSTEM" and user.display_name == "Owner 1" and user.notification_preferences == {}


async def test_me_update_and_password_change_need_a_signed_in_user(gql: GQL) -> None:
    update = await gql(ME_UPDATE, {"i": {"theme": "DARK"}})
    change = await gql(
        PASSWORD_CHANGE,
        {"i": {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD, "newPasswordConfirmation": NEW_PASSWORD}},
    )
    assert codes(update["meUpdate"]) == ["FORBIDDEN"]
    assert codes(change["passwordChange"]) == ["FORBIDDEN"]


# --- passwordChange --------------------------------------------------------------------------------------------


def change_input(current: str = PASSWORD, new: str = NEW_PASSWORD, confirmation: str | None = None) -> dict:
    return {"i": {"currentPassword": current, "newPassword": new, "newPasswordConfirmation": confirmation or new}}


async def test_password_change_signs_out_other_sessions_and_keeps_this_one(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    here, elsewhere = await gql.login(owner.email), await gql.login(owner.username)
    outbox_before = await OutboxEvent.filter(topic=events.ACCESS_REVOKED).count()
    # when
    payload = (await gql(PASSWORD_CHANGE, change_input(), token=here))["passwordChange"]
    # then
    assert payload == {"revokedSessions": 1, "errors": []}
    assert (await gql(ME, token=here))["me"]["email"] == owner.email
    assert (await gql.raw(ME, token=elsewhere)).status_code == 401
    assert codes(await attempt_login(gql, owner.email)) == ["INVALID_CREDENTIALS"]
    assert (await attempt_login(gql, owner.email, NEW_PASSWORD))["errors"] == []
    assert await OutboxEvent.filter(topic=events.ACCESS_REVOKED).count() == outbox_before + 1
    assert ("SECURITY", "password.change") in await actions(owner.id)
    assert await Session.filter(user_id=owner.id, revoked_at=None).count() == 2  # this one and the new login


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (change_input(current="Wrong-pass-1"), [("currentPassword", "INVALID")]),
        (change_input(new="short"), [("newPassword", "WEAK_PASSWORD")]),
        (change_input(new="alllowercase1!"), [("newPassword", "WEAK_PASSWORD")]),
        (change_input(confirmation="Other-pass-3!"), [("newPasswordConfirmation", "INVALID")]),
        (change_input(new=PASSWORD), [("newPassword", "INVALID")]),
        (change_input(current=""), [("currentPassword", "REQUIRED")]),
    ],
    ids=["wrong-current", "too-short", "no-uppercase", "mismatch", "same-as-current", "no-current"],
)
async def test_password_change_refusals_keep_the_old_password_and_sessions(
    gql: GQL, factory: Factory, given: dict, expected: list[tuple[str, str]]
) -> None:
    # given
    _, owner = await factory.partner()
    here, elsewhere = await gql.login(owner.email), await gql.login(owner.email)
    # when
    payload = (await gql(PASSWORD_CHANGE, given, token=here))["passwordChange"]
    # then
    assert [(e["field"], e["code"]) for e in payload["errors"]] == expected
    assert payload["revokedSessions"] is None
    assert (await gql(ME, token=elsewhere))["me"] is not None
    assert (await attempt_login(gql, owner.email))["errors"] == []


async def test_a_session_guessing_the_current_password_is_throttled_before_any_check(
    gql: GQL, factory: Factory
) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    # when
    for _ in range(5):
        payload = (await gql(PASSWORD_CHANGE, change_input(current="Wrong-pass-1"), token=token))["passwordChange"]
        assert codes(payload) == ["INVALID"]
    refused = [(await gql(PASSWORD_CHANGE, change_input(), token=token))["passwordChange"] for _ in range(2)]
    # then the right password is not even checked, and sign-in itself is not locked
    assert [codes(p) for p in refused] == [["RATE_LIMITED"]] * 2
    assert re.search(r"Try again in \d+ seconds", refused[0]["errors"][0]["message"])
    assert (await attempt_login(gql, owner.email))["errors"] == []
    failed = await AuditEvent.filter(action="password.change.failed").order_by("id")
    assert [e.details["reason"] for e in failed] == ["bad_password"] * 5 + ["rate_limited"]


# --- two-factor sign-in ----------------------------------------------------------------------------------------


async def setup_totp(gql: GQL, token: str) -> str:
    payload = (await gql(TOTP_SETUP, token=token))["totpSetup"]
    assert payload["errors"] == []
    return payload["secret"]


async def test_totp_setup_uses_the_partner_brand_as_issuer_and_changes_nothing_until_enabled(
    gql: GQL, factory: Factory
) -> None:
    # given
    tenant = await factory.tenant(customers=1, name="Bright Call")
    admin = await factory.admin()
    customer_token, platform_token = await gql.login(tenant.admins[0].email), await gql.login(admin.email)
    # when
    tenant_setup = (await gql(TOTP_SETUP, token=customer_token))["totpSetup"]
    platform_setup = (await gql(TOTP_SETUP, token=platform_token))["totpSetup"]
    # then
    uri = urlparse(tenant_setup["otpauthUri"])
    assert uri.scheme == "otpauth" and parse_qs(uri.query)["issuer"] == ["Bright Call"]
    assert parse_qs(uri.query)["secret"] == [tenant_setup["secret"]]
    assert parse_qs(urlparse(platform_setup["otpauthUri"]).query)["issuer"] == ["Partnerdesk"]
    user = await User.get(id=tenant.admins[0].id)
    assert user.totp_secret == tenant_setup["secret"] and not user.totp_enabled
    assert (await attempt_login(gql, tenant.admins[0].email))["errors"] == []


def next_code(secret: str) -> str:
    """The next time step's code: accepted (clock drift) and not yet used when the current one just was."""
    return pyotp.TOTP(secret).at(time.time() + 30)


async def test_totp_enable_then_sign_in_needs_a_code_and_wrong_codes_are_throttled(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    secret = await setup_totp(gql, token)
    # when
    refused = (await gql(TOTP_ENABLE, {"i": {"code": wrong_code(secret)}}, token=token))["totpEnable"]
    enabled = (await gql(TOTP_ENABLE, {"i": {"code": pyotp.TOTP(secret).now()}}, token=token))["totpEnable"]
    again = (await gql(TOTP_SETUP, token=token))["totpSetup"]
    without_code = await attempt_login(gql, owner.email)
    used_for_enabling = await attempt_login(gql, owner.email, totp_code=pyotp.TOTP(secret).now())
    with_code = await attempt_login(gql, owner.email, totp_code=next_code(secret))
    # then
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("code", "INVALID_TOTP")]
    assert enabled["user"] == {"totpEnabled": True} and enabled["errors"] == []
    assert codes(again) == ["NOT_ELIGIBLE"] and (await User.get(id=owner.id)).totp_secret == secret
    assert codes(without_code) == ["INVALID_TOTP"]
    assert codes(used_for_enabling) == ["INVALID_TOTP"]  # one use per time step, whatever it was used for
    assert with_code["errors"] == [] and with_code["token"]
    # wrong codes are guesses: they count like wrong passwords, and then even a good code waits
    for _ in range(5):
        assert codes(await attempt_login(gql, owner.email, totp_code=wrong_code(secret))) == ["INVALID_TOTP"]
    assert codes(await attempt_login(gql, owner.email, totp_code=pyotp.TOTP(secret).now())) == ["RATE_LIMITED"]
    assert [a for a in await actions(owner.id) if a[1].startswith("2fa.")] == [
        ("SECURITY", "2fa.setup"),
        ("SECURITY", "2fa.enable"),
    ]


async def test_totp_disable_needs_a_current_code_or_the_password(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    secret = await setup_totp(gql, token)
    await gql(TOTP_ENABLE, {"i": {"code": pyotp.TOTP(secret).now()}}, token=token)
    # when
    nothing = (await gql(TOTP_DISABLE, {"i": {}}, token=token))["totpDisable"]
    bad_code = (await gql(TOTP_DISABLE, {"i": {"code": wrong_code(secret)}}, token=token))["totpDisable"]
    bad_password = (await gql(TOTP_DISABLE, {"i": {"password": "Wrong-pass-1"}}, token=token))["totpDisable"]
    by_password = (await gql(TOTP_DISABLE, {"i": {"password": PASSWORD}}, token=token))["totpDisable"]
    # then
    assert codes(nothing) == ["REQUIRED"]
    assert [(e["field"], e["code"]) for e in bad_code["errors"]] == [("code", "INVALID_TOTP")]
    assert [(e["field"], e["code"]) for e in bad_password["errors"]] == [("password", "INVALID")]
    assert by_password == {"user": {"totpEnabled": False}, "errors": []}
    assert (await User.get(id=owner.id)).totp_secret is None
    assert (await attempt_login(gql, owner.email))["errors"] == []
    # and by code, after turning it on again
    secret = await setup_totp(gql, token)
    await gql(TOTP_ENABLE, {"i": {"code": pyotp.TOTP(secret).now()}}, token=token)
    by_code = (await gql(TOTP_DISABLE, {"i": {"code": next_code(secret)}}, token=token))["totpDisable"]
    assert by_code == {"user": {"totpEnabled": False}, "errors": []}
    assert ("SECURITY", "2fa.disable") in await actions(owner.id)
    assert ("SECURITY", "2fa.disable.failed") in await actions(owner.id)


# --- recovery codes --------------------------------------------------------------------------------------------

RECOVERY_GENERATE = """mutation($i: TotpRecoveryCodesGenerateInput!) { totpRecoveryCodesGenerate(input: $i) {
  recoveryCodes user { totpRecoveryCodesLeft } errors { field code message } } }"""
LOGIN_WITH_RECOVERY = """mutation($i: LoginInput!) { login(input: $i) {
  token user { totpRecoveryCodesLeft } errors { field code message } } }"""
TOTP_ENABLE_WITH_CODES = """mutation($i: TotpEnableInput!) { totpEnable(input: $i) {
  recoveryCodes user { totpEnabled totpRecoveryCodesLeft } errors { field code message } } }"""


async def enable_totp(gql: GQL, token: str) -> tuple[str, list[str]]:
    secret = await setup_totp(gql, token)
    enabled = await gql(TOTP_ENABLE_WITH_CODES, {"i": {"code": pyotp.TOTP(secret).now()}}, token=token)
    assert enabled["totpEnable"]["errors"] == []
    return secret, enabled["totpEnable"]["recoveryCodes"]


async def sign_in_with_recovery_code(gql: GQL, login: str, code: str) -> dict[str, Any]:
    data = await gql(LOGIN_WITH_RECOVERY, {"i": {"login": login, "password": PASSWORD, "recoveryCode": code}})
    return data["login"]


async def test_totp_enable_shows_ten_recovery_codes_once_and_stores_only_their_hashes(
    gql: GQL, factory: Factory
) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    # when
    _, recovery = await enable_totp(gql, token)
    # then
    assert len(recovery) == len(set(recovery)) == 10
    assert all(re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}", code) for code in recovery)
    stored = await RecoveryCode.filter(user_id=owner.id).values_list("code_hash", flat=True)
    assert len(stored) == 10 and not set(stored) & set(recovery)
    assert not any(code.replace("-", "") in str(h) for code in recovery for h in stored)
    assert (await gql("{ me { totpRecoveryCodesLeft } }", token=token))["me"] == {"totpRecoveryCodesLeft": 10}
    enable = await AuditEvent.get(action="2fa.enable")
    assert enable.details == {"recovery_codes": 10}
    assert not any(code in str(enable.details) for code in recovery)


async def test_a_recovery_code_signs_in_once_in_place_of_a_totp_code(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    _, recovery = await enable_totp(gql, await gql.login(owner.email))
    # when: typed in capitals with spaces, then the same code again
    first = await sign_in_with_recovery_code(gql, owner.email, f"  {recovery[3].upper().replace('-', ' ')} ")
    again = await sign_in_with_recovery_code(gql, owner.email, recovery[3])
    made_up = await sign_in_with_recovery_code(gql, owner.email, "aaaa-bbbb-cccc-dddd")
    # then
    assert first["errors"] == [] and first["token"]
    assert first["user"] == {"totpRecoveryCodesLeft": 9}
    assert [(e["field"], e["code"]) for e in again["errors"]] == [("recoveryCode", "INVALID_TOTP")]
    assert again["token"] is None and codes(made_up) == ["INVALID_TOTP"]
    signed_in = await AuditEvent.filter(action="login", actor_user_id=owner.id).order_by("-id").first()
    assert signed_in.details["second_factor"] == "recovery_code"
    assert signed_in.details["recovery_codes_left"] == 9
    failed = await AuditEvent.filter(action="login.failed").order_by("id")
    assert [e.details["reason"] for e in failed] == ["bad_recovery_code"] * 2


async def test_regenerating_recovery_codes_replaces_the_old_ones(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    secret, old = await enable_totp(gql, token)
    # when
    without_proof = (await gql(RECOVERY_GENERATE, {"i": {}}, token=token))["totpRecoveryCodesGenerate"]
    wrong_password = (await gql(RECOVERY_GENERATE, {"i": {"password": "Wrong-pass-1"}}, token=token))[
        "totpRecoveryCodesGenerate"
    ]
    by_code = (await gql(RECOVERY_GENERATE, {"i": {"code": next_code(secret)}}, token=token))[
        "totpRecoveryCodesGenerate"
    ]
    by_password = (await gql(RECOVERY_GENERATE, {"i": {"password": PASSWORD}}, token=token))[
        "totpRecoveryCodesGenerate"
    ]
    # then
    assert codes(without_proof) == ["REQUIRED"] and without_proof["recoveryCodes"] is None
    assert [(e["field"], e["code"]) for e in wrong_password["errors"]] == [("password", "INVALID")]
    assert by_code["errors"] == [] and len(by_code["recoveryCodes"]) == 10
    new = by_password["recoveryCodes"]
    assert by_password["user"] == {"totpRecoveryCodesLeft": 10}
    assert not set(new) & (set(old) | set(by_code["recoveryCodes"]))
    assert codes(await sign_in_with_recovery_code(gql, owner.email, old[0])) == ["INVALID_TOTP"]
    assert codes(await sign_in_with_recovery_code(gql, owner.email, by_code["recoveryCodes"][0])) == ["INVALID_TOTP"]
    assert (await sign_in_with_recovery_code(gql, owner.email, new[0]))["errors"] == []
    generated = await AuditEvent.filter(action="2fa.recovery_codes.generate").order_by("id")
    assert [e.details for e in generated] == [
        {"recovery_codes": 10, "proof": "code"},
        {"recovery_codes": 10, "proof": "password"},
    ]


async def test_recovery_codes_need_2fa_on_and_go_when_it_is_turned_off(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    refused = (await gql(RECOVERY_GENERATE, {"i": {"password": PASSWORD}}, token=token))["totpRecoveryCodesGenerate"]
    _, recovery = await enable_totp(gql, token)
    # when
    await gql(TOTP_DISABLE, {"i": {"password": PASSWORD}}, token=token)
    # then
    assert codes(refused) == ["NOT_ELIGIBLE"]
    assert await RecoveryCode.filter(user_id=owner.id).count() == 0
    assert (await gql("{ me { totpRecoveryCodesLeft } }", token=token))["me"] == {"totpRecoveryCodesLeft": 0}
    assert (await sign_in_with_recovery_code(gql, owner.email, recovery[0]))["errors"] == []  # 2FA is off


# --- email change ----------------------------------------------------------------------------------------------


def token_in(message: Any) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"confirm-email\?token=(\S+)", text)
    assert match, text
    return match.group(1)


async def test_email_change_mails_a_branded_link_to_the_new_address_and_notifies_the_old_one(
    app: Any,
    gql: GQL,
    factory: Factory,
    mailbox: Mailbox,  # noqa: F811
) -> None:
    # given
    tenant = await factory.tenant(customers=1, name="Bright Call")
    user = tenant.admins[0]
    token = await gql.login(user.email)
    # when
    requested = (
        await gql(EMAIL_REQUEST, {"i": {"newEmail": "Cara@New.example.com", "password": PASSWORD}}, token=token)
    )["emailChangeRequest"]
    await run_jobs(app)
    # then: nothing changed yet, one email to the new address with the partner's brand
    assert requested == {"newEmail": "Cara@new.example.com", "errors": []}
    assert (await User.get(id=user.id)).email == user.email
    assert [e.rcpt_tos for e in mailbox.envelopes] == [["Cara@new.example.com"]]
    confirmation = mailbox.messages[0]
    assert confirmation["Subject"] == "Bright Call: Confirm your new email address"
    link_token = token_in(confirmation)
    assert "desk.brand.example/settings/profile/confirm-email?token=" in confirmation.get_body(("html",)).get_content()
    # when: the link is opened (signed out is fine)
    confirmed = (await gql(EMAIL_CONFIRM, {"i": {"token": link_token}}))["emailChangeConfirm"]
    await run_jobs(app)
    # then
    assert confirmed == {"user": {"email": "Cara@new.example.com"}, "errors": []}
    assert (await attempt_login(gql, "cara@new.example.com"))["errors"] == []
    assert codes(await attempt_login(gql, user.email)) == ["INVALID_CREDENTIALS"]
    assert [e.rcpt_tos for e in mailbox.envelopes][1:] == [[user.email]]
    assert "Cara@new.example.com" in mailbox.messages[1].get_body(("plain",)).get_content()
    # a used link is dead: the current email is no longer the one it was issued for
    again = (await gql(EMAIL_CONFIRM, {"i": {"token": link_token}}))["emailChangeConfirm"]
    assert [(e["field"], e["code"]) for e in again["errors"]] == [("token", "INVALID")]
    assert [a[1] for a in await actions(user.id) if a[1].startswith("email_change")] == [
        "email_change.request",
        "email_change.confirm",
    ]


async def test_email_change_request_refusals(gql: GQL, factory: Factory) -> None:
    # given
    tenant = await factory.tenant(customers=2)
    token = await gql.login(tenant.admins[0].email)
    taken = tenant.admins[1].email

    async def request(new_email: str, password: str = PASSWORD) -> list[tuple[str, str]]:
        payload = (await gql(EMAIL_REQUEST, {"i": {"newEmail": new_email, "password": password}}, token=token))[
            "emailChangeRequest"
        ]
        return [(e["field"], e["code"]) for e in payload["errors"]]

    # when / then
    assert await request("new@example.com", "Wrong-pass-1") == [("password", "INVALID")]
    assert await request("not-an-email") == [("newEmail", "INVALID")]
    assert await request(taken.upper()) == [("newEmail", "UNIQUE")]
    assert await request(tenant.admins[0].email) == [("newEmail", "INVALID")]
    assert await OutboxEvent.filter(topic=personal.EMAIL_CHANGE_REQUESTED).count() == 0
    assert ("SECURITY", "email_change.request.failed") in await actions(tenant.admins[0].id)


async def test_email_change_confirm_refuses_forged_expired_and_taken(gql: GQL, factory: Factory) -> None:
    # given
    _, owner = await factory.partner()
    later = int(time.time()) + 3600
    good = personal.email_change_token(owner.id, "fresh@example.com", owner.email, later)
    body, signature = good.split(".")
    forged = personal.email_change_token(owner.id, "fresh@example.com", owner.email, later + 1).split(".")[0]
    expired = personal.email_change_token(owner.id, "fresh@example.com", owner.email, int(time.time()) - 1)
    other = await factory.user(role=Role.PLATFORM_ADMIN)

    async def confirm(token: str) -> list[tuple[str, str]]:
        payload = (await gql(EMAIL_CONFIRM, {"i": {"token": token}}))["emailChangeConfirm"]
        return [(e["field"], e["code"]) for e in payload["errors"]]

    # when / then
    assert await confirm(f"{forged}.{signature}") == [("token", "INVALID")]
    assert await confirm(f"{body}.{signature[:-2]}") == [("token", "INVALID")]
    assert await confirm("garbage") == [("token", "INVALID")]
    assert await confirm(expired) == [("token", "INVALID")]
    await User.filter(id=other.id).update(email="Fresh@example.com", email_key="fresh@example.com")
    assert await confirm(good) == [("token", "UNIQUE")]
    assert (await User.get(id=owner.id)).email == owner.email
    await User.filter(id=other.id).update(email="else@example.com", email_key="else@example.com")
    assert await confirm(good) == []
    assert (await User.get(id=owner.id)).email_key == "fresh@example.com"


# --- account deletion ------------------------------------------------------------------------------------------

ACCOUNT_DELETE = """mutation($i: AccountDeleteInput!) { accountDelete(input: $i) {
  ok errors { field code message } } }"""


async def test_account_delete_deactivates_and_signs_out_everywhere(gql: GQL, factory: Factory) -> None:
    # given: a second admin of the same customer, so the first is not the last one
    tenant = await factory.tenant(customers=1)
    second = await factory.user(role=Role.CUSTOMER_ADMIN, customer=tenant.customers[0])
    here, elsewhere = await gql.login(second.email), await gql.login(second.email)
    # when
    wrong = (await gql(ACCOUNT_DELETE, {"i": {"password": "Wrong-pass-1"}}, token=here))["accountDelete"]
    deleted = (await gql(ACCOUNT_DELETE, {"i": {"password": PASSWORD}}, token=here))["accountDelete"]
    # then
    assert wrong["ok"] is False and [(e["field"], e["code"]) for e in wrong["errors"]] == [("password", "INVALID")]
    assert deleted == {"ok": True, "errors": []}
    assert not (await User.get(id=second.id)).is_active
    assert (await gql.raw(ME, token=here)).status_code == 401
    assert (await gql.raw(ME, token=elsewhere)).status_code == 401
    assert codes(await attempt_login(gql, second.email)) == ["INVALID_CREDENTIALS"]
    assert ("SECURITY", "account.delete") in await actions(second.id)
    assert (await attempt_login(gql, tenant.admins[0].email))["errors"] == []


async def test_the_last_admin_of_an_organization_cannot_delete_their_account(gql: GQL, factory: Factory) -> None:
    # given: the customer's only admin (a member does not count), and the partner's only admin
    tenant = await factory.tenant(customers=1)
    await factory.user(role=Role.CUSTOMER_MEMBER, customer=tenant.customers[0])
    customer_admin, owner = tenant.admins[0], tenant.owner
    # when
    refused = [
        (await gql(ACCOUNT_DELETE, {"i": {"password": PASSWORD}}, token=await gql.login(u.email)))["accountDelete"]
        for u in (customer_admin, owner)
    ]
    # then
    assert [codes(p) for p in refused] == [["NOT_ELIGIBLE"], ["NOT_ELIGIBLE"]]
    assert (await User.get(id=customer_admin.id)).is_active and (await User.get(id=owner.id)).is_active
    # a deactivated co-admin does not count either
    other = await factory.user(role=Role.CUSTOMER_ADMIN, customer=tenant.customers[0])
    await User.filter(id=other.id).update(is_active=False)
    token = await gql.login(customer_admin.email)
    assert codes((await gql(ACCOUNT_DELETE, {"i": {"password": PASSWORD}}, token=token))["accountDelete"]) == [
        "NOT_ELIGIBLE"
    ]


# --- profile image ---------------------------------------------------------------------------------------------

AVATAR_UPLOAD = """mutation($i: AvatarUploadInput!) { avatarUpload(input: $i) {
  user { avatarUrl } errors { field code message } } }"""
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
GIF = b"GIF89a" + b"\x00" * 64


@pytest.fixture
def avatars_dir(tmp_path: Path) -> Iterator[Path]:
    with domain_config.overridden(avatars_dir=tmp_path / "avatars"):
        yield tmp_path / "avatars"


def stored(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def upload(gql: GQL, token: str, content: bytes, name: str = "me.png", mime: str = "image/png") -> dict:
    operations = {"query": AVATAR_UPLOAD, "variables": {"i": {"file": None}}}
    response = await gql.client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.i.file"]})},
        files={"0": (name, content, mime)},
        headers={"authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["avatarUpload"]


async def test_avatar_upload_accepts_jpg_png_gif_by_content_and_serves_the_latest(
    gql: GQL, factory: Factory, avatars_dir: Path
) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    # when
    results = [
        await upload(gql, token, content, name, "application/octet-stream")
        for content, name in ((PNG, "a.png"), (JPG, "b.bin"), (GIF, "c.jpg"))
    ]
    # then
    assert [r["errors"] for r in results] == [[], [], []]
    urls = [r["user"]["avatarUrl"] for r in results]
    assert [u.rsplit(".", 1)[-1] for u in urls] == ["png", "jpg", "gif"]
    assert all(u.startswith(f"{PUBLIC_URL}/avatars/{owner.id}-") for u in urls)
    assert (await gql(ME, token=token))["me"]["avatarUrl"] == urls[-1]
    assert stored(avatars_dir) == [urls[-1].rsplit("/", 1)[-1]]  # the replaced ones are gone
    served = await gql.client.get(urlparse(urls[-1]).path)
    assert served.status_code == 200 and served.content == GIF
    assert served.headers["content-type"] == "image/gif" and served.headers["x-content-type-options"] == "nosniff"
    assert (await gql.client.get(urlparse(urls[0]).path)).status_code == 404
    assert (await gql.client.get("/avatars/..%2F..%2Fetc%2Fpasswd")).status_code == 404
    assert ("DATA_CHANGE", "avatar.upload") in await actions(owner.id)


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "x.png"),
        (b"<html><script>alert(1)</script></html>", "x.gif"),
        (b"", "empty.png"),
        (PNG + b"\x00" * (512 * 1024), "huge.png"),
    ],
    ids=["svg-named-png", "html-named-gif", "empty", "over-512kb"],
)
async def test_avatar_upload_refuses_other_content_and_oversized_files(
    gql: GQL, factory: Factory, avatars_dir: Path, content: bytes, name: str
) -> None:
    # given
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    # when
    payload = await upload(gql, token, content, name)
    # then
    assert payload["user"] is None
    assert [(e["field"], e["code"]) for e in payload["errors"]] == [("file", "INVALID")]
    assert (await User.get(id=owner.id)).avatar_url is None
    assert stored(avatars_dir) == []


async def test_avatar_upload_over_the_request_body_cap_is_refused_by_the_server(
    gql: GQL, factory: Factory, avatars_dir: Path
) -> None:
    _, owner = await factory.partner()
    token = await gql.login(owner.email)
    operations = {"query": AVATAR_UPLOAD, "variables": {"i": {"file": None}}}
    response = await gql.client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.i.file"]})},
        files={"0": ("big.png", PNG + b"\x00" * 2_000_000, "image/png")},
        headers={"authorization": f"Bearer {token}"},
    )
    assert response.status_code == 413
    assert (await User.get(id=owner.id)).avatar_url is None
