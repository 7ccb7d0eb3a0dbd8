"""A partner's custom domains: the names its clients reach the portal at, where links in its emails point, and
(once verified) the browser origins the API trusts for it.

A partner lists its domains (`partnerUpdate{domains}`); each gets a verification token. The partner proves it
controls a domain by publishing a DNS TXT record `_partnerdesk.<domain>` with the value
`partnerdesk-verify=<token>`; `partnerDomainVerify` checks at once, and the `verify_partner_domains` job checks
pending domains every few minutes and re-checks verified ones daily (a record that is definitely gone unverifies
the domain; a DNS failure changes nothing). Several partners may list a name, but only one can hold it verified.
The domain must also point at this deployment (a CNAME to it) for the portal and links to work there.

`verified_domains()` is what CORS, WebSocket origins and the embed page's frame-ancestors add to ALLOWED_ORIGINS;
`public_url_of()` is the base of every link in a partner's emails: its first verified domain, else PUBLIC_URL.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dns.asyncresolver
import dns.exception
import dns.resolver
from tortoise.expressions import Subquery

from domain.common.validation import Validator
from domain.config import config
from domain.errors import DomainError, ErrorCode
from domain.partners.models import Partner, PartnerDomain, PartnerStatus

MAX_DOMAINS = 20
RECORD_PREFIX = "_partnerdesk"
VALUE_PREFIX = "partnerdesk-verify="
PENDING_RECHECK = timedelta(minutes=5)
VERIFIED_RECHECK = timedelta(hours=24)
CHECKS_PER_RUN = 200
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def now() -> datetime:
    return datetime.now(UTC)


def clean_domain(v: Validator, field: str, value: object) -> str | None:
    """A host name as stored: lower-case ASCII (international names in their IDNA form), at least two labels,
    no scheme, port, path, IP address or trailing dot; None (with an error) otherwise."""
    text = v.text(field, value, required=True, max_length=253)
    if not text:
        return None
    name = text.lower().rstrip(".")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        v.add(field, f"{text} is not a valid domain name.")
        return None
    labels = name.split(".")
    try:
        ipaddress.ip_address(name)
        is_ip = True
    except ValueError:
        is_ip = False
    if is_ip or len(labels) < 2 or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        v.add(field, f"{text} is not a domain name like portal.example.com (no https://, port or path).")
        return None
    if labels[-1].isdigit() or name.endswith((".localhost", ".local", ".internal")):
        v.add(field, f"{text} is not a public domain name.")
        return None
    return name


def record_name(domain: str) -> str:
    return f"{RECORD_PREFIX}.{domain}"


def record_value(row: PartnerDomain) -> str:
    return f"{VALUE_PREFIX}{row.verification_token}"


async def domains_of(partner_ids: Sequence[int]) -> dict[int, list[PartnerDomain]]:
    """Each partner's domains in its order (one query: DataLoader batch)."""
    rows = await PartnerDomain.filter(partner_id__in=list(partner_ids)).order_by("partner_id", "position", "id")
    out: dict[int, list[PartnerDomain]] = {pid: [] for pid in partner_ids}
    for row in rows:
        out[row.partner_id].append(row)
    return out


async def replace_domains(partner: Partner, v: Validator, values: list[str]) -> dict[str, list[str]] | None:
    """Makes `values` the partner's domain list (inside the caller's transaction, partner row locked): kept
    domains keep their token and verification, new ones start unverified, missing ones go. Returns the list
    before and after (None when nothing changed); refusals are added to `v` and change nothing."""
    cleaned: list[str] = []
    for index, value in enumerate(values[: MAX_DOMAINS + 1]):
        name = clean_domain(v, f"domains.{index}", value)
        if name and name not in cleaned:
            cleaned.append(name)
    if len(values) > MAX_DOMAINS:
        v.add("domains", f"At most {MAX_DOMAINS} domains.")
    host = (config().public_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]).lower()
    if host in cleaned:
        v.add("domains", f"{host} is this platform's own address.")
    taken = await PartnerDomain.filter(domain__in=cleaned, verified_at__isnull=False).exclude(partner_id=partner.id)
    for row in taken:
        v.add("domains", f"{row.domain} is verified by another partner.", ErrorCode.UNIQUE)
    if not v.ok:
        return None
    existing = {row.domain: row for row in await PartnerDomain.filter(partner_id=partner.id).order_by("position", "id")}
    before = list(existing)
    if before == cleaned:
        return None
    removed = [d for d in before if d not in cleaned]
    if removed:
        await PartnerDomain.filter(partner_id=partner.id, domain__in=removed).delete()
    for position, name in enumerate(cleaned):
        kept = existing.get(name)
        if kept is None:
            await PartnerDomain.create(
                partner_id=partner.id, domain=name, position=position, verification_token=secrets.token_hex(16)
            )
        elif kept.position != position:
            kept.position = position
            await kept.save(update_fields=["position"])
    return {"before": before, "after": cleaned}


