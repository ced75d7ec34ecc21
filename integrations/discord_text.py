"""Discord's text rules: whatever text goes into a message (the model's, a submitter's, a link
holder's, an outside system's) is made fit here.

`fit` enforces the length limits (trimmed with an ellipsis, never splitting a character), text that
cannot ping anyone (`@everyone`, `@here` and `<@...>` defused with a zero-width space) and text in
which no URL is live (`unlinked`): Discord's unfurler fetches URLs found in message content, and a
live link in text (bare, `<...>`, or masked `[label](url)` under opsdesk's own buttons) is a
phishing hook. `unlinked` breaks every scheme (`https://`), `www.` and dotted host name with a
zero-width space, which Discord keeps (the same device defuses mentions) and no link parser reads
through. `literal` is for text opsdesk did not write: Discord markdown escaped with backslashes
too, so it reads exactly as written and cannot bold, hide (spoilers), head, quote, link, time-stamp
or mention. Callers wrap each such piece in `literal` where they put it into a message; opsdesk's
own markup around it stays markup. Not used: the SUPPRESS_EMBEDS flag, which would also hide
opsdesk's own embeds.

Lengths are counted in UTF-16 code units. That is never less than the count of code points, so a
text within the limit by either way of counting Discord might use (its documentation does not say)
is accepted.
"""

from __future__ import annotations

import re
import unicodedata

ELLIPSIS = "\u2026"
ZWSP = "\u200b"
ZWJ = "\u200d"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_MASS_MENTION = re.compile(r"@(?=everyone|here)", re.IGNORECASE)
_TAG_MENTION = re.compile(r"<@(?!\u200b)")
_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*)://")
_WWW = re.compile(r"(?i)\bwww\.")
_HOST_DOT = re.compile(r"(?<=[A-Za-z0-9])\.(?=[A-Za-z])")
# every ASCII character Discord's markdown acts on (emphasis, spoilers, code, links, <...> forms,
# quotes, headings, lists, emoji shortcodes), and the backslash that escapes them
_MARKDOWN = re.compile(r"([\\*_~|`\[\]()<>#:+-])")
_ORDERED_ITEM = re.compile(r"(?m)^(\s*\d+)\.")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clean(text: str) -> str:
    """A str decoded from JSON can hold half a surrogate pair, which no encoder accepts; control
    characters are dropped because Discord strips or refuses them."""
    return _CONTROL.sub("", _SURROGATE.sub("\ufffd", text))


def inert(text: str) -> str:
    """Text that cannot ping anyone, even when pasted somewhere without allowed_mentions."""
    return _TAG_MENTION.sub("<@" + ZWSP, _MASS_MENTION.sub("@" + ZWSP, text))


def unlinked(text: str) -> str:
    """Text in which nothing is a link: a zero-width space after each scheme name (`https\u200b://`),
    after `www` and before each dot of a host name (`evil\u200b.example`, `discord\u200b.gg`).
    Reads the same; idempotent."""
    return _HOST_DOT.sub(ZWSP + ".", _WWW.sub("www" + ZWSP + ".", _SCHEME.sub(lambda m: m[1] + ZWSP + "://", text)))


def literal(text: str) -> str:
    r"""Untrusted text as Discord shows it literally: no link, no mention, and every markdown
    character escaped (`\*`, `\[`, `\<`, a leading `1\.`, ...), so it neither formats nor links."""
    escaped = _MARKDOWN.sub(r"\\\1", unlinked(text))
    return inert(_ORDERED_ITEM.sub(r"\1\\.", escaped))


def _extends_previous(char: str) -> bool:
    """True when `char` belongs to the character before it (combining marks, joiners, variation
    selectors, skin-tone modifiers, emoji tags): cutting before it would change what is shown."""
    code = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or char == ZWJ
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
    )


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _safe_cut(text: str, cut: int) -> int:
    """Move a cut back to the start of the user-perceived character it would split."""
    while 0 < cut < len(text) and (_extends_previous(text[cut]) or text[cut - 1] == ZWJ):
        cut -= 1
    if 0 < cut < len(text) and _is_regional_indicator(text[cut]):
        run = 0
        while cut - run > 0 and _is_regional_indicator(text[cut - run - 1]):
            run += 1
        if run % 2:  # flags are pairs of regional indicators: do not keep half a flag
            cut -= 1
    return cut


def fit(text: str, limit: int) -> str:
    """`text` made fit for Discord: cleaned, mentions and links defused, stripped, and cut to at
    most `limit` UTF-16 units; a cut ends in an ellipsis."""
    window = 2 * limit + 16  # only the start can survive: a megabyte of model text costs nothing
    clipped = len(text) > window
    if clipped:
        text = text[: _safe_cut(text, window)]
    text = inert(unlinked(clean(text))).strip()
    if not clipped and utf16_len(text) <= limit:
        return text
    budget = limit - 1  # room for the ellipsis
    used = cut = 0
    for char in text[:budget]:
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > budget:
            break
        used += width
        cut += 1
    return text[: _safe_cut(text, cut)].rstrip() + ELLIPSIS
