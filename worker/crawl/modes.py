"""The crawl spec's enumerations, apart from the spec so that `urls` can use them too."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    """Which discovered URLs a crawl follows."""

    HOST = "host"
    """The seeds' hosts exactly (www.example.com does not admit example.com)."""
    DOMAIN = "domain"
    """The seeds' registrable domains, any subdomain included."""
    HOSTS = "hosts"
    """The spec's `hosts` list exactly."""


class QueryMode(StrEnum):
    """What normalisation does with a URL's query."""

    SORT = "sort"
    """Sort the parameters (key, then value): `?b=2&a=1` and `?a=1&b=2` are one page."""
    KEEP = "keep"
    """Keep the parameters in their order, for sites where order means something."""
