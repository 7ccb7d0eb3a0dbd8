"""The Jinja2 set-up shared by every white-label email (alerts, scheduled reports, account notices)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape


def email_templates(package_file: str) -> Environment:
    """Templates of the `templates/` folder next to `package_file`; HTML ones autoescaped."""
    return Environment(
        loader=FileSystemLoader(Path(package_file).parent / "templates"),
        autoescape=select_autoescape(["html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
