"""Headless Chromium for tests that must see a page rendered and its JavaScript run.

`find_chromium()` locates the browser and, when it is missing and we are root on Debian, installs
Debian's `chromium` package once (a file lock keeps concurrent test runs from racing apt).
`require_chromium()` turns a failure into a pytest skip that says why.

`render()` loads a page headless and returns the dumped DOM plus every JavaScript error seen. Errors
come from two independent channels, because neither alone is reliable across Chromium versions:

1. an error collector script injected at the top of a *copy* of the page (`window.onerror`,
   `unhandledrejection`, and `console.error`), which writes what it caught into a `<pre>` that
   `--dump-dom` then shows;
2. the browser's own console log on stderr (`--enable-logging=stderr`), where uncaught exceptions
   appear as `...:CONSOLE(...)] "Uncaught ..."` lines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import file_lock

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_LOCK = Path(tempfile.gettempdir()) / "jointopt-chromium-install.lock"
_FAILED_MARK = Path(tempfile.gettempdir()) / "jointopt-chromium-install.failed"

# The flags keep a headless run offline and deterministic. SwiftShader gives WebGL without a GPU:
# plotly's 3-D scatter and parallel coordinates draw through WebGL and would otherwise show a
# "WebGL not supported" notice instead of a plot.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--virtual-time-budget=5000",
)

ERRORS_ID = "__jointopt_js_errors__"
# Runs before any other script of the page, so it sees errors thrown while plotly loads too.
_COLLECTOR = f"""<script>
(function () {{
  var errs = [];
  function note(kind, msg) {{ errs.push(kind + ": " + msg); }}
  window.addEventListener("error", function (e) {{
    note("uncaught", (e.error && e.error.stack) || e.message);
  }});
  window.addEventListener("unhandledrejection", function (e) {{
    note("unhandledrejection", String(e.reason && (e.reason.stack || e.reason)));
  }});
  var orig = console.error;
  console.error = function () {{
    note("console.error", Array.prototype.join.call(arguments, " "));
    return orig.apply(console, arguments);
  }};
  window.addEventListener("load", function () {{
    setTimeout(function () {{
      var pre = document.createElement("pre");
      pre.id = "{ERRORS_ID}";
      pre.textContent = JSON.stringify(errs);
      document.body.appendChild(pre);
    }}, 0);
  }});
}})();
</script>"""

# Chromium writes console messages as `[pid:tid:time:LEVEL:CONSOLE(line)] "message", source: url`
# (newer builds: `:CONSOLE:line]`). An uncaught exception's message starts with "Uncaught".
_CONSOLE_LINE = re.compile(r":CONSOLE[(:]\d*\)?\]\s*\"(?P<msg>.*?)\",\s*source:", re.DOTALL)


def find_chromium(*, install: bool = True) -> tuple[str | None, str]:
    """Return (path, "") or (None, why not). Installs Debian's chromium once when root."""
    found = _which()
    if found:
        return found, ""
    if not install:
        return None, "chromium is not installed"
    if os.geteuid() != 0:
        return None, "chromium is not installed and we are not root to apt-get install it"
    if not shutil.which("apt-get"):
        return None, "chromium is not installed and apt-get is not available"
    with file_lock(_LOCK):
        found = _which()  # another process may have installed it while we waited
        if found:
            return found, ""
        if _FAILED_MARK.exists():
            return None, (f"an earlier chromium install failed (delete {_FAILED_MARK} to retry): "
                          f"{_FAILED_MARK.read_text()[-500:]}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
        for cmd in (apt + ["update"], apt + ["install", "-y", "--no-install-recommends",
                                             "chromium"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if proc.returncode != 0:
                # Remember the failure so every test in the session does not retry for minutes.
                _FAILED_MARK.write_text(f"{' '.join(cmd)}: {proc.stderr.strip()}")
                return None, f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}"
    found = _which()
    return (found, "") if found else (None, "apt-get installed chromium but it is not on PATH")


def require_chromium() -> str:
    """The chromium binary, or skip the calling test with the reason. With
    JOINTOPT_REQUIRE_BROWSER=1 (set by .ci/run, which installs chromium) the test fails
    instead: in CI a browser check must run."""
    path, why = find_chromium()
    if path is None:
        if os.environ.get("JOINTOPT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"headless browser check cannot run: {why}")
        pytest.skip(f"headless browser check skipped: {why}")
    return path


@dataclass
class Rendered:
    dom: str
    errors: list[str]  # from the injected collector, then from the console log
    stderr: str
    screenshot: Path | None


def render(html_path: Path, *, screenshot: Path | None = None, timeout: float = 120,
           window: tuple[int, int] = (1280, 4000)) -> Rendered:
    """Load a copy of `html_path` (with the error collector injected) in headless Chromium."""
    browser = require_chromium()
    with tempfile.TemporaryDirectory(prefix="jointopt-chromium-") as tmp:
        page = Path(tmp) / html_path.name
        page.write_text(inject_collector(html_path.read_text(encoding="utf-8")), encoding="utf-8")
        profile = Path(tmp) / "profile"
        base = [browser, *FLAGS, f"--user-data-dir={profile}",
                f"--window-size={window[0]},{window[1]}"]
        proc = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True,
                              text=True, timeout=timeout)
        if screenshot is not None:
            # A separate run: --dump-dom and --screenshot do not combine in one invocation.
            subprocess.run([*base, f"--screenshot={screenshot}", page.as_uri()],
                           capture_output=True, text=True, timeout=timeout)
    errors = collected_errors(proc.stdout) + console_errors(proc.stderr)
    return Rendered(proc.stdout, errors, proc.stderr,
                    screenshot if screenshot is not None and screenshot.exists() else None)


def inject_collector(html: str) -> str:
    """The page with the error collector as the first script (right after <head>)."""
    match = re.search(r"<head[^>]*>", html, flags=re.IGNORECASE)
    at = match.end() if match else 0
    return html[:at] + _COLLECTOR + html[at:]


def collected_errors(dom: str) -> list[str]:
    """Errors the injected collector wrote into the dumped DOM."""
    import html as _html
    import json

    match = re.search(rf'<pre id="{ERRORS_ID}">(.*?)</pre>', dom, flags=re.DOTALL)
    if match is None:
        # The collector never reported: the page did not finish loading, which is itself a fault.
        return ["collector: no report in the DOM (page did not load?)"]
    return [str(e) for e in json.loads(_html.unescape(match.group(1)))]


def console_errors(stderr: str) -> list[str]:
    """Uncaught exceptions in Chromium's console log."""
    return [m.group("msg") for m in _CONSOLE_LINE.finditer(stderr)
            if m.group("msg").startswith("Uncaught")]


def _which() -> str | None:
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


