#!/usr/bin/env python
"""Screenshot MLflow's compare view of one table's rows (docs/img/mlflow_compare.png).

Logs the finished runs of one table (``--table``, default table2) from ``--runs-dir`` into a fresh
MLflow store with the pipeline's own logging code (``protoseg.pipeline.tracking.log_plan_runs``, what
``protoseg experiments log-mlflow`` runs), starts a real ``mlflow server`` on it, opens the compare
view of those runs (``#/compare-runs``) in headless Chromium, driven over the DevTools protocol
(aiohttp's websocket client: it closes the assistant panel and collapses the plot, parameter and
artifact sections so that the run details and the metrics ``paper_mIoU``, ``mIoU`` and
``delta_vs_paper`` show together) and saves a PNG. Unfinished runs of the
table are skipped (listed on stderr). Nothing here is needed to use the pipeline; CI does not run it.

    .venv/bin/python scripts/mlflow_screenshot.py --runs-dir runs --table table2 --out docs/img/mlflow_compare.png

Needs Chromium (Debian: ``apt-get install -y chromium``, /usr/bin/chromium) and a free port.
The server listens on 127.0.0.1 only and is stopped at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"error: mlflow server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"error: mlflow server at {url} not healthy after {timeout:.0f} s")


def log_table(runs_dir: str, table: str, scale: str, uri: str, artifact_root: str) -> tuple[str, list[str]]:
    """Log the finished runs (seed 0) of ``table``; returns (experiment id, run ids in table order)."""
    from mlflow.tracking import MlflowClient

    from protoseg.pipeline.experiments import build_plan, load_pipeline_config
    from protoseg.pipeline.tracking import log_plan_runs

    plan = build_plan(load_pipeline_config(None, {"scale": scale, "runs_dir": runs_dir, "seeds": [0]}))
    if table not in {e.table for e in plan.entries.values()}:
        raise SystemExit(f"error: --table {table!r}: not a table of the experiment list")
    keys = plan.keys_for_tables([table])
    done = [k for k in keys if (Path(plan.run_dir(k, 0)) / "metrics.json").is_file()]
    for k in sorted(set(keys) - set(done)):
        print(f"skipped (not finished): {plan.run_dir(k, 0)} ({', '.join(plan.runs[k].entries)})", file=sys.stderr)
    if len(done) < 2:
        raise SystemExit(f"error: {table}: {len(done)} finished run(s) in {runs_dir}; need at least 2 to compare "
                         f"(train them: snakemake -c2 tables)")
    results = log_plan_runs(plan, done, tracking_uri=uri, artifact_root=artifact_root)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(f"{plan.scale}/{table}")
    by_entry = {}
    for r in results:
        run = client.get_run(r["run_id"])
        if run.info.experiment_id == exp.experiment_id:
            by_entry[run.data.tags["entry"]] = run.info.run_id
    order = [e.id for e in plan.entries.values() if e.table == table and e.id in by_entry]
    return exp.experiment_id, [by_entry[e] for e in order]


def compare_url(base: str, exp_id: str, run_ids: list[str]) -> str:
    q = urllib.parse.urlencode({"runs": json.dumps(run_ids), "experiments": json.dumps([exp_id])})
    return f"{base}/#/compare-runs?{q}"


# the compare page is a JS app: collapse what hides the metrics, then measure where they end
PREPARE_JS = """(() => {
  const find = (label) => [...document.querySelectorAll('[role=button],button')].find(
      e => (e.getAttribute('aria-label') || '') === label || e.innerText.trim() === label);
  const done = [];
  for (const label of %s) { const e = find(label); if (e) { e.click(); done.push(label); } }
  return done;
})()"""
BOTTOM_JS = """(() => {
  const e = [...document.querySelectorAll('[role=button]')].find(e => e.innerText.trim() === 'Artifacts');
  return e ? Math.ceil(e.getBoundingClientRect().top) : null;
})()"""
COLLAPSE = ["Close", "Visualizations", "Parameters", "Artifacts"]  # "Close": the assistant side panel


async def _cdp_screenshot(chromium: str, url: str, out: Path, width: int, height: int, timeout: float) -> dict:
    """Drive headless Chromium over the DevTools protocol (aiohttp's websocket client)."""
    import asyncio
    import base64

    import aiohttp

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                 "--remote-debugging-port=0", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            end = time.monotonic() + 60
            while not (port_file.is_file() and port_file.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > end:
                    raise SystemExit(f"error: {chromium} did not start (status {proc.poll()})")
                await asyncio.sleep(0.2)
            port = port_file.read_text().split()[0]
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
                    page = next(t for t in await r.json() if t["type"] == "page")
                async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    ids = iter(range(1, 10**6))

                    async def call(method, **params):
                        mid = next(ids)
                        await ws.send_json({"id": mid, "method": method, "params": params})
                        while True:
                            msg = await ws.receive_json()
                            if msg.get("id") == mid:
                                if "error" in msg:
                                    raise SystemExit(f"error: chromium {method}: {msg['error']}")
                                return msg["result"]

                    async def value(js):
                        return (await call("Runtime.evaluate", expression=js, returnByValue=True))["result"].get("value")

                    await call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                               deviceScaleFactor=1, mobile=False)
                    await call("Page.navigate", url=url)
                    end = time.monotonic() + timeout
                    while not await value("document.body && document.body.innerText.includes('delta_vs_paper')"):
                        if time.monotonic() > end:
                            raise SystemExit(f"error: the compare view showed no delta_vs_paper within {timeout:.0f} s")
                        await asyncio.sleep(0.5)
                    collapsed = await value(PREPARE_JS % json.dumps(COLLAPSE))
                    await asyncio.sleep(1.5)  # the collapse animation
                    bottom = await value(BOTTOM_JS) or height
                    shot = await call("Page.captureScreenshot", format="png",
                                      clip={"x": 0, "y": 0, "width": width, "height": min(height, bottom + 8),
                                            "scale": 1})
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))
            return {"collapsed": collapsed, "height": min(height, bottom + 8)}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the browser we started, and its helpers
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def screenshot(chromium: str, url: str, out: Path, size: str, timeout: float) -> dict:
    import asyncio

    try:
        width, height = (int(x) for x in size.split(","))
    except ValueError:
        raise SystemExit(f"error: --window-size {size!r}: expected WIDTH,HEIGHT, e.g. 1500,1250") from None
    return asyncio.run(_cdp_screenshot(chromium, url, out, width, height, timeout))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs-dir", default="runs", help="the pipeline's runs_dir (default: %(default)s)")
    ap.add_argument("--scale", default="mini", choices=("mini", "paper"))
    ap.add_argument("--table", default="table2", help="the table whose rows are compared (default: %(default)s)")
    ap.add_argument("--out", default="docs/img/mlflow_compare.png")
    ap.add_argument("--store", help="MLflow store folder (default: a temporary one, removed at the end)")
    ap.add_argument("--window-size", default="2000,1000", help="WIDTH,HEIGHT in pixels (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the page (default: %(default)s)")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args(argv)
    if not Path(args.chromium).is_file():
        raise SystemExit(f"error: --chromium {args.chromium}: not found; install it (apt-get install -y chromium)")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    tmp = None
    store = Path(args.store) if args.store else Path(tmp := tempfile.mkdtemp(prefix="mlflow-shot-"))
    uri, art = f"sqlite:///{(store / 'mlflow.db').resolve()}", str((store / "artifacts").resolve())
    exp_id, run_ids = log_table(args.runs_dir, args.table, args.scale, uri, art)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    mlflow = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", uri, "--default-artifact-root", art,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_healthy(base, server)
        url = compare_url(base, exp_id, run_ids)
        info = screenshot(args.chromium, url, Path(args.out), args.window_size, args.timeout)
        print(json.dumps({"written": args.out, "runs": len(run_ids), **info, "url": url.replace(base, "<server>")}))
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers: the group we started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