# ---------------------------------------------------------------- DNS


@dataclass(frozen=True, slots=True)
class Lookup:
    """What DNS said of a domain's TXT record: whether it holds the value, and whether the answer is definite
    (a name that does not exist or has no TXT record) or DNS could not tell (timeout, server failure)."""

    found: bool
    definite: bool


def _resolver() -> dns.asyncresolver.Resolver:
    """The system's resolver, or the DNS_NAMESERVERS ("host" or "host:port"; one port for all)."""
    servers = config().dns_nameservers
    if not servers:
        return dns.asyncresolver.Resolver()
    resolver = dns.asyncresolver.Resolver(configure=False)
    hosts, port = [], 53
    for server in servers:
        host, colon, digits = server.rpartition(":")
        if colon and digits.isdigit() and ":" not in host:
            hosts.append(host)
            port = int(digits)
        else:
            hosts.append(server)
    resolver.nameservers = hosts
    resolver.port = port
    resolver.lifetime = 5.0
    return resolver


async def lookup(row: PartnerDomain) -> Lookup:
    """Reads `_partnerdesk.<domain>` TXT and looks for the row's value."""
    expected = record_value(row)
    try:
        answer = await _resolver().resolve(record_name(row.domain), "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return Lookup(found=False, definite=True)
    except dns.exception.DNSException:
        return Lookup(found=False, definite=False)
    for record in answer:
        text = b"".join(getattr(record, "strings", ())).decode("utf-8", "replace")
        if text.strip() == expected:
            return Lookup(found=True, definite=True)
    return Lookup(found=False, definite=True)


async def apply_lookup(row: PartnerDomain, result: Lookup, at: datetime) -> bool:
    """Records a check's outcome; True when the domain is verified afterwards. A domain verified by another
    partner meanwhile stays unverified here."""
    row.last_checked_at = at
    if result.found and row.verified_at is None:
        elsewhere = (
            await PartnerDomain.filter(domain=row.domain, verified_at__isnull=False)
            .exclude(partner_id=row.partner_id)
            .exists()
        )
        if not elsewhere:
            row.verified_at = at
    elif not result.found and result.definite:
        row.verified_at = None
    await row.save(update_fields=["last_checked_at", "verified_at"])
    return row.verified_at is not None


async def check_domain(row: PartnerDomain) -> bool:
    return await apply_lookup(row, await lookup(row), now())


async def verify_due_domains(at: datetime | None = None) -> int:
    """The job: pending domains not checked for PENDING_RECHECK and verified ones not for VERIFIED_RECHECK, the
    longest unchecked first; returns how many are verified after the run."""
    at = at or now()
    from tortoise.expressions import Q

    due = (
        await PartnerDomain.filter(
            Q(verified_at__isnull=True, last_checked_at__isnull=True)
            | Q(verified_at__isnull=True, last_checked_at__lt=at - PENDING_RECHECK)
            | Q(verified_at__isnull=False, last_checked_at__lt=at - VERIFIED_RECHECK)
        )
        .order_by("last_checked_at", "id")
        .limit(CHECKS_PER_RUN)
    )
    verified = 0
    for row in due:
        verified += await apply_lookup(row, await lookup(row), at)
    return verified


def refusal(row: PartnerDomain) -> DomainError:
    return DomainError.single(
        ErrorCode.NOT_ELIGIBLE,
        f"No TXT record {record_name(row.domain)} with the value {record_value(row)} was found yet "
        "(DNS changes can take a while to show).",
        "domain",
    )


# ---------------------------------------------------------------- what other parts use


async def verified_domains() -> dict[int, list[str]]:
    """Every active partner's verified domains, by partner id (browser origins: CORS, WebSocket handshakes, the
    embed page's frame-ancestors, next to ALLOWED_ORIGINS; domain/access/origins.py)."""
    active = Partner.filter(status=PartnerStatus.ACTIVE).values("id")
    rows = await PartnerDomain.filter(verified_at__isnull=False, partner_id__in=Subquery(active)).values_list(
        "partner_id", "domain"
    )
    found: dict[int, list[str]] = {}
    for partner_id, name in rows:
        found.setdefault(partner_id, []).append(name)
    return found


async def public_urls_of(partner_ids: Sequence[int]) -> dict[int, str]:
    """The base of links in each partner's emails: `https://` + its first verified domain, else PUBLIC_URL."""
    fallback = config().public_url.rstrip("/")
    out = dict.fromkeys(partner_ids, fallback)
    rows = await PartnerDomain.filter(partner_id__in=list(partner_ids), verified_at__isnull=False).order_by(
        "partner_id", "position", "id"
    )
    for row in reversed(rows):
        out[row.partner_id] = f"https://{row.domain}"
    return out


async def public_url_of(partner_id: int | None) -> str:
    if partner_id is None:
        return config().public_url.rstrip("/")
    return (await public_urls_of([partner_id]))[partner_id]
