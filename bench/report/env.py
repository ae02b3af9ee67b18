"""The Jinja environment of the report: templates in ``bench/report/templates/``, autoescaping always
on (every string from the run is text, never markup), undefined names are errors.  Values that
are markup (inline SVG from :mod:`.plots`) arrive as :class:`markupsafe.Markup`."""
from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from .fmt import fmt, fmt_signed, slug


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("bench.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(fmt=fmt, fmt_signed=fmt_signed, slug=slug)
    return env


def render(template: str, **context) -> Markup:
    """``template`` (a path under ``templates/``) rendered with ``context``, as markup."""
    return Markup(environment().get_template(template).render(**context))
