"""Where a redirect after login (or back from a form) may go: a path of this site, nothing else.

Browsers drop ASCII tabs and newlines anywhere in a URL and read a backslash as "/" before they parse:
`?next=/%09/evil.example` arrives as "/\t/evil.example", which a browser follows to `//evil.example`,
another site. So such characters (and any other control character or space) are refused first; the
rest is parsed by yarl, the URL library aiohttp uses, and must have no scheme and no authority, a path
starting with exactly one "/" and no dot segments (`/.//evil.example`). The target is the URL as yarl
renders it again.
"""

from __future__ import annotations

from yarl import URL

HOME = "/"
MAX_LENGTH = 2000


def same_site_target(value: str | None, default: str = HOME) -> str:
    if not value or len(value) > MAX_LENGTH or not value.startswith("/") or value.startswith("//"):
        return default
    if any(ch.isspace() or ch == "\\" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value):
        return default
    try:
        url = URL(value)
    except ValueError:
        return default
    if url.scheme or url.raw_authority or url.is_absolute():
        return default
    path = url.raw_path
    if not path.startswith("/") or path.startswith("//") or {".", ".."} & set(path.split("/")):
        return default
    rendered = str(url)
    if not rendered.startswith("/") or rendered.startswith("//"):
        return default
    return rendered
