"""Opens a churn HTML report in real headless Chromium through ChromeDriver (WebDriver over
HTTP, Python's standard library only) and prints one JSON object: the browser console's
errors, every network request the page made, the sections and charts the page shows, whether
a Chinese character renders as a glyph (not as the missing-glyph box), and where the full-page
screenshot was saved.

usage: render_report.py REPORT.html SCREENSHOT.png
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CHROMIUM = os.environ.get("CHURN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHURN_CHROMEDRIVER", "/usr/bin/chromedriver")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read().decode())["value"]


# Run in the page: which sections and charts it shows, and whether '中' draws differently
# from a private-use code point (which every font lacks, so it draws the missing-glyph box).
INSPECT = r"""
const sections = Array.from(document.querySelectorAll('main > section')).map(s => ({
  id: s.id,
  title: (s.querySelector('h2') || {}).textContent || '',
  charts: Array.from(s.querySelectorAll('svg.chart')).map(c => ({
    name: c.getAttribute('data-chart'),
    width: c.getBoundingClientRect().width,
    height: c.getBoundingClientRect().height,
    shapes: c.querySelectorAll('rect, path, polyline, circle, line').length
  })),
  missing: Array.from(s.querySelectorAll('.missing')).map(m => m.textContent)
}));
function pixels(ch) {
  const c = document.createElement('canvas');
  c.width = 64; c.height = 64;
  const g = c.getContext('2d');
  g.fillStyle = '#fff'; g.fillRect(0, 0, 64, 64);
  g.fillStyle = '#000';
  g.font = '48px ' + getComputedStyle(document.body).fontFamily;
  g.fillText(ch, 4, 52);
  return Array.from(g.getImageData(0, 0, 64, 64).data).join(',');
}
return {
  title: document.title,
  lang: document.documentElement.lang,
  sections: sections,
  cjk_glyph: pixels('\u4e2d') !== pixels('\ue000'),
  page_height: document.documentElement.scrollHeight
};
"""


def main():
    report, screenshot = os.path.abspath(sys.argv[1]), sys.argv[2]
    port = free_port()
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                call(base, "GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        profile = tempfile.mkdtemp(prefix="churn-chromium-")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         f"--user-data-dir={profile}"],
            },
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        }}}
        session = call(base, "POST", "/session", caps)["sessionId"]
        s = f"/session/{session}"
        try:
            url = "file://" + report
            # The start page's own requests are not the report's: empty the log first.
            call(base, "POST", s + "/se/log", {"type": "performance"})
            call(base, "POST", s + "/url", {"url": url})
            info = call(base, "POST", s + "/execute/sync", {"script": INSPECT, "args": []})
            console = call(base, "POST", s + "/se/log", {"type": "browser"})
            performance = call(base, "POST", s + "/se/log", {"type": "performance"})
            requests = []
            for entry in performance:
                message = json.loads(entry["message"])["message"]
                # Only what the report's document asked for (the browser's own start page
                # loads its resources at the same time).
                if (message.get("method") == "Network.requestWillBeSent"
                        and message["params"].get("documentURL") == url):
                    requests.append(message["params"]["request"]["url"])
            shot = call(base, "POST", s + "/goog/cdp/execute", {
                "cmd": "Page.captureScreenshot",
                "params": {"format": "png", "captureBeyondViewport": True},
            })
            png = base64.b64decode(shot["data"])
            with open(screenshot, "wb") as f:
                f.write(png)
            # Width and height from the PNG header.
            width = int.from_bytes(png[16:20], "big")
            height = int.from_bytes(png[20:24], "big")
        finally:
            call(base, "DELETE", s)
            # The browser has quit with the session: its profile is left behind otherwise
            # (2 MB in the temporary folder per report rendered).
            shutil.rmtree(profile, ignore_errors=True)
        print(json.dumps({
            "url": url,
            "console": [{"level": e["level"], "message": e["message"]} for e in console],
            "requests": [r for r in requests if r != url],
            "screenshot": {"path": screenshot, "bytes": len(png), "width": width, "height": height},
            **info,
        }))
    finally:
        driver.terminate()
        driver.wait()


if __name__ == "__main__":
    main()
