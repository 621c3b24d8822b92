"""`orderdesk demo` on a machine without configured servers: starts, serves, stops clean."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_demo_runs_with_embedded_servers_and_stops_on_sigterm(tmp_path):
    data_dir = tmp_path / "demo-data"
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "ORDERDESK_SECRET_KEY"}
    }
    demo = subprocess.Popen(
        [sys.executable, "-m", "orderdesk.cli", "demo", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and demo.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 200, "demo never became ready"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as browser:
            page = browser.get("/sign-in")
            token = page.text.split('name="_csrf" value="')[1].split('"')[0]
            signed_in = browser.post(
                "/sign-in",
                data={"email": "agent@orderdesk.example.com", "password": "orderdesk-demo-1", "_csrf": token},
            )
            assert signed_in.status_code == 200
            assert "Acme Outdoor Gear" in signed_in.text and "Kaze Cycles" in signed_in.text
            assert "Borealis Tea" not in signed_in.text  # not assigned to this agent
            orders = browser.get("/api/v1/orders?limit=200").json()["items"]
            assert len(orders) >= 50  # two tenants' demo orders
            assert len({o["status"] for o in orders}) >= 8  # spread over the lifecycle
        assert processes_mentioning(str(data_dir)), "expected embedded servers living in the data folder"
    finally:
        demo.send_signal(signal.SIGTERM)
        output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, output
    assert "Sign in with any of these" in output
    time.sleep(0.5)
    assert processes_mentioning(str(data_dir)) == []
    assert processes_mentioning(f"--port {port}") == []
