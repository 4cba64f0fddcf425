"""Where font faces come from, which are held out, and under which licence each one is.

Three independent sources: matplotlib's bundled faces (always present), Debian font packages
(``/usr/share/fonts``; installed for pretraining and the benchmark only) and PyPI packages that
ship font files (``font-*``, the ``pretrain`` extra). Whole families are held out of pretraining
for the leave-style-out benchmark (``HELD_OUT_PREFIXES``). Faces are grouped by family so that
sampling is per family: a family of forty weights does not drown a family of one.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from fontTools.ttLib import TTFont, TTLibError  # matplotlib's own dependency
from PIL import Image, ImageFont

from ..errors import DataError

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/share/texmf/fonts"), Path("/usr/local/share/fonts"))
SYSTEM_PACKAGES_BENCH = "fonts-liberation fonts-freefont-ttf fonts-urw-base35 fonts-crosextra-carlito fonts-crosextra-caladea"
SYSTEM_PACKAGES_PRETRAIN = (
    "fonts-noto-core fonts-dejavu-extra fonts-lato fonts-open-sans fonts-roboto-unhinted fonts-ebgaramond "
    "fonts-cantarell fonts-firacode fonts-hack fonts-go fonts-sil-gentium fonts-sil-charis fonts-sil-andika "
    "fonts-comic-neue fonts-linuxlibertine fonts-cabin fonts-comfortaa fonts-oldstandard fonts-quicksand "
    "fonts-jetbrains-mono fonts-inconsolata fonts-tlwg-purisa fonts-humor-sans fonts-dkg-handwriting "
    "fonts-yanone-kaffeesatz fonts-lobster fonts-adf-accanthis fonts-junicode fonts-tuffy fonts-inter fonts-karla "
    "fonts-dosis fonts-jura fonts-b612 fonts-clear-sans fonts-anonymous-pro fonts-averia-gwf "
    "fonts-averia-sans-gwf fonts-averia-serif-gwf fonts-beteckna fonts-cabinsketch fonts-dustin "
    "fonts-adf-baskervald fonts-adf-berenis fonts-adf-gillius fonts-adf-ikarius fonts-adf-irianis fonts-adf-libris "
    "fonts-adf-mekanus fonts-adf-oldania fonts-adf-romande fonts-adf-solothurn fonts-adf-tribun "
    "fonts-adf-universalis fonts-adf-verana fonts-league-spartan fonts-league-mono fonts-fantasque-sans "
    "fonts-hermit fonts-agave fonts-allerta fonts-arapey fonts-bebas-neue fonts-junction fonts-kaushanscript "
    "fonts-leckerli-one fonts-fanwood fonts-goudybookletter fonts-ecolier-court "
    "fonts-femkeklaver fonts-breip fonts-engadget fonts-eurofurence fonts-ferrite-core "
    "fonts-karmilla fonts-lindenhill fonts-manrope fonts-millimetre fonts-monofur fonts-mononoki "
    "fonts-national-park fonts-ocr-a fonts-ocr-b fonts-okolaks fonts-opendin fonts-opendyslexic fonts-osifont "
    "fonts-play fonts-prociono fonts-quattrocento fonts-radisnoir fonts-roboto-slab fonts-rufscript fonts-sora "
    "fonts-staypuft fonts-stick fonts-summersby fonts-tiresias fonts-tomsontalks fonts-vollkorn fonts-oxygen "
    "fonts-routed-gothic fonts-roadgeek fonts-lobstertwo fonts-solide-mirage fonts-compagnon fonts-cardo "
    "fonts-apropal fonts-bajaderka")
PYPI_PACKAGES = ("font_amatic_sc", "font_fredoka_one", "font_source_sans_pro", "font_roboto")
# Redesigns of held-out designs, held out with them (else a leave-style-out site would read a near copy of its
# font): Courier (Nimbus Mono, FreeMono), Century Schoolbook (C059), Helvetica (Nimbus Sans), a typewriter's Courier.
NEAR_HELD_OUT = ("Courier Prime", "CourierPrime", "Century-Catalogue", "SwitzeraADF", "GNUTypewriter")
# Held out of pretraining: the leave-style-out benchmark draws its glyphs from these families only.
# TeX Gyre and Nimbus/URW are URW's designs; Liberation, FreeFont, Carlito and Caladea are metric clones.
HELD_OUT_PREFIXES = ("Liberation", "Free", "Nimbus", "C059", "P052", "URW", "D050000L", "StandardSymbols",
                     "Z003", "Carlito", "Caladea", "texgyre", "DejaVuMathTeXGyre", *NEAR_HELD_OUT)
# Faces that are not text: symbol and math fonts, and matplotlib's extra-size STIX files.
# From Noto, only the Latin text families (the script families reuse their Latin glyphs).
NOT_TEXT = re.compile(r"^(cmex|cmmi|cmsy|STIXNonUni|STIXSiz|DejaVuMath|LastResort|Noto(?!(Sans|Serif)(Display|Mono)?-))")
LATIN = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# matplotlib's faces and licences (see matplotlib's LICENSE directory).
MPL_LICENCES = {"DejaVu": "Bitstream Vera licence (DejaVu changes public domain)", "STIX": "SIL OFL 1.1",
                "cm": "BaKoMa fonts licence (free redistribution)"}


@dataclass(frozen=True)
class Face:
    """One font file: where it came from, its family and its licence."""

    path: str
    source: str  # "matplotlib", "debian:<package>" or "pypi:<package>"
    family: str
    licence: str


_STYLE_SUFFIX = re.compile(r"(Std(No\d)?|Bol|BolIta|Ita|Italic|BI|Bd|It|Alt|Condensed|\d\d)+$")


def family_of(path: str) -> str:
    """A face's family: its file name up to the weight/style part, lower case."""
    stem = re.split(r"[-_ ]", Path(path).stem, maxsplit=1)[0]
    return (_STYLE_SUFFIX.sub("", stem) or stem).lower()


