#!/usr/bin/env python3
"""serve_browser.py - the page of `t2i serve` driven in headless Chromium, as a person uses it.

Usage: serve_browser.py PATH/TO/t2i [--screenshot FILE] [--keep]

Starts `t2i serve --port 0` (the port from its line "t2i serve: listening on http://HOST:PORT"),
starts chromedriver on a free port and drives Debian's chromium through the W3C WebDriver
HTTP API with urllib (python3's standard library only). Then, as a person would:
  1. types a caption, sets candidates 64 and top 32, presses Generate; records the progress
     bar while the job runs; waits for the grid: 32 images that loaded (naturalWidth > 0),
     numeric scores best first, and a progress bar that moved;
  2. presses Generate again (2048 candidates) and Cancel mid-way: the state says cancelled,
     the recent-jobs list says so too, and the server still answers;
  3. on the CLIP tab picks a PNG the test writes, types labels: probabilities appear and sum
     to 1; types a caption: a rerank score appears;
  4. clicks the best image: it opens full size (an overlay larger than the grid's image,
     captioned as rank 1 with its score), and Escape closes it;
  5. at phone width (375x800) the page does not scroll sideways, with results shown;
  6. generates for a caption with a word the shipped transformer never saw: the page names
     that word (and no other) in its warnings, and still shows the images.
--screenshot FILE saves the page with results at 1280x900 (samples/serve_page.png is one).
Exit 0 when every check passes, 1 on a failed check, 77 (CTest's SKIP_RETURN_CODE) when
chromium or chromedriver is not installed.
"""
import argparse
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib

SKIP = 77
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
# No internet on CI machines: these stop Chromium's own connections (refused anyway).
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900"]


def log(msg):
    print("serve_browser: " + msg, flush=True)


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


class WebDriver:
    """The few W3C WebDriver commands the test needs."""

    def __init__(self, base, args, user_dir):
        self.base = base
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": shutil.which("chromium") or "/usr/bin/chromium",
                                   "args": args + ["--user-data-dir=" + user_dir]}}}}
        self.sid = self.cmd("POST", "/session", caps)["sessionId"]

    def cmd(self, method, path, body=None):
        if method == "POST" and body is None:
            body = {}
        status, _, raw = http(method, self.base + path, body, timeout=120)
        value = json.loads(raw).get("value") if raw else None
        if status != 200:
            msg = value.get("message", "") if isinstance(value, dict) else raw[:300]
            raise Fail(f"webdriver {method} {path}: {status} {msg.splitlines()[0] if msg else ''}")
        return value

    def s(self, method, path, body=None):
        return self.cmd(method, f"/session/{self.sid}{path}", body)

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def find(self, css):
        return self.s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        self.s("POST", f"/element/{self.find(css)}/click")

    def type(self, css, text, clear=True):
        e = self.find(css)
        if clear:
            self.s("POST", f"/element/{e}/clear")
        self.s("POST", f"/element/{e}/value", {"text": text})

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def size(self, w, h):
        """Makes the viewport (not the window around it) w x h CSS pixels."""
        self.s("POST", "/window/rect", {"width": w, "height": h})
        iw, ih = self.js("return [window.innerWidth, window.innerHeight]")
        if (iw, ih) != (w, h):
            self.s("POST", "/window/rect", {"width": 2 * w - iw, "height": 2 * h - ih})

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.s("GET", "/screenshot")))

    def wait(self, what, script, timeout, *args):
        end = time.time() + timeout
        while time.time() < end:
            v = self.js(script, *args)
            if v:
                return v
            time.sleep(0.1)
        state = self.js("return document.getElementById('state').textContent + ' | error: ' + "
                        "document.getElementById('error').textContent")
        raise Fail(f"timed out after {timeout} s waiting for {what} (page: {state})")

    def quit(self):
        try:
            self.s("DELETE", "")
        except Exception:
            pass


