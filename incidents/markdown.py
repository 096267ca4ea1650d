"""Markdown for incident updates and postmortems: CommonMark rendering, then an allow-list sanitizer.

Raw HTML in the source is escaped by the renderer, and nh3 strips anything outside the list below
(scripts, event handlers, `javascript:` and other non-web link schemes) whatever slipped through."""

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "pre", "code",
    "em", "strong", "del", "a", "table", "thead", "tbody", "tr", "th", "td",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}


def render_markdown(source: str) -> SafeString:
    html = _renderer.render(source or "")
    clean = nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                      url_schemes={"http", "https", "mailto"}, link_rel="nofollow noopener noreferrer")
    return mark_safe(clean)  # noqa: S308 - sanitized just above