def is_held_out(path: str) -> bool:
    """Whether the benchmark reserves this face (never used for pretraining)."""
    return "texgyre" in path.lower() or Path(path).name.startswith(HELD_OUT_PREFIXES)


@functools.lru_cache(maxsize=None)
def covers_alphabet(path: str, alphabet: str = LATIN) -> bool:
    """Whether the face has a glyph for every character of ``alphabet`` (its cmap, via fontTools)."""
    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            cmap = font.getBestCmap() or {}
    except (TTLibError, OSError, AssertionError, KeyError):
        return False
    return all(ord(c) in cmap for c in alphabet)


@functools.lru_cache(maxsize=None)
def renders_text(path: str, alphabet: str = LATIN) -> bool:
    """Whether every character of ``alphabet`` draws as a glyph: some ink, and not a filled box. A cmap can
    map a character to an empty outline (a revival missing letters) or to a letter cut out of a black
    box (OCR-B's E and X cuts), which would teach the wrong shapes."""
    try:
        font = ImageFont.truetype(path, 32)
    except OSError:
        return False
    boxes = 0
    for c in alphabet:
        mask = font.getmask(c)
        ink = np.asarray(Image.frombytes("L", mask.size, bytes(mask)), np.float32)
        rows, cols = np.nonzero(ink)
        if not len(rows):
            return False
        boxes += ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1].mean() > 0.8 * 255
    return bool(boxes <= 3)  # a bar (I, l, 1; a narrow N) is all ink too


@functools.lru_cache(maxsize=1)
def _debian_owners() -> dict[str, str]:
    """font path -> Debian package, from dpkg's file lists (empty off Debian)."""
    owners: dict[str, str] = {}
    for listing in Path("/var/lib/dpkg/info").glob("fonts-*.list"):
        package = listing.stem.split(":")[0]
        for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().endswith((".ttf", ".otf")):
                owners[line] = package
    return owners


def _licence_in(text: str, where: str) -> str:
    """The licence a copyright or licence file names: its first ``License:`` field, else the text."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("License:"):
            # a bare field names its licence on the next line ("License:\n    Public Domain.")
            value = line.split(":", 1)[1].strip() or next((n.strip() for n in lines[i + 1:] if n.strip()), "")
            if value and "open font license" not in value.lower():
                return value.rstrip(".")
            break
    version = re.search(r"Open Font License,? Version (\d\.\d)", text, re.IGNORECASE)
    if version or "SIL OPEN FONT LICENSE" in text.upper():
        return f"OFL-{version.group(1) if version else '1.1'}"
    if "Apache License" in text:
        return "Apache-2.0"
    if "GNU General Public License" in text:
        return "GPL"
    return f"see {where}"


def _debian_licence(package: str) -> str:
    path = Path("/usr/share/doc") / package / "copyright"
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return _licence_in(text, str(path))


def _pypi_licence(folder: Path) -> str:
    for path in sorted(folder.rglob("*")):
        if path.name.upper().startswith(("OFL", "LICENSE", "LICENCE")):
            return _licence_in(path.read_text(encoding="utf-8", errors="replace"), str(path))
    return "unknown"


def matplotlib_faces() -> list[Face]:
    """matplotlib's bundled text faces."""
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    faces = []
    for p in sorted(ttf.glob("*.ttf")):
        if NOT_TEXT.match(p.name):
            continue
        licence = next((v for k, v in MPL_LICENCES.items() if p.name.startswith(k)), "see matplotlib's LICENSE")
        faces.append(Face(str(p), "matplotlib", family_of(str(p)), licence))
    return faces


