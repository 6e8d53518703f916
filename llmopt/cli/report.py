"""``llmopt report``: one self-contained HTML page of a grid's runs or a store's (see :mod:`llmopt.experiments.html`)."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path

from llmopt.cli.compare import CompareCommand, table_options
from llmopt.cli.plot import selected_runs
from llmopt.experiments.html import report_html
from llmopt.experiments.plot import X_AXES
from llmopt.store import open_store

#: Chromium's flags for a headless page from disk: no sandbox (root in containers), no GPU, and none
#: of its own network traffic (updates, sync, QUIC probes).
BROWSER_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync")
CHROMIUMS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The path of an installed Chromium (Debian's /usr/bin/chromium first), or None."""
    for name in CHROMIUMS:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_ready() -> str:
    """The Chromium that ``--screenshot`` drives through Playwright; ValueError (one line) saying
    what is missing. Playwright's own browser download is never used: the system's Chromium is."""
    if importlib.util.find_spec("playwright") is None:
        raise ValueError("--screenshot needs Playwright for Python: pip install playwright "
                         "(its browser download is not needed: the system's Chromium is used)")
    chromium = find_chromium()
    if chromium is None:
        raise ValueError("--screenshot needs Chromium (e.g. apt-get install chromium): none found as "
                         + ", ".join(CHROMIUMS))
    return chromium


def screenshot(page: str | Path, png: str | Path, *, width: int = 1280, height: int = 800,
               chromium: str | None = None) -> None:
    """The first screen (``width`` x ``height``) of an HTML file, as a PNG, by headless Chromium."""
    from playwright.sync_api import sync_playwright  # optional: only --screenshot needs it

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium or browser_ready(), args=list(BROWSER_ARGS))
        try:
            tab = browser.new_page(viewport={"width": width, "height": height})
            tab.goto(Path(page).resolve().as_uri(), wait_until="load")
            tab.screenshot(path=str(png))
        finally:
            browser.close()


class ReportCommand:
    """One HTML file of runs (read from the store; nothing is run) that a browser opens from disk,
with no server and no network: what was compared, per problem the comparison table (as llmopt
compare prints it, with its notes), the figures (as llmopt plot draws them, embedded), each
configuration's best solution per seed, and for every run its meta-prompts and the LLM's raw
replies, one click away.

  llmopt report experiments/demo.toml --out demo.html     # a grid's runs (llmopt compare)
  llmopt report --store runs.db --out runs.html             # every run of a store
  llmopt report --store runs.db linreg-llm-seed0 --title "one run" --screenshot first-screen.png
"""

    HELP = "one self-contained HTML page of a grid's or a store's runs: tables, figures, prompts and replies"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        CompareCommand.add_arguments(p, figures=False)
        p.add_argument("--out", default="report.html", help="the HTML file to write (default: report.html)")
        p.add_argument("--title", help="the page's title (default: llmopt report: <grid or store name>)")
        p.add_argument("--x", nargs="+", choices=X_AXES, default=["step", "evals"], metavar="AXIS",
                       help="x axes of the best-so-far figures: step, evals, tokens, usd, seconds (default: step evals)")
        p.add_argument("--screenshot", metavar="PNG",
                       help="also save the page's first screen (1280x800) as a PNG: needs Playwright and Chromium")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        chromium = browser_ready() if args.screenshot else None  # before any work: say what is missing
        options = table_options(args)
        collected, store = selected_runs(args)
        with open_store(store, readonly=True) as opened:
            page = report_html(collected, opened, options=options, x_axes=args.x, title=args.title)
        out = Path(args.out)
        if out.parent != Path(""):
            out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
        print(f"wrote {out} ({len(page.encode('utf-8')) / 1e6:.1f} MB)")
        if args.screenshot:
            screenshot(out, args.screenshot, chromium=chromium)
            print(f"wrote {args.screenshot}")
        return 0
