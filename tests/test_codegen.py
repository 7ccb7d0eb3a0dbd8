"""The TypeScript codegen example (clients/): `npm ci` of its pinned lockfile, then graphql-codegen against
schema.graphql. The example's documents must still validate against the schema, the scalar mappings hold, and the
persisted documents it writes are an allowlist the server runs under PERSISTED_ONLY.

Installed once per lockfile into a cache folder under /tmp (npm's own cache makes a re-install offline); skipped
with a loud banner only where node is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from server.persisted import PersistedDocuments, load_allowlist
from tests.conftest import ROOT

CLIENTS = ROOT / "clients"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [tool for tool in ("node", "npm", "npx") if shutil.which(tool) is None]
    if missing:
        message = f"{' and '.join(missing)} not installed: the TypeScript codegen example was NOT run"
        print(f"\n!!!!!!!!!! {message} !!!!!!!!!!", file=sys.stderr)
        pytest.skip(message)
    lock = (CLIENTS / "package-lock.json").read_bytes()
    cache = Path("/tmp") / f"partnerdesk-codegen-{hashlib.sha256(lock).hexdigest()[:12]}"
    if not (cache / "node_modules" / ".bin" / "graphql-codegen").exists():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(CLIENTS / name, cache / name)
        subprocess.run(
            ["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=cache,
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    work = tmp_path_factory.mktemp("codegen")
    shutil.copy(CLIENTS / "codegen.ts", work / "codegen.ts")
    shutil.copytree(CLIENTS / "src", work / "src", ignore=shutil.ignore_patterns("gql"))
    (work / "node_modules").symlink_to(cache / "node_modules")
    result = subprocess.run(
        [str(cache / "node_modules" / ".bin" / "graphql-codegen"), "--config", "codegen.ts"],
        cwd=work,
        env={**os.environ, "PARTNERDESK_SCHEMA": str(ROOT / "schema.graphql")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return work / "src" / "gql"


def test_codegen_maps_the_scalars_to_strings(generated: Path) -> None:
    types = (generated / "graphql.ts").read_text()
    assert "Decimal: { input: string; output: string; }" in types
    assert "DateTime: { input: string; output: string; }" in types
    assert "JSON: { input: unknown; output: unknown; }" in types
    assert "'PERSISTED_QUERY_NOT_FOUND'" in types  # every error code is in the generated ErrorCode type
    assert "WalletLiveSubscription" in types and "CustomerBillingQuery" in types


async def test_the_persisted_documents_are_an_allowlist_the_server_runs(generated: Path) -> None:
    path = generated / "persisted-documents.json"
    documents = json.loads(path.read_text())
    assert len(documents) == 3
    persisted = PersistedDocuments(only=True, allowlist=load_allowlist(path))
    for digest, text in documents.items():
        assert digest == hashlib.sha256(text.encode()).hexdigest()
        assert await persisted.resolve(None, None, f"sha256:{digest}") == text