@functools.lru_cache(maxsize=1)
def system_font_files() -> tuple[Path, ...]:
    """Every .ttf/.otf file under the system font folders, in a fixed order (scanned once)."""
    return tuple(p for d in FONT_DIRS if d.is_dir() for p in sorted(d.rglob("*"))
                 if p.suffix.lower() in (".ttf", ".otf"))


def debian_faces() -> list[Face]:
    """Faces installed by Debian packages under the system font folders."""
    owners = _debian_owners()
    faces = []
    for p in system_font_files():
        if NOT_TEXT.match(p.name):
            continue
        package = owners.get(str(p), "")
        faces.append(Face(str(p), f"debian:{package or 'unknown'}", family_of(str(p)),
                          _debian_licence(package) if package else "unknown"))
    return faces


def pypi_folders() -> dict[str, Path]:
    """module -> its folder, for each PyPI font package (``PYPI_PACKAGES``) installed here."""
    folders = {}
    for module in PYPI_PACKAGES:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            folders[module] = Path(list(spec.submodule_search_locations)[0])
    return folders


def pypi_faces() -> list[Face]:
    """Faces shipped inside installed PyPI font packages."""
    faces = []
    for module, folder in pypi_folders().items():
        licence = _pypi_licence(folder)
        files = sorted(folder.rglob("*.ttf"))  # a family shipped as .ttf and .otf: keep one format
        files += [p for p in sorted(folder.rglob("*.otf")) if not p.with_suffix(".ttf").is_file()]
        faces += [Face(str(p), f"pypi:{module.replace('_', '-')}", family_of(str(p)), licence) for p in files]
    return faces


@functools.lru_cache(maxsize=1)
def pretraining_faces() -> tuple[Face, ...]:
    """Every face found that may be used for pretraining: not held out, drawing each of 0-9A-Za-z, one per file
    name."""
    seen: set[str] = set()
    out = []
    for face in matplotlib_faces() + pypi_faces() + debian_faces():
        name = Path(face.path).name
        if name in seen or is_held_out(face.path) or not covers_alphabet(face.path) \
                or not renders_text(face.path):
            continue
        seen.add(name)
        out.append(face)
    return tuple(out)


def by_family(faces: tuple[Face, ...]) -> dict[str, tuple[str, ...]]:
    """family -> its face paths, families in a fixed order."""
    groups: dict[str, list[str]] = {}
    for face in faces:
        groups.setdefault(face.family, []).append(face.path)
    return {k: tuple(v) for k, v in sorted(groups.items())}


def missing_font_packages() -> tuple[list[str], list[str]]:
    """The font packages pretraining draws from that are not installed here: Debian's, and PyPI's."""
    owners = set(_debian_owners().values())
    debian = [p for p in SYSTEM_PACKAGES_PRETRAIN.split() if not any(o == p or o.startswith(p + "-") for o in owners)]
    return debian, [m.replace("_", "-") for m in PYPI_PACKAGES if importlib.util.find_spec(m) is None]


def corpus_shortfall(expected: int) -> str:
    """Empty when pretraining finds at least ``expected`` faces (what the weights it continues or replaces
    were made from); else what is missing and how to install it, since nothing else would tell."""
    faces = pretraining_faces()
    if len(faces) >= expected:
        return ""
    debian, pypi = missing_font_packages()
    fixes = ([f"apt-get install {' '.join(debian)}"] if debian else []) + \
        ([f"pip install {' '.join(pypi)} (the `pretrain` extra)"] if pypi else [])
    return (f"pretraining finds {len(faces)} font faces in {len(by_family(faces))} families here, where the shipped "
            f"weights were made from {expected}: a narrower synthesis, which reads real sites worse; "
            + ("; ".join(fixes) if fixes else "install the font packages listed in captcha/data/fonts.py"))


@functools.lru_cache(maxsize=None)
def held_out_files(families: tuple[str, ...]) -> tuple[str, ...]:
    """Installed font files whose names start with one of ``families`` (the benchmark's fonts)."""
    found = sorted({str(p) for p in system_font_files() if p.name.startswith(families)})
    if not found:
        raise DataError(f"no font of {', '.join(families)} is installed; install the Debian packages "
                        f"{SYSTEM_PACKAGES_BENCH} (apt-get install ...)")
    return tuple(found)
