"""Unicode fonts for PDF reports, from Debian's font packages (never downloaded at run time).

DejaVu Sans (fonts-dejavu-core) writes Latin, Greek, Cyrillic, Arabic and Hebrew; characters it lacks come from
fallbacks chosen by coverage: Noto Sans of each script (fonts-noto-core) and Droid Sans Fallback for Chinese,
Japanese and Korean (fonts-droid-fallback: TrueType outlines, whose text PDF readers extract; the CFF-based Noto
CJK collection came out of pypdf as glyph codes). Only the fallbacks a report's text needs are loaded, and each
font's character map is read once per process. Arabic and other joining or right-to-left scripts are shaped by
HarfBuzz (uharfbuzz) through fpdf2's text shaping.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fontTools.ttLib import TTFont

from domain.config import config

MAIN = "Report"
_MAIN_FILES = {"": "truetype/dejavu/DejaVuSans.ttf", "B": "truetype/dejavu/DejaVuSans-Bold.ttf"}
# fallbacks in order of preference: the CJK font (the likeliest need), then Noto's per-script families
_CJK_FILES = ("truetype/droid/DroidSansFallbackFull.ttf", "truetype/droid/DroidSansFallback.ttf")
_NOTO_GLOB = "truetype/noto/NotoSans[A-Z]*-Regular.ttf"
_lock = threading.Lock()


class FontsMissing(RuntimeError):
    """The PDF fonts are not installed (apt-get install fonts-dejavu-core fonts-noto-core fonts-droid-fallback)."""


@dataclass(frozen=True, slots=True)
class Font:
    family: str
    regular: Path
    bold: Path


def _root() -> Path:
    return Path(config().report_fonts_dir)


@cache
def _coverage(path: Path) -> frozenset[int]:
    font = TTFont(path, lazy=True, fontNumber=0)
    try:
        return frozenset(font.getBestCmap() or {})
    finally:
        font.close()


def main_font() -> Font:
    root = _root()
    regular, bold = (root / _MAIN_FILES[""]), (root / _MAIN_FILES["B"])
    if not regular.is_file():
        raise FontsMissing(f"{regular} not found: install fonts-dejavu-core")
    return Font(MAIN, regular, bold if bold.is_file() else regular)


@cache
def _candidates(root: Path) -> tuple[Path, ...]:
    cjk = next((root / name for name in _CJK_FILES if (root / name).is_file()), None)
    noto = [p for p in sorted(root.glob(_NOTO_GLOB)) if "Mono" not in p.name]
    return (*([cjk] if cjk else []), *noto)


def fallbacks_for(texts: Iterable[str]) -> list[Font]:
    """The fallback fonts that cover what the main font lacks in `texts` (few or none for most reports)."""
    with _lock:  # report builds may run in threads; the caches fill once
        main = _coverage(main_font().regular)
        missing = {ord(c) for text in texts for c in text if ord(c) > 0x20 and ord(c) not in main}
        chosen: list[Font] = []
        for path in _candidates(_root()):
            if not missing:
                break
            covered = missing & _coverage(path)
            if covered:
                bold = path.with_name(path.name.replace("-Regular", "-Bold"))
                chosen.append(Font(f"Fallback{len(chosen)}", path, bold if bold.is_file() else path))
                missing -= covered
        return chosen
