"""Sentences for the synthesized corpus, taken from the Debian ``fortunes`` databases.

The paper (§3.2) uses read WSJ0 sentences; the embedded ``tts`` corpus needs some freely
available English text instead. The ``fortunes`` and ``fortunes-min`` packages install
plain-text databases in ``/usr/share/games/fortunes``: entries separated by lines that hold
only ``%``. Entries are cleaned (attribution lines, tabs, quotes, ``Q:``/``A:`` labels,
accents), split into sentences, and kept when they are plain complete sentences of a
bounded number of words, so that a speech synthesizer reads them naturally.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from bootsep.errors import BootsepError

DEFAULT_FORTUNES_DIR = Path("/usr/share/games/fortunes")
INSTALL_HINT = "apt-get install fortunes fortunes-min"

# Tokens after which a full stop does not end a sentence.
_ABBREVIATIONS = frozenset(
    "mr. mrs. ms. dr. st. jr. sr. vs. etc. e.g. i.e. prof. gen. col. lt. sgt. capt. "
    "mt. no. vol. fig. inc. ltd. co. u.s. a.m. p.m.".split())
_LABEL = re.compile(r"^\s*(?:Q|A)\s*:\s*")              # Q: / A: at the start of a line
_INNER_LABEL = re.compile(r"(?<=\s)(?:Q|A):\s+")        # ... and after a join
_QUOTES = re.compile(r"``|''|[\"\u201c\u201d\u00ab\u00bb]")
_EDGE_APOSTROPHE = re.compile(r"(?<![A-Za-z0-9])'|'(?![A-Za-z0-9])")
_ALLOWED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ,.;!?'\-]*[A-Za-z0-9][.!?]$")
_BAD = re.compile(r"[.,;!?]{2}|(?:^|\s)-|-(?:\s|$)|--|\s[,.;!?]")
_END = re.compile(r"[.!?]+$")


def fortune_files(folder: str | os.PathLike = DEFAULT_FORTUNES_DIR) -> list[Path]:
    """The database files in ``folder`` (no ``.dat``/``.u8`` indexes, no ``off/``), sorted.

    Raises :class:`BootsepError` naming the folder when it is missing or holds none.
    """
    folder = Path(folder)
    files = []
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.is_file()
                       and p.suffix not in (".dat", ".u8") and not p.name.startswith("."))
    if not files:
        raise BootsepError(f"no fortune databases found (install them: {INSTALL_HINT})", folder)
    return files


def read_entries(path: str | os.PathLike) -> list[str]:
    """Raw entries of one database file, in file order (separator lines are ``%``)."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    entries, lines = [], []
    for line in text.splitlines():
        if line.strip() == "%":
            if lines:
                entries.append("\n".join(lines))
            lines = []
        else:
            lines.append(line)
    if any(s.strip() for s in lines):
        entries.append("\n".join(lines))
    return entries


def clean_entry(entry: str) -> str:
    """One entry as a single line of plain text.

    Drops attribution lines (starting with ``--``), ``Q:``/``A:`` labels, quotes and
    quote-like apostrophes; folds accents to ASCII; turns tabs and newlines into spaces.
    Characters outside ASCII that have no ASCII form are left for :func:`keep_sentence`
    to reject.
    """
    kept = []
    for line in entry.replace("\t", " ").splitlines():
        if line.strip().startswith("--"):
            continue
        kept.append(_LABEL.sub("", line))
    text = " ".join(kept)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = _QUOTES.sub(" ", text)
    text = _EDGE_APOSTROPHE.sub(" ", text)
    text = _INNER_LABEL.sub("", text)
    text = re.sub(r"\s+(?=[,.;!?])", "", " ".join(text.split()))
    return text


def split_sentences(text: str) -> list[str]:
    """Split cleaned text after ``.``, ``!`` or ``?`` when the next word starts a sentence."""
    words = text.split()
    out, current = [], []
    for i, word in enumerate(words):
        current.append(word)
        nxt = words[i + 1] if i + 1 < len(words) else None
        if _END.search(word) and word.lower() not in _ABBREVIATIONS and (
                nxt is None or nxt[0].isupper() or nxt[0].isdigit()):
            out.append(" ".join(current))
            current = []
    if current:
        out.append(" ".join(current))
    return out


def keep_sentence(sentence: str, min_words: int, max_words: int) -> bool:
    """A complete plain sentence: ASCII letters, digits and ``,.;!?'-`` only (no colon, so
    no dialogue labels), starting with a capital or digit, ending in one ``.!?`` after a
    word, no punctuation runs or detached marks, ``min_words..max_words`` words (inclusive)."""
    if not _ALLOWED.match(sentence) or _BAD.search(sentence):
        return False
    if not (sentence[0].isupper() or sentence[0].isdigit()):
        return False
    n = sum(1 for w in sentence.split() if any(ch.isalnum() for ch in w))
    return min_words <= n <= max_words


def load_sentences(word_range: tuple[int, int] | list[int],
                   folder: str | os.PathLike = DEFAULT_FORTUNES_DIR) -> list[str]:
    """All distinct kept sentences of the databases in ``folder``, in a fixed order
    (files by name, entries and sentences in file order; first occurrence wins)."""
    lo, hi = int(word_range[0]), int(word_range[1])
    seen: set[str] = set()
    out = []
    for path in fortune_files(folder):
        for entry in read_entries(path):
            for sentence in split_sentences(clean_entry(entry)):
                if sentence not in seen and keep_sentence(sentence, lo, hi):
                    seen.add(sentence)
                    out.append(sentence)
    if not out:
        raise BootsepError(f"no sentences of {lo}..{hi} words in the fortune databases "
                           f"(install them: {INSTALL_HINT})", folder)
    return out
