"""The report in real headless Chromium (Debian's `chromium`, installed by `make test` as root), driven over
the DevTools protocol: it renders every chart, logs no console error, makes no network request and opens no
dialog (the page of hostile strings runs no script), and a screenshot is saved under the test's output."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from registry.files import write_atomic
from reports import build
from reports.warehouse import Sources, Warehouse
from tests.reports.test_report_sql import build as build_tables

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (make test installs Debian's chromium when run as root)"
)
websocket = pytest.importorskip(
    "websocket", reason="websocket-client (the test extra) drives Chromium's DevTools protocol"
)


class DevTools:
    """A minimal DevTools-protocol client on one page target: commands, and every event kept."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        for ev in self.events[:seen]:
            if ev.get("method") == method:
                self.events.remove(ev)
                return ev
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(method)


@pytest.fixture
def chromium(tmp_path):
    profile = tmp_path / "profile"
    # Chromium's own temporary files: the profile's singleton socket lives in a TMPDIR folder that a terminated
    # Chromium leaves behind, one more /tmp/org.chromium.Chromium.* a run; a folder of the test's, removed after (a
    # short path: a socket's path is limited to 107 bytes, and pytest's tmp_path is longer)
    scratch = Path(tempfile.mkdtemp(prefix="subnets-chromium-"))
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1280,2000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:  # local DevTools only
            page = next(t for t in json.load(r) if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.send(f"{domain}.enable")
        yield tools
        tools.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(scratch, ignore_errors=True)


def _open(tools: DevTools, path: Path) -> list[dict]:
    tools.events.clear()
    tools.send("Page.navigate", url=path.as_uri())
    tools.wait_for("Page.loadEventFired")
    tools.send("Runtime.evaluate", expression="1")  # drain what the load queued
    time.sleep(0.3)
    tools.send("Runtime.evaluate", expression="1")
    return list(tools.events)


def _problems(events: list[dict], url: str) -> list[str]:
    out = []
    for ev in events:
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            out.append(f"console {p['type']}: {p.get('args')}")
        elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Network.requestWillBeSent" and p["request"]["url"] != url:
            out.append(f"request: {p['request']['url']}")
        elif m == "Page.javascriptDialogOpening":
            out.append(f"dialog: {p.get('message')}")
    return out


def test_report_renders_in_chromium_without_errors_or_requests(chromium, tmp_path):
    files = build_tables(tmp_path / "tables")
    with Warehouse(Sources(files=files)) as wh:
        html = build.render_report(wh, "sqlite:////store/mlflow.db")
    report = write_atomic(tmp_path / "report.html", html)

    events = _open(chromium, report)
    assert _problems(events, report.as_uri()) == []
    requested = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert requested in ([report.as_uri()], [])  # the page itself, nothing else
    counted = chromium.send(
        "Runtime.evaluate",
        expression="[document.querySelectorAll('svg').length, "
        "document.querySelectorAll('section').length, document.title]",
        returnByValue=True,
    )
    assert counted["result"]["value"] == [html.count("<svg"), 6, "subnets report"]  # findings, a, c, d, e, comparison
    # every chart is laid out with a size (rendered, not dropped as invalid markup)
    sizes = chromium.send(
        "Runtime.evaluate",
        returnByValue=True,
        expression=("Array.from(document.querySelectorAll('svg')).every(s => s.getBoundingClientRect().width > 50)"),
    )
    assert sizes["result"]["value"] is True
    shot = chromium.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    png = tmp_path / "report.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_the_report_opens_with_its_findings_in_chromium(chromium, tmp_path):
    """The Findings section is the page's first section, above the contents, in the first screen: one row per row of
    the findings view, in its order, each verdict styled (one that does not hold in red)."""
    from tests.reports.test_findings import build_findings_fixture

    with Warehouse(Sources(files=build_findings_fixture(tmp_path / "tables"))) as wh:
        html = build.render_report(wh, "sqlite:////store/mlflow.db")
        findings = wh.named_rows("SELECT claim_no, experiment, verdict FROM findings")
    report = write_atomic(tmp_path / "findings.html", html)
    events = _open(chromium, report)
    assert _problems(events, report.as_uri()) == []
    found = chromium.send(
        "Runtime.evaluate",
        returnByValue=True,
        expression="""(() => {
            const first = document.querySelector('section');
            const cells = Array.from(first.querySelectorAll('td.verdict'));
            const red = first.querySelector('td.verdict.does-not-hold');
            return [first.id, document.querySelector('h2').textContent, document.querySelector('nav a').hash,
                    first.compareDocumentPosition(document.querySelector('nav')) === Node.DOCUMENT_POSITION_FOLLOWING,
                    first.getBoundingClientRect().top < window.innerHeight,
                    cells.map(c => c.firstChild.textContent), getComputedStyle(red).color];
        })()""",
    )
    first_id, heading, nav_first, above_nav, first_screen, verdicts, red = found["result"]["value"]
    assert (first_id, heading, nav_first, above_nav, first_screen) == ("findings", "Findings", "#findings", True, True)
    assert verdicts == [r["verdict"] for r in findings] and len(set(verdicts)) == 3
    assert red == "rgb(178, 34, 34)"
    shot = chromium.send("Page.captureScreenshot", format="png")
    (tmp_path / "findings.png").write_bytes(base64.b64decode(shot["data"]))


def test_hostile_strings_run_no_script_in_chromium(chromium, tmp_path):
    import json as _json

    from reports.warehouse import TABLES
    from runners.tracking.tables import write_table
    from tests.reports.test_report_page import XSS

    i = dict(experiment="xss", run_id="r1", fingerprint="f1", group_id="g1", seed=0, prune_seed=0, method=XSS)
    write_table(
        tmp_path,
        "runs",
        [
            dict(
                i,
                label=f"seed=0, tag={XSS}",
                description=XSS,
                x_axis="step",
                config_json=_json.dumps({"tags": {"note": XSS}}),
                final_step=1,
                keep_rule="ratio",
                keep_threshold=0.9,
            )
        ],
    )
    write_table(
        tmp_path,
        "steps",
        [
            dict(
                i,
                variant="pruned",
                step=k,
                x=float(k),
                sparsity=0.1 * k,
                eval_set=e,
                kind="id" if e == "id" else "ood",
                subcase="all",
                metric="accuracy",
                value=0.5 + 0.1 * k,
                n=1,
                passed=True,
                selected=k == 1,
            )
            for k in (0, 1)
            for e in ("id", XSS)
        ],
    )
    files = {t: [] for t in TABLES}
    files["runs"].append(tmp_path / TABLES["runs"][0])
    files["steps"].append(tmp_path / TABLES["steps"][0])
    with Warehouse(Sources(files=files)) as wh:
        report = write_atomic(tmp_path / "xss.html", build.render_report(wh, "sqlite:////x/mlflow.db"))
    events = _open(chromium, report)
    assert _problems(events, report.as_uri()) == []
    found = chromium.send(
        "Runtime.evaluate",
        returnByValue=True,
        expression=(
            "[document.scripts.length, document.images.length, document.body.innerText.includes('onerror=alert(1)')]"
        ),
    )
    assert found["result"]["value"] == [0, 0, True]  # shown as text, never as markup
    shot = chromium.send("Page.captureScreenshot", format="png")
    (tmp_path / "xss.png").write_bytes(base64.b64decode(shot["data"]))
