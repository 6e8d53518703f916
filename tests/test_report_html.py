"""`llmopt report`: one self-contained HTML page, checked as text and in a real headless browser.

The store holds two random-search runs (the command line) and one OPRO run whose scripted model
replies with hostile text; the page must show that text as text, load nothing and run nothing.
The browser tests drive the system's Chromium through Playwright (never Playwright's own browser
download) and are skipped, saying why, where either is missing.
"""

from __future__ import annotations

import base64
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from llmopt import Budget, LLMProposer, Optimizer, RunStore
from llmopt.cli import main
from llmopt.cli.report import BROWSER_ARGS, find_chromium
from llmopt.experiments.html import stored_runs
from llmopt.experiments.plot import collect_runs
from llmopt.testing import ScriptedLLM
from problems.linear_regression import LinearRegression

SCRIPT_PWN = "</script><script>window.__pwned=1</script>"
IMG_PWN = '<img src=x onerror="window.__pwned=2">'
# two proposals a step, one round: step 1 gets both hostile replies (nothing new is scored, so step 2's
# meta-prompt is step 1's again), then ordinary pairs
REPLIES = [SCRIPT_PWN, IMG_PWN, "[12, 10]", "Sure: w=14, b=13", "[13, 12]", "[16, 15]"]
SCRIPTED = "linreg-scripted-seed0"


def _store(path: Path) -> Path:
    for seed in (0, 1):
        assert main(["run", "linreg", "--proposer", "random", "--steps", "3", "--seed", str(seed), "--store", str(path),
                     "--quiet"]) == 0
    with RunStore(path) as store:
        Optimizer(LinearRegression(w_true=15, b_true=14, seed=0), LLMProposer(ScriptedLLM(REPLIES)), seed=0,
                  store=store, name=SCRIPTED, proposals_per_step=2, max_rounds=1, budget=Budget(max_steps=3)).run()
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """(store, report) made once for the module through the command line."""
    folder = tmp_path_factory.mktemp("report")
    store = _store(folder / "runs.db")
    page = folder / "report.html"
    assert main(["report", "--store", str(store), "--out", str(page), "--title", "test <report>"]) == 0
    return store, page


def test_the_page_is_self_contained_and_escapes_every_reply(made) -> None:
    store, page = made
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<title>test &lt;report&gt;</title>" in text
    # no script, and nothing fetched: every src is a data: URI, every href a link inside the page
    assert "<script" not in text.lower()
    assert not re.search(r"https?://", " ".join(re.findall(r"""(?:src|href)\s*=\s*["']?[^"'\s>]*""", text)))
    assert re.findall(r"""\bhref="([^"]*)""", text) and all(h.startswith("#") for h in re.findall(r'href="([^"]*)', text))
    images = re.findall(r'<img src="([^"]*)" alt="([^"]+)"', text)
    assert len(images) >= 3 and len(images) == text.count("<img ")
    for src, alt in images:
        assert src.startswith("data:image/png;base64,") and alt.startswith("linreg: linreg-")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "<figcaption>linreg-best-vs-step</figcaption>" in text
    # the comparison table as llmopt compare computes it, with its notes
    assert "<th scope=\"col\">configuration</th>" in text and "<td>opro scripted/model</td>" in text
    assert '<p class="note">cells: median' in text
    # the hostile replies are there, as text only
    assert SCRIPT_PWN not in text and IMG_PWN not in text and "<img src=x" not in text
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=&quot;window.__pwned=2&quot;&gt;" in text
    # every run one click away: closed, one <details> each, its name in the summary
    assert text.count('<details class="run"') == 3 and "<details class=\"run\" open" not in text
    for name in ("linreg-random-seed0", "linreg-random-seed1", SCRIPTED):
        assert f"<b>{name}</b>" in text
    # best solutions per configuration; an identical meta-prompt is shown once
    assert "<h4>random</h4>" in text and "<h4>opro scripted/model</h4>" in text
    with RunStore(store, readonly=True) as opened:
        run = opened.get_run(SCRIPTED)
        prompts = {s["step"]: s["prompt"] for s in opened.records("steps", run.id)}
    assert prompts[1] == prompts[2] and prompts[3] != prompts[1]
    assert text.count(_escaped(prompts[1])) == 1 and text.count(_escaped(prompts[3])) == 1
    assert "meta-prompt: the same as step 1" in text


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#x27;")


