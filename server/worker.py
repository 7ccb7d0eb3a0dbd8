"""Entry module for `dramatiq server.worker` (what `partnerdesk worker` runs): broker + Tortoise + actors."""

from __future__ import annotations

from server.bootstrap import bootstrap
from server.settings import get_settings

broker = bootstrap(get_settings())
