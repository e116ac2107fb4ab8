"""`pplevelset explore`: the page in a real browser, and the one-line refusals before any sampling.

The browser test starts the explorer on the toy world (a small sweep: ready in seconds) in a
subprocess on a free port and drives Debian's chromium with Playwright (no browser download); it is
skipped only when no ``chromium`` is on PATH (CI installs it in ``.ci/run``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from pplevelset.cli import main
from pplevelset.errors import UserInputError
from pplevelset.explore.answers import LEVELS, Answers, Settings, pair_target
from pplevelset.targets import expand_targets

SMALL = ["--particles", "32", "--refine-particles", "64", "--warmup", "60", "--steps", "20"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STARTUP_S = 90  # importing torch and Panel on a busy two-core runner; a few seconds when idle


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- refusals: one line, exit 2, before anything is sampled ---------------------------------------


def test_a_port_in_use_is_one_line_and_exit_2(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = _run(["explore", "toy", "--port", str(port)], capsys)
    assert code == 2 and out == ""
    assert err == f"pplevelset: error: port {port} on 127.0.0.1 is in use; choose another with --port\n"


def test_without_panel_it_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "panel", None)  # `import panel` now raises ImportError
    code, out, err = _run(["explore", "toy", "--port", str(_free_port())], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "pip install 'pplevelset[explore]'" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pairs", "a,z"], "unknown class 'z'"),
        (["--pairs", "a,a"], "must differ"),
        (["--kernel", "nuts"], "rwmh or ensemble"),
        (["--alpha", "0"], "alpha must be a positive number"),
        (["--refine-particles", "3"], "at least 6 particles"),
        (["--port", "70000"], "not a port number"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(args, message, capsys):
    code, out, err = _run(["explore", "toy", "--port", str(_free_port()), *args], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert message in err


# -- the answers behind the page -------------------------------------------------------------------


def test_pair_targets_are_the_graded_family():
    classes = ["a", "b", "c"]
    family = expand_targets("graded:a,c", classes)
    assert [pair_target(("a", "c"), level, classes)[0] for level in LEVELS] == [t.spec for t in family]


def test_nearest_looks_up_the_sweep_and_refine_samples_the_exact_target():
    answers = Answers("toy", Settings(particles=16, refine_particles=16, warmup=20, steps=5), pairs=[("a", "b")])
    answers.precompute()
    near = answers.nearest(("a", "b"), 0.33)
    assert (near.level, near.spec, near.refined) == (0.3, "a=0.2997,b=0.6993", False)
    flipped = answers.nearest(("b", "a"), 0.67)  # the same sweep, read from the other end
    assert flipped.posterior is near.posterior and flipped.spec == "b=0.6993,a=0.2997"
    exact = answers.refine(("a", "b"), 0.33)
    assert exact.refined and exact.spec == "a=0.32967,b=0.66933"
    assert exact.posterior.target.tolist() == pytest.approx([0.32967, 0.66933, 0.001], abs=1e-6)


def test_the_component_swaps_b_when_a_takes_its_class_and_reports_bad_input():
    from pplevelset.explore.app import Explorer

    answers = Answers("toy", Settings(particles=16, refine_particles=16, warmup=20, steps=5), pairs=[("a", "b")])
    explorer = Explorer(answers, level=0.3)
    first = explorer.answer
    assert first is not None and first.spec == "a=0.2997,b=0.6993"
    swapped = explorer.select(a="b")  # B was b: it becomes a, and the (a, b) sweep answers from its other end
    assert (explorer.class_b.value, swapped.spec, explorer.level.name) == ("a", "b=0.2997,a=0.6993", "p(b)")
    assert swapped.posterior is answers.nearest(("a", "b"), 0.7).posterior
    assert answers.pairs == [("a", "b")] and not answers.ready(("a", "c"), 10.0)
    with pytest.raises(UserInputError, match="two different classes"):
        explorer.select(a="z")
    assert "two different classes" in explorer.status.object


# -- the page in a browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "pplevelset.cli", "explore", "toy", "--port", str(port), *SMALL],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the explorer exited with {process.returncode}: {process.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the explorer did not answer on {url} within {STARTUP_S} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: install Debian's chromium (apt-get install chromium) to run the browser test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


def _wait_for(read, wanted, timeout_s: float = 30.0) -> str:
    """Poll the page until ``read()`` satisfies ``wanted`` (a value, or a predicate): updates come
    one websocket message at a time, so intermediate values may show on the way."""
    check = wanted if callable(wanted) else (lambda now: now == wanted)
    deadline = time.monotonic() + timeout_s
    while not check(now := read()):
        assert time.monotonic() < deadline, f"{now!r} after {timeout_s} s, waiting for {wanted!r}"
        time.sleep(0.1)
    return now


def test_moving_the_slider_shows_the_new_target_and_refine_samples_it(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(server)
    fact = lambda key: page.locator(f"[data-fact={key}] td").inner_text()  # noqa: E731
    image = lambda: page.locator(".pls-grid img").get_attribute("src")  # noqa: E731
    page.locator("[data-fact=target] td").wait_for(timeout=60_000)
    assert fact("target") == "a=0.4995,b=0.4995" and "nearest level p(a) = 0.5" in fact("source")
    before = {key: fact(key) for key in ("target", "mean", "delta")}
    before_image = image()
    assert before_image.startswith("data:image/png;base64,")

    handle = page.locator(".pls-level .noUi-handle")
    handle.focus()
    for _ in range(4):
        handle.press("PageUp")  # +0.05 each: the slider now asks p(a) = 0.70
    _wait_for(lambda: fact("source"), "precomputed: nearest level p(a) = 0.7 (asked 0.70)")
    assert fact("target") == "a=0.6993,b=0.2997"
    assert fact("mean") != before["mean"] and fact("delta") != before["delta"]
    assert image() != before_image
    mean = dict(part.rsplit(" ", 1) for part in fact("mean").split(", "))
    assert float(mean["a"]) > 0.55 > float(mean["b"])  # the level set of p(a) = 0.7, not of 0.5

    handle.press("ArrowRight")  # 0.71: still nearest 0.7, and Refine samples exactly 0.71
    _wait_for(lambda: fact("source"), "precomputed: nearest level p(a) = 0.7 (asked 0.71)")
    page.locator(".pls-refine button").click()
    _wait_for(lambda: fact("source"), "refined: rwmh, the exact target")
    assert fact("target") == "a=0.70929,b=0.28971"

    page.locator(".pls-class-b select").select_option("c")  # another precomputed pair: a lookup again
    _wait_for(lambda: fact("target"), "a=0.6993,c=0.2997")
    assert fact("source") == "precomputed: nearest level p(a) = 0.7 (asked 0.71)"
    page.close()
