"""Atom and RSS feeds of the incident history: one entry per published incident, with its latest update."""

import re

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.utils.feedgenerator import Atom1Feed
from django.utils.html import escape

from . import api
from .markdown import render_markdown
from .models import Incident

FEED_ITEMS = 50
# XML 1.0 cannot carry these (an incident pasted from a terminal may hold an escape sequence's ESC).
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def feed_text(text: str) -> str:
    return XML_FORBIDDEN.sub("", text)


class HistoryRssFeed(Feed):
    description_template = None

    def title(self) -> str:
        return f"{settings.SITE_NAME} status - incident history"

    def link(self) -> str:
        return "/status/"

    def description(self) -> str:
        return f"Incidents and their latest updates on the {settings.SITE_NAME} status page."

    def item_title(self, item: Incident) -> str:
        return feed_text(item.name)

    def items(self) -> list[Incident]:
        return list(api.public_incidents().select_related("postmortem").order_by("-updated_at", "-id")[:FEED_ITEMS])

    def item_description(self, item: Incident) -> str:
        """The postmortem once it is published (it is what readers come back for), then the latest update."""
        html = ""
        postmortem = item.published_postmortem()
        if postmortem is not None:
            html += "<h2>Postmortem</h2>" + render_markdown(postmortem.body)
        latest = item.updates.all()[0] if item.updates.all() else None
        if latest is not None:
            html += f"<p><strong>{escape(latest.get_status_display())}</strong></p>" + render_markdown(latest.body)
        return feed_text(html)

    def item_link(self, item: Incident) -> str:
        return item.get_absolute_url()

    def item_guid(self, item: Incident) -> str:
        return item.shortlink

    item_guid_is_permalink = True

    def item_pubdate(self, item: Incident):
        return item.started_at

    def item_updateddate(self, item: Incident):
        postmortem = item.published_postmortem()
        return max(item.updated_at, postmortem.published_at) if postmortem else item.updated_at


class HistoryAtomFeed(HistoryRssFeed):
    feed_type = Atom1Feed

    def subtitle(self) -> str:
        return self.description()