def write_png(path, w, h, pixel):
    """A w x h RGB PNG of pixel(x, y) -> (r, g, b), with zlib only."""
    rows = b"".join(b"\0" + b"".join(bytes(pixel(x, y)) for x in range(w)) for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def start_server(t2i, tmp):
    out = open(os.path.join(tmp, "serve.err"), "w")
    proc = subprocess.Popen([t2i, "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=out,
                            text=True, start_new_session=True)
    found = {}

    def read():
        for line in proc.stdout:
            if line.startswith("t2i serve: listening on http://"):
                found["url"] = line.split("listening on ", 1)[1].strip()
                break
        for _ in proc.stdout:  # keep draining so that the server never blocks on stdout
            pass
    threading.Thread(target=read, daemon=True).start()
    end = time.time() + 180
    while "url" not in found:
        if proc.poll() is not None:
            raise Fail(f"t2i serve exited with {proc.returncode} before listening: "
                       + open(os.path.join(tmp, "serve.err")).read()[-500:])
        check(time.time() < end, "t2i serve printed no 'listening on' line within 180 s")
        time.sleep(0.05)
    return proc, found["url"]


def start_driver(tmp):
    port = free_port()
    log_file = open(os.path.join(tmp, "chromedriver.log"), "w")
    proc = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=log_file,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    end = time.time() + 30
    while time.time() < end:
        try:
            status, _, raw = http("GET", base + "/status", timeout=2)
            if status == 200 and json.loads(raw)["value"].get("ready"):
                return proc, base
        except (OSError, ValueError):
            pass
        check(proc.poll() is None, f"chromedriver exited with {proc.returncode}")
        time.sleep(0.1)
    raise Fail("chromedriver did not become ready within 30 s")


# What a result grid looks like to the test: how many, loaded, scores as numbers.
GRID = """
const cards = [...document.querySelectorAll('#results .result')];
return cards.map(c => {
  const img = c.querySelector('img'), s = c.querySelector('.score');
  return {loaded: !!img && img.complete && img.naturalWidth > 0, w: img ? img.naturalWidth : 0,
          text: s ? s.textContent : null, score: s ? Number(s.dataset.score) : null};
});"""

# Records the progress bar each time it changes, from before Generate is pressed.
RECORD = """
window.__seen = [];
const p = document.getElementById('progress');
window.__seen.push([p.value, p.max]);
new MutationObserver(() => window.__seen.push([p.value, p.max]))
  .observe(p, {attributes: true, attributeFilter: ['value', 'max']});"""


def generate_and_check(wd):
    wd.type("#prompt", "a red sneaker")
    wd.type("#candidates", "64")
    wd.type("#top", "32")
    wd.js(RECORD)
    wd.click("#generate")
    t0 = time.time()
    wd.wait("the job to finish", "return ['done','failed','cancelled']"
            ".includes(document.getElementById('state').dataset.state)", 300)
    state = wd.js("return document.getElementById('state').dataset.state")
    check(state == "done", f"the job ended '{state}': "
          + wd.js("return document.getElementById('error').textContent"))
    wd.wait("32 loaded images", "const c = document.querySelectorAll('#results .result img');"
            "return c.length === 32 && [...c].every(i => i.complete && i.naturalWidth > 0)", 60)
    grid = wd.js(GRID)
    log(f"generated in {time.time() - t0:.1f} s: {len(grid)} images, {grid[0]['w']} px wide")
    check(len(grid) == 32, f"{len(grid)} .result elements, want 32")
    check(all(g["loaded"] for g in grid), "an image of the grid did not load")
    scores = [g["score"] for g in grid]
    for g in grid:
        try:
            float(g["text"])
        except (TypeError, ValueError):
            raise Fail(f"a score shown is not a number: {g['text']!r}")
    check(all(isinstance(s, (int, float)) for s in scores), f"scores not numeric: {scores}")
    check(all(a >= b for a, b in zip(scores, scores[1:])), f"scores not best first: {scores}")
    check(len(set(scores)) > 1, f"all 32 scores are equal ({scores[0]}): not a ranking")
    seen = wd.js("return window.__seen")
    events = int(wd.js("return document.getElementById('progress').dataset.events"))
    between = [v for v, m in seen if 0 < v < m]
    final_v, final_m = seen[-1]
    log(f"progress bar: {len(seen)} changes, {events} progress events, "
        f"{len(between)} values strictly inside, ended {final_v}/{final_m}")
    check(final_m >= 64 and final_v == final_m, f"progress ended at {final_v}/{final_m}, want all of >= 64")
    check(events >= 1, "no progress event reached the page")
    check(between or any(v == 0 for v, _ in seen), f"the progress bar did not move: {seen}")
    check(wd.js("return document.getElementById('warnings').hidden"),
          "warnings shown for a caption the model knows: " + wd.js("return document.getElementById('warnings').textContent"))


def fullsize_check(wd):
    thumb, score = wd.js("const c = document.querySelector('#results .result');"
                         "return [c.querySelector('img').getBoundingClientRect().width,"
                         "        Number(c.querySelector('.score').dataset.score)]")
    wd.click("#results .result")
    wd.wait("the full-size view", "const i = document.getElementById('overlay-img');"
            "return !document.getElementById('overlay').hidden && i.complete && i.naturalWidth > 0", 15)
    w, nat, cap = wd.js("const i = document.getElementById('overlay-img');"
                        "return [i.getBoundingClientRect().width, i.naturalWidth,"
                        "        document.getElementById('overlay-cap').textContent]")
    log(f"full-size view: {w:.0f} px shown ({nat} px image; {thumb:.0f} px in the grid): {cap}")
    check(nat == 32, f"the full-size image is {nat} px wide, want the PNG's 32")
    check(w > thumb, f"the full-size view ({w} px) is not larger than the grid's image ({thumb} px)")
    check(cap.startswith("#1 of 32") and f"score {score:.4f}" in cap, f"the full-size caption says {cap!r}")
    wd.s("POST", "/actions", {"actions": [{"type": "key", "id": "kb", "actions": [
        {"type": "keyDown", "value": "\uE00C"}, {"type": "keyUp", "value": "\uE00C"}]}]})
    wd.wait("Escape to close the full-size view", "return document.getElementById('overlay').hidden", 5)


def warnings_check(wd):
    wd.click("#tab-generate")
    wd.type("#prompt", "a red giraffe sneaker")
    wd.type("#candidates", "8")
    wd.type("#top", "4")
    wd.click("#generate")
    wd.wait("the job with an unknown word to finish", "return ['done','failed','cancelled']"
            ".includes(document.getElementById('state').dataset.state)", 300)
    state = wd.js("return document.getElementById('state').dataset.state")
    check(state == "done", f"the job with an unknown word ended '{state}'")
    wd.wait("4 images", "return document.querySelectorAll('#results .result img').length === 4", 60)
    hidden, text = wd.js("const w = document.getElementById('warnings'); return [w.hidden, w.textContent]")
    log(f"warnings: {text}")
    check(not hidden, "the page shows no warning for 'giraffe', a word the model never saw")
    check("never saw the word giraffe" in text and "sneaker" not in text.split("never saw")[1],
          f"the warning does not name exactly 'giraffe': {text!r}")


def cancel_and_check(wd, url):
    wd.type("#candidates", "2048")
    wd.js("document.getElementById('progress').dataset.events = '0'")
    wd.click("#generate")
    # Cancel a running job, not a queued one: wait for its first progress event, then (up to
    # a minute, the machine may be busy) for its first batch, so that it stops mid-way.
    wd.wait("the second job to start running",
            "return Number(document.getElementById('progress').dataset.events) > 0", 180)
    try:
        wd.wait("the first batch", "return document.getElementById('progress').value > 0", 60)
    except Fail:
        log("no batch done within 60 s: cancelling the running job at 0")
    state = wd.js("return document.getElementById('state').dataset.state")
    check(state == "running", f"the 2048-candidate job was '{state}' before Cancel, want running")
    done = wd.js("const p = document.getElementById('progress'); return [p.value, p.max]")
    check(done[0] < done[1], f"the 2048-candidate job had finished before Cancel ({done})")
    wd.click("#cancel")
    wd.wait("the state to say cancelled",
            "return document.getElementById('state').dataset.state === 'cancelled'", 30)
    check("cancelled" in wd.js("return document.getElementById('state').textContent"),
          "the state line does not say cancelled")
    log(f"cancelled at {done[0]}/{done[1]} candidates")
    wd.wait("the recent-jobs list to show the cancelled job",
            "return [...document.querySelectorAll('#jobs .badge')].some(b => b.textContent === 'cancelled')", 15)
    jid = wd.js("return [...document.querySelectorAll('#jobs button')]"
                ".find(b => b.querySelector('.badge').textContent === 'cancelled').dataset.id")
    status, _, raw = http("GET", f"{url}/v1/jobs/{jid}")
    check(status == 200, f"GET /v1/jobs/{jid} after the cancel: {status}")
    job = json.loads(raw)
    check(job["state"] == "cancelled", f"the server says {jid} is {job['state']}, want cancelled")
    check(job["progress"]["done"] < job["progress"]["total"],
          f"{jid} ran to the end ({job['progress']}) although cancelled")


def clip_and_check(wd, tmp):
    wd.click("#tab-clip")
    png = os.path.join(tmp, "red_square.png")
    write_png(png, 32, 32, lambda x, y: (220, 30, 30) if 6 <= x < 26 and 6 <= y < 26 else (0, 0, 0))
    wd.s("POST", f"/element/{wd.find('#clip-files')}/value", {"text": png})
    wd.wait("the picked image", "return document.querySelectorAll('#clip-images img').length === 1", 10)
    labels = ["a red sneaker", "a blue dress", "a green bag"]
    wd.type("#labels", "\n".join(labels))
    typed = wd.js("return document.getElementById('labels').value.split('\\n')")
    check(typed == labels, f"labels typed as {typed}")
    wd.click("#classify")
    wd.wait("probabilities", "return document.querySelectorAll('#classify-results .prob').length > 0", 60)
    probs = wd.js("return [...document.querySelectorAll('#classify-results .prob')]"
                  ".map(p => [p.querySelector('.l').textContent, Number(p.dataset.p)])")
    log("zero-shot: " + ", ".join(f"{l} {p:.3f}" for l, p in probs))
    check(len(probs) == 3 and {l for l, _ in probs} == set(labels), f"probabilities for {probs}")
    total = sum(p for _, p in probs)
    check(abs(total - 1) < 1e-3, f"probabilities sum to {total}, want 1")
    check(all(0 <= p <= 1 for _, p in probs), f"a probability outside [0, 1]: {probs}")
    ps = [p for _, p in probs]
    check(ps == sorted(ps, reverse=True), f"probabilities not highest first: {ps}")
    wd.type("#rerank-prompt", "a red sneaker")
    wd.click("#rerank")
    wd.wait("a rerank score", "return document.querySelectorAll('#rerank-results .rerank-score').length === 1", 60)
    score = wd.js("return Number(document.querySelector('#rerank-results .rerank-score').dataset.score)")
    check(isinstance(score, (int, float)), f"rerank score {score!r} is not a number")
    log(f"rerank score {score:.4f}")
    err = wd.js("return document.getElementById('error').hidden")
    check(err, "the CLIP tab shows an error: " + wd.js("return document.getElementById('error').textContent"))


def phone_check(wd):
    wd.size(375, 800)
    wd.click("#tab-generate")
    # reopen the finished job from the recent list so that the grid is on the page
    wd.js("const b = [...document.querySelectorAll('#jobs button')].find(b => b.querySelector('.badge.done'));"
          "b.click();")
    wd.wait("the reopened grid", "return document.querySelectorAll('#results .result').length === 32", 30)
    for tab in ("#tab-generate", "#tab-clip"):
        wd.click(tab)
        w, sw = wd.js("return [window.innerWidth, document.documentElement.scrollWidth]")
        log(f"phone width {tab[5:]}: viewport {w} px, scrollWidth {sw} px")
        check(w <= 375, f"the window did not shrink to 375 px (viewport {w})")
        check(sw <= 375, f"{tab[5:]} tab scrolls sideways at 375 px: scrollWidth {sw}")


def run(args, tmp):
    server, url = start_server(args.t2i, tmp)
    driver = wd = None
    try:
        log(f"server at {url}")
        status, ctype, page = http("GET", url + "/")
        check(status == 200 and ctype.startswith("text/html"), f"GET /: {status} {ctype}")
        check(b'id="prompt"' in page and b'id="tab-clip"' in page,
              "GET / is not the page of serve/page/index.html")
        driver, base = start_driver(tmp)
        wd = WebDriver(base, CHROME_FLAGS, os.path.join(tmp, "profile"))
        wd.size(1280, 900)
        wd.go(url + "/")
        wd.wait("the page", "return document.readyState === 'complete' && !!document.getElementById('generate')", 30)
        generate_and_check(wd)
        if args.screenshot:
            wd.js("window.scrollTo(0, 0)")
            wd.screenshot(args.screenshot)
            log(f"screenshot {args.screenshot}")
        fullsize_check(wd)
        cancel_and_check(wd, url)
        clip_and_check(wd, tmp)
        phone_check(wd)
        warnings_check(wd)
        check(server.poll() is None, f"t2i serve exited with {server.returncode} during the test")
    finally:
        if wd:
            wd.quit()
        for p in (driver, server):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("t2i", help="the t2i binary")
    ap.add_argument("--screenshot", help="save the page with results (1280x900 PNG) here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = ap.parse_args()
    missing = [p for p in ("chromium", "chromedriver") if not shutil.which(p)]
    if missing:
        print(f"serve_browser: SKIP: {' and '.join(missing)} not installed "
              "(Debian packages chromium, chromium-driver; cli/setup.sh installs them)")
        return SKIP
    tmp = tempfile.mkdtemp(prefix="t2i-serve_browser-")
    try:
        run(args, tmp)
    except Fail as e:
        print(f"FAIL: {e}", file=sys.stderr)
        for name in ("serve.err", "chromedriver.log"):
            p = os.path.join(tmp, name)
            if os.path.exists(p):
                tail = open(p, errors="replace").read()[-1500:]
                if tail.strip():
                    print(f"--- {name} (end) ---\n{tail}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    log("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
