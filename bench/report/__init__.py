"""One self-contained ``report.html`` from a benchmark run directory.

    from bench.report import write_report, render_report
    path = write_report("runs/2024-..", baseline="runs/previous")   # -> runs/2024-../report.html
    html = render_report("runs/2024-..")

The page needs no network and no JavaScript: CSS is inline, plots are inline SVG (matplotlib's SVG
backend through the object-oriented ``Figure`` API), preview thumbnails are ``data:`` URIs, colour
bars are CSS gradients.  The HTML comes from Jinja templates (``templates/``) with autoescaping on,
so every string from the run is text; references (URLs) from method metadata are shown as text,
never as links; plot labels are plain text (mathtext is off).

Layout of the package: :mod:`.context` reads the run (:func:`bench.store.load_run`, lenient) and
derives what the sections share; one module per section builds plain data and renders its
template (:mod:`.leaderboards`, :mod:`.charts` (bars per metric, confusion matrices, PR curves),
:mod:`.chains`, :mod:`.gallery` (with :mod:`.scales`: colour bars and units of every map),
:mod:`.cards`, :mod:`.comparison`, :mod:`.tables`); :mod:`.plots` draws, :mod:`.fmt` formats,
:mod:`.env` is the Jinja environment.

Run-directory layout: :mod:`bench.store`.  Parquet files may have zero rows; a missing or
unreadable file is reported as a warning at the top of the page instead of failing the report.
"""
from __future__ import annotations

from pathlib import Path

from datagen.atomic import atomic_write_bytes
from datagen.errors import OutputError, writable_dir

from . import cards, chains, charts, comparison, gallery, leaderboards, tables
from .context import Context
from .env import render

__all__ = ["render_report", "write_report"]

#: The table of contents: (anchor, title) of every section, in page order.
SECTIONS = [("leaderboards", "Leaderboards"), ("charts", "Charts"), ("pr-curves", "PR curves"),
            ("chains", "Deblurring with maps"), ("galleries", "Galleries"), ("model-cards", "Model cards"),
            ("timings", "Timings"), ("failures", "Failures"), ("comparison", "Comparison"),
            ("methods", "Methods & datasets"), ("footer", "Versions & conventions")]


def render_report(run_dir, *, baseline=None) -> str:
    """The report for ``run_dir`` as one self-contained HTML string.

    With ``baseline`` (another run directory) a comparison table from
    ``bench.compare.compare_runs(baseline, run_dir)`` is included.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if baseline is not None:
        baseline = Path(baseline)
        if not baseline.is_dir():
            raise FileNotFoundError(f"baseline run directory not found: {baseline}")
    ctx = Context.load(run_dir)
    body = {"leaderboards": leaderboards.section(ctx), "charts": charts.section(ctx),
            "pr-curves": charts.pr_section(ctx), "chains": chains.chains_section(ctx),
            "galleries": gallery.section(ctx), "model-cards": cards.cards_section(ctx.run.meta.get("methods") or {}),
            "timings": tables.timings(ctx), "failures": tables.failures(ctx),
            "methods": tables.methods(ctx), "footer": tables.footer(ctx)}
    if baseline is not None:
        body["comparison"] = comparison.section(ctx, baseline)
    toc = [(anchor, title) for anchor, title in SECTIONS if anchor in body]
    return str(render("report.html.j2", title=f"DefocusBench report — {ctx.run_id}", header=tables.header(ctx),
                      toc=toc, sections=[body[anchor] for anchor, _ in toc]))


def write_report(run_dir, *, baseline=None, out=None) -> Path:
    """Write the report atomically (temp file in the same folder, then ``os.replace``); return its path.

    ``out`` defaults to ``run_dir / "report.html"``.  An ``out`` that is a folder, lies under a
    file, or cannot be written is a one-line :class:`~datagen.errors.OutputError`.
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report.html"
    if out.is_dir():
        raise OutputError(f"report --out {out} is a folder; give a file name, e.g. {out / 'report.html'}")
    text = render_report(run_dir, baseline=baseline)
    writable_dir(out.parent, hint="choose another --out for the report")
    try:
        atomic_write_bytes(out, text.encode("utf-8"))
    except OSError as err:
        raise OutputError(f"cannot write report {out} ({err.strerror or err}); choose another --out") from None
    return out
