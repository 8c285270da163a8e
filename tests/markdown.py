"""Reading the repository's Markdown as GitHub renders it: heading anchors and relative links."""

from __future__ import annotations

import re

LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchors(markdown: str) -> set[str]:
    """The fragment names GitHub gives the headings (and explicit ``<a id>``/``<a name>`` tags) of ``markdown``."""
    anchors = set(re.findall(r'<a (?:id|name)="([^"]+)"', markdown))
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def relative_links(markdown: str) -> list[str]:
    """Link targets in ``markdown`` that point into the repository (not a URL, not a fenced code block's text)."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return [target for target in LINK.findall(prose) if not re.match(r"[a-z]+:", target)]
