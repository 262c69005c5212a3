"""Turning a body into text: HTTP charset, then BOM, then <meta charset>, then detection.

Declared names are mapped the way browsers map them (WHATWG Encoding): "iso-8859-1"
and "ascii" mean windows-1252, "gb2312" and "gbk" mean gb18030, "shift_jis" means cp932.
A name Python does not know is ignored and the next source is tried. Decoding never
fails: undecodable bytes become U+FFFD.
"""

from __future__ import annotations

import codecs
import re


BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
ALIASES = {
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
    "ascii": "cp1252", "us-ascii": "cp1252", "windows-1252": "cp1252",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8",
}
META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([a-zA-Z0-9_:.+-]+)""", re.IGNORECASE
)
SNIFF_BYTES = 4096
# Encodings in which every ASCII byte stands for that ASCII character.
_ASCII_SUPERSETS = frozenset({"utf-8", "cp1252", "iso8859-1", "iso8859-15", "gb18030", "ascii"})


def normalize_charset(name: str | None) -> str | None:
    """A Python codec name for a declared charset, or None if unknown."""
    if not name:
        return None
    name = name.strip().strip("\"'").lower()
    name = ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def sniff_encoding(body: bytes, http_charset: str | None) -> str:
    """The encoding to decode ``body`` with, in the documented order of sources."""
    declared = normalize_charset(http_charset)
    if declared:
        return declared
    for bom, name in BOMS:
        if body.startswith(bom):
            return name
    match = META_CHARSET.search(body, 0, SNIFF_BYTES)
    if match:
        declared = normalize_charset(match.group(1).decode("ascii", "replace"))
        if declared:
            # A page that says utf-16 in <meta> but parsed as ASCII-compatible bytes is
            # not utf-16 (HTML spec): fall back to utf-8.
            return "utf-8" if declared.startswith("utf-16") else declared
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    import charset_normalizer  # only for pages that declare nothing and are not UTF-8 (15 ms to import)

    best = charset_normalizer.from_bytes(body[:65536]).best()
    return normalize_charset(best.encoding) if best is not None else "cp1252"


def for_parser(body: bytes, http_charset: str | None) -> tuple[bytes, str, str]:
    """(UTF-8 bytes for the tree parser, text, encoding): ``decode``, and the text as UTF-8.

    A body that is already what that would give (UTF-8 or plain ASCII in an ASCII-compatible
    encoding, no BOM, no NUL) is handed on as it is, so a page is not encoded back after it
    was decoded: about 10% of a shop page's parse before the tree was built.
    """
    encoding = sniff_encoding(body, http_charset)
    if b"\x00" not in body and not body.startswith(codecs.BOM_UTF8):
        if body.isascii() and encoding in _ASCII_SUPERSETS:
            return body, body.decode("ascii"), encoding
        if encoding == "utf-8":
            try:
                return body, body.decode("utf-8"), encoding
            except UnicodeDecodeError:
                pass  # undecodable bytes become U+FFFD below
    text, encoding = decode(body, http_charset, encoding)
    return text.encode("utf-8"), text, encoding


def decode(body: bytes, http_charset: str | None, encoding: str | None = None) -> tuple[str, str]:
    """(text, encoding). A leading BOM is dropped; NUL bytes become U+FFFD. ``encoding``:
    what ``sniff_encoding`` gave, if the caller asked it already."""
    encoding = encoding or sniff_encoding(body, http_charset)
    if encoding == "utf-8" and body.startswith(codecs.BOM_UTF8):
        body = body[3:]
    text = body.decode(encoding, errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text, encoding
