"""Reading a forum's fields, for every importer: HTML bodies as plain text, tag lists, integers
and yes/no flags, and the callback type an importer hands a malformed record to.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

from qa_search.errors import DumpFormatError

#: Takes a malformed record's error, so that a reader can skip it and go on (default: raise).
OnError = Callable[[DumpFormatError], None]


def parse_tags(value: str) -> list[str]:
    """Tags written ``<a><b>`` (Stack Exchange), ``|a|b|`` or ``a, b``."""
    value = value.strip()
    if value.startswith("<"):
        return re.findall(r"<([^<>]+)>", value)
    sep = "|" if "|" in value else ","
    return [t.strip() for t in value.split(sep) if t.strip()]


def parse_int(value: str, what: str) -> int:
    """An integer cell (blank: 0); ``what`` names the field in the ``ValueError`` otherwise."""
    try:
        return int(value.strip() or 0)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {value[:40]!r}") from None


def parse_flag(value: str) -> bool:
    """A yes/no cell: ``1``, ``true``, ``yes``, ``y`` or ``t`` (any case) is yes."""
    return value.strip().lower() in {"1", "true", "yes", "y", "t"}


#: The notice Stack Exchange puts at the top of a question closed as a duplicate ("Possible
#: Duplicate:" in older posts, "This question already has an answer here:" since), in a
#: blockquote of its own. It names the other question, which would skew the question's embedding.
_DUPLICATE_NOTICE = re.compile(
    r"^\s*(possible duplicates?:|this question already has (an )?answers? here)", re.IGNORECASE
)


class _TextOfHtml(HTMLParser):
    """Plain text of a post body: tags dropped, block elements on their own lines, an image's
    ``alt`` text kept, scripts, styles and a closed question's duplicate notice left out."""

    BLOCKS = frozenset(
        {"p", "br", "li", "pre", "blockquote", "div", "h1", "h2", "h3", "h4", "h5", "h6", "hr"}
    )
    #: Elements whose content is code, not text a reader sees (a forum's stored HTML can hold
    #: an embed's script or a pasted style block).
    HIDDEN = frozenset({"script", "style", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._hidden_depth = 0
        self._quote_depth = 0
        self._quote_start = 0  # where the outermost blockquote's text starts in ``out``

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self._hidden_depth += 1
            self.out.append("\n")
            return
        if tag == "blockquote":
            if not self._quote_depth:
                self._quote_start = len(self.out)
            self._quote_depth += 1
        if tag in self.BLOCKS:
            self.out.append("\n")
        elif tag == "img":
            alt = dict(attrs).get("alt") or ""
            if alt.strip():
                self.out.extend(("\n", alt, "\n"))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self._hidden_depth = max(0, self._hidden_depth - 1)
            self.out.append("\n")
            return
        if tag == "blockquote" and self._quote_depth:
            self._quote_depth -= 1
            if not self._quote_depth and _DUPLICATE_NOTICE.match("".join(self.out[self._quote_start :])):
                del self.out[self._quote_start :]

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.out.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML fragment, whitespace tidied."""
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.out).splitlines())
    return "\n".join(line for line in lines if line)