def test_each_outcome_finds_its_own_run_whatever_the_order(made) -> None:
    """collect_runs labels runs by settings, so a cell's name is not a run name: the run is found by
    problem, seed and its trials, and reversing the outcomes changes nothing."""
    store, _ = made
    with RunStore(store, readonly=True) as opened:
        collected = collect_runs(opened)
        expected = {(o.cell.config, o.cell.seed) for o in collected.outcomes}
        assert expected == {("random", 0), ("random", 1), ("opro scripted/model", 0)}
        collected.outcomes.reverse()
        found = stored_runs(collected, opened)
    names = {"random": "linreg-random-seed{}", "opro scripted/model": "linreg-scripted-seed{}"}
    assert [r.name for r in found] == [names[o.cell.config].format(o.cell.seed) for o in collected.outcomes]


def test_runs_that_differ_only_in_budget_each_find_their_own(tmp_path: Path) -> None:
    """The same seed and settings with 2 and 4 steps: the same first trials, the same labels. The
    longer run must not take the shorter one's place, in either order."""
    store = tmp_path / "b.db"
    for steps, name in ((4, "long"), (2, "short")):
        assert main(["run", "linreg", "--proposer", "random", "--steps", str(steps), "--seed", "0", "--store", str(store),
                     "--name", name, "--quiet"]) == 0
    with RunStore(store, readonly=True) as opened:
        collected = collect_runs(opened)
        assert len({o.cell.name for o in collected.outcomes}) == 1  # told apart by nothing but their trials
        lengths = {len(o.result.history): name for o, name in zip(collected.outcomes, ("long", "short"))}
        for _ in range(2):
            found = stored_runs(collected, opened)
            assert [r.name for r in found] == [lengths[len(o.result.history)] for o in collected.outcomes]
            collected.outcomes.reverse()


