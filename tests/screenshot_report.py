"""Render RUN_DIR/report.html in headless Chromium, save a screenshot and check every figure loaded.

    python tests/screenshot_report.py runs/sgd_vs_adam
    python tests/screenshot_report.py runs/sgd_vs_adam --out /tmp/report.png

The check loads a copy of the page with a script that, once the page has loaded, records every
image's naturalWidth and naturalHeight (0 for an image the browser could not decode) in an
attribute that Chromium's --dump-dom prints. Exit code 0 when every figure in figures/ rendered,
1 when one did not, 2 for a bad RUN_DIR or no Chromium. A render check, not a benchmark: it lives
beside the test that runs it (tests/test_results.py).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from trainables.cli import fail  # noqa: E402
from trainables.rundir import FIGURES_DIR, REPORT_FILE, write_atomic  # noqa: E402

PROG = "python tests/screenshot_report.py"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")
PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images].map(
    i => ({alt: i.alt, width: i.naturalWidth, height: i.naturalHeight}));
  document.documentElement.setAttribute("data-images", JSON.stringify(images));
});</script>"""


def chromium(browser: str, *args: str, timeout: float = 120) -> str:
    """Run Chromium once with a fresh profile and return what it printed on stdout."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"{browser} exited with {done.returncode}: {lines[-1] if lines else ''}")
    return done.stdout


def rendered_images(browser: str, page: Path) -> list[dict]:
    """Every <img> of the page as the browser decoded it: alt, width, height (0 when it failed)."""
    source = page.read_text()
    base = f'<base href="{page.parent.resolve().as_uri()}/">'  # relative figure paths still resolve
    probed = source.replace("<head>", "<head>" + base, 1).replace("</body>", PROBE + "</body>", 1)
    with tempfile.TemporaryDirectory(prefix="report-check-") as tmp:
        copy = Path(tmp) / "report.html"
        copy.write_text(probed)
        dom = chromium(browser, "--dump-dom", "--virtual-time-budget=10000", copy.as_uri())
    match = re.search(r'data-images="([^"]*)"', dom)
    if match is None:
        raise RuntimeError("the page's load event never ran (no data-images attribute in the DOM)")
    return json.loads(html.unescape(match.group(1)))


def screenshot(browser: str, page: Path, out: Path, window_size: str) -> Path:
    with tempfile.TemporaryDirectory(prefix="report-shot-") as tmp:
        shot = Path(tmp) / "report.png"  # Chromium picks the format by extension: not a .tmp name
        chromium(browser, f"--screenshot={shot}", f"--window-size={window_size}",
                 page.resolve().as_uri())
        if not shot.is_file() or shot.stat().st_size == 0:
            raise RuntimeError(f"{browser} wrote no screenshot of {page}")
        return write_atomic(out, lambda target: shutil.copyfile(shot, target))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="an experiment directory with report.html")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to save the screenshot (default: RUN_DIR/report.png)")
    parser.add_argument("--browser", default="/usr/bin/chromium",
                        help="the Chromium binary (default: /usr/bin/chromium)")
    parser.add_argument("--window-size", default="1200,3000",
                        help="width,height of the screenshot in pixels (default: 1200,3000)")
    args = parser.parse_args(argv)
    page = args.run_dir / REPORT_FILE
    if not page.is_file():
        fail(PROG, f"{page} does not exist; write it first with "
                   f"python -m results.report {args.run_dir}")
    if shutil.which(args.browser) is None:
        fail(PROG, f"no browser at {args.browser}; pass --browser PATH to a Chromium binary")
    out = args.out or args.run_dir / "report.png"
    try:
        images = rendered_images(args.browser, page)
        screenshot(args.browser, page, out, args.window_size)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        fail(PROG, str(err))
    expected = len(list((args.run_dir / FIGURES_DIR).glob("*.png")))
    broken = [i["alt"] for i in images if not (i["width"] > 0 and i["height"] > 0)]
    sizes = ", ".join(f"{i['alt']} {i['width']}x{i['height']}" for i in images)
    print(f"{len(images) - len(broken)} of {expected} figures rendered ({sizes}); "
          f"screenshot: {out}")
    if broken:
        print(f"not rendered: {', '.join(broken)}", file=sys.stderr)
    if len(images) != expected:
        print(f"the page shows {len(images)} images, figures/ holds {expected}", file=sys.stderr)
    if broken or len(images) != expected:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
