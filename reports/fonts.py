"""A font with Chinese glyphs for the charts, found without any download at run time.

matplotlib's bundled DejaVu Sans has no CJK glyphs: Chinese topics would render as
empty boxes with a "Glyph ... missing" warning. The font is taken from, in order:

1. any ``.otf``/``.ttf``/``.ttc`` file in ``reports/fonts/`` (a deployment may drop
   its house font there; ``setup.py`` ships that folder as package data);
2. Noto Sans SC (SIL Open Font License) from the ``pylopdf-fonts-zh-cn`` wheel, which
   the ``report``, ``notebook`` and ``test`` extras install from PyPI;
3. an installed system font with CJK glyphs (Noto Sans CJK, Source Han Sans,
   WenQuanYi, SimHei, Microsoft YaHei, PingFang...).

Latin text and digits fall back to DejaVu Sans glyph by glyph where the CJK font
lacks them (matplotlib >= 3.6 font fallback).
"""

import functools
import warnings
from pathlib import Path

from matplotlib import font_manager

FONT_DIR = Path(__file__).resolve().parent / "fonts"
FONT_SUFFIXES = (".otf", ".ttf", ".ttc")
SYSTEM_CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Sarasa Gothic SC",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
    "Arial Unicode MS",
)
# Characters a usable font must have: common hanzi and a full-width comma.
PROBE = "中国热点话题，"


def _has_glyphs(path: str) -> bool:
    try:
        charmap = font_manager.get_font(path).get_charmap()
    except (OSError, RuntimeError):
        return False
    return all(ord(char) in charmap for char in PROBE)


def _candidate_files() -> list[str]:
    files = sorted(
        str(path) for path in FONT_DIR.glob("*") if path.suffix.lower() in FONT_SUFFIXES
    )
    try:
        import pylopdf_fonts_zh_cn

        files.append(str(pylopdf_fonts_zh_cn.sans_path()))
    except ImportError:
        pass
    return files


def _system_font() -> str | None:
    by_name = {entry.name: entry.fname for entry in font_manager.fontManager.ttflist}
    for family in SYSTEM_CJK_FAMILIES:
        path = by_name.get(family)
        if path and _has_glyphs(path):
            return path
    return None


@functools.cache
def cjk_font_path() -> str | None:
    """The file of the first usable CJK font, or None when there is none."""
    for path in _candidate_files():
        if Path(path).is_file() and _has_glyphs(path):
            return path
    return _system_font()


@functools.cache
def cjk_font_family() -> str | None:
    """The family name of :func:`cjk_font_path`, registered with matplotlib."""
    path = cjk_font_path()
    if path is None:
        warnings.warn(
            "No font with Chinese glyphs found: Chinese labels will show as boxes. "
            "Install the report extra (pip install 'yuqing[report]') or put a CJK "
            f".otf/.ttf font into {FONT_DIR}.",
            stacklevel=2,
        )
        return None
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


def font_families() -> list[str]:
    """``font.family`` for charts: the CJK font first, DejaVu Sans for what it lacks."""
    family = cjk_font_family()
    return [family, "DejaVu Sans"] if family else ["DejaVu Sans"]