def test_a_grid_report_reads_each_cell_run_by_name(tmp_path: Path, capsys) -> None:
    grid, store, page = tmp_path / "g.toml", tmp_path / "g.db", tmp_path / "out" / "g.html"
    grid.write_text('name = "tiny"\nseeds = 2\n[defaults]\nproposer = "random"\nsteps = 2\n[problems.linreg]\n'
                    "[configs.random]\n[configs.narrow]\nrandom-range = [10, 20]\n")
    assert main(["report", str(grid), "--store", str(store), "--out", str(page)]) == 2
    assert "no store at" in capsys.readouterr().err
    assert main(["compare", str(grid), "--store", str(store), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", str(grid), "--store", str(store), "--out", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    for config in ("random", "narrow"):
        for seed in (0, 1):
            assert f"<b>tiny/linreg/{config}/seed{seed}</b>" in text
    assert "tiny (" in text and str(grid) in text  # the header names the grid and its file
    assert text.count('<details class="run"') == 4 and "not found in the store" not in text


@pytest.mark.slow
def test_the_store_can_be_named_where_the_grid_would_be(made, tmp_path: Path, capsys, monkeypatch) -> None:
    """`llmopt report runs.db`: a SQLite file, told by its header, is the store, not a grid to parse.
    The page embeds PNGs, so each figure is drawn once, as a PNG (an SVG beside it was thrown away)."""
    from matplotlib.figure import Figure

    store, page = made
    again = tmp_path / "again.html"
    saved: list[str] = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: (saved.append(Path(path).suffix),
                                                                    savefig(fig, path, **kw))[1])
    assert main(["report", str(store), "--out", str(again), "--title", "test <report>"]) == 0
    assert saved and set(saved) == {".png"}, saved
    same = re.compile(r"generated</dt><dd>[^<]*")  # the one line that differs: when the page was made
    assert same.sub("", again.read_text()) == same.sub("", page.read_text())
    assert main(["report", str(store), "--store", str(tmp_path / "other.db"), "--out", str(again)]) == 2
    assert "two stores" in capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    for argv, message in [
        (["report", "--store", str(tmp_path / "none.db")], "no store at"),
        (["report", "--store", str(tmp_path / "none.db"), "--set", "steps=3"], "describe a grid"),
    ]:
        assert main([*argv, "--out", str(tmp_path / "r.html")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    with RunStore(tmp_path / "empty.db"):
        pass
    assert main(["report", "--store", str(tmp_path / "empty.db"), "--out", str(tmp_path / "r.html")]) == 2
    assert "no runs" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("missing, message", [("playwright", "--screenshot needs Playwright for Python: pip install"),
                                              ("chromium", "--screenshot needs Chromium (e.g. apt-get install")])
def test_a_screenshot_without_its_browser_is_one_line_before_any_work(missing: str, message: str, tmp_path: Path,
                                                                      capsys, monkeypatch) -> None:
    """What --screenshot lacks is said first, whether or not this machine has Playwright and Chromium:
    both are made present or missing here."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args):
        if name == "playwright":
            return None if missing == "playwright" else real("json")  # any spec: "importable"
        return real(name, *args)

    monkeypatch.setattr("llmopt.cli.report.importlib.util.find_spec", find_spec)
    monkeypatch.setattr("llmopt.cli.report.find_chromium", lambda: None if missing == "chromium" else "/bin/true")
    with RunStore(tmp_path / "empty.db"):  # no runs either: the browser is checked before the store is read
        pass
    out, png = tmp_path / "r.html", tmp_path / "s.png"
    assert main(["report", "--store", str(tmp_path / "empty.db"), "--out", str(out), "--screenshot", str(png)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not png.exists()


# --- in a real browser ------------------------------------------------------------------------

def _browser_or_skip() -> str:
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("Playwright for Python is not importable (pip install playwright; no browser download needed)")
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium: /usr/bin/chromium is missing (apt-get install chromium)")
    return chromium


def _not_blank(png: Path, shape: tuple[int, int] | None = None) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(str(png))
    if shape is not None:
        assert pixels.shape[:2] == shape
    colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert pixels[..., :3].std() > 0.05 and len(colours) > 50, (pixels.std(), len(colours))


@pytest.mark.slow
def test_the_page_in_headless_chromium(made, tmp_path: Path) -> None:
    chromium = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    _, page_file = made
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=list(BROWSER_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            fetched: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: fetched.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            assert page.locator("table").count() >= 4 and page.locator("h2", has_text="linreg").is_visible()
            sizes = page.locator("img").evaluate_all("imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            assert len(sizes) >= 3 and all(done and w > 100 and h > 100 for done, w, h in sizes), sizes
            run = page.locator("details.run", has=page.locator("summary", has_text=SCRIPTED))
            assert run.count() == 1 and run.get_attribute("open") is None
            prompt = run.locator("pre.prompt").first
            assert not prompt.is_visible()
            run.locator(":scope > summary").click()
            assert run.get_attribute("open") is not None and prompt.is_visible()
            assert "Now you will help me minimize" in prompt.inner_text()
            assert run.get_by_text(SCRIPT_PWN, exact=True).first.is_visible()
            assert run.get_by_text(IMG_PWN, exact=True).first.is_visible()
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert errors == []
            assert all(u.startswith(("file:", "data:")) for u in fetched), fetched
            shot = tmp_path / "page.png"  # the page's last figure, below the first screen, as drawn
            last = page.locator("img").last
            assert last.evaluate("e => e.getBoundingClientRect().top + window.scrollY") > 800  # (a full-page shot
            # of it all took 14 s more)
            last.screenshot(path=str(shot))
        finally:
            browser.close()
    _not_blank(shot)


@pytest.mark.slow
def test_screenshot_of_the_first_screen(made, tmp_path: Path) -> None:
    _browser_or_skip()
    store, _ = made
    png = tmp_path / "first.png"
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "r.html"), "--screenshot", str(png)]) == 0
    _not_blank(png, (800, 1280))
