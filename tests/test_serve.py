"""charrnn serve (issue 22): the real server in a subprocess on a free loopback port,
talked to with the official openai client, raw HTTP and headless chromium."""
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import run_cli, train_small

openai = pytest.importorskip("openai", reason="the test extra: pip install -e '.[test]'")
KEY = "test-key-1234"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


class Server:
    """`charrnn serve RUN ARGS...` on port 0: waits for its start-up line (which it prints
    once it answers), keeps reading its stderr so that the pipe never fills."""

    def __init__(self, run, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "charrnn", "serve", str(run), "--port", "0", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self.lines, self.stderr = queue.Queue(), []
        threading.Thread(target=self._read, daemon=True).start()
        try:
            while True:
                line = self.lines.get(timeout=120)
                assert line is not None, f"the server ended: {''.join(self.stderr)}"
                m = re.search(r"at http://127\.0\.0\.1:(\d+)/ ", line)
                if m:
                    self.port = int(m.group(1))
                    break
        except BaseException:
            self.kill()
            raise
        self.url = f"http://127.0.0.1:{self.port}/"

    def kill(self):
        """Whatever happened in a test, no server is left running."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _read(self):
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def request(self, method, path, body=None, headers=(), key=KEY):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"Content-Type": "application/json", **dict(headers)}
        if key:
            h["Authorization"] = f"Bearer {key}"
        if isinstance(body, dict):
            body = json.dumps(body)
        conn.request(method, path, body, h)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, json.loads(data) if data else None

    def health(self):
        return self.request("GET", "/health")[1]

    def stop(self, sig):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def run(tmp_path_factory, bundled_text):
    """A tiny LSTM (1x16, a few steps): speed and quality do not matter here."""
    _, out = train_small(tmp_path_factory.mktemp("serve"), bundled_text[:20_000], steps=5,
                         hidden=16, layers=1)
    return out


@pytest.fixture(scope="module")
def server(run):
    s = Server(run, "--api-key", KEY, "--max-tokens", "10000000", "--max-n", "4",
               "--max-prompt", "100", "--max-body", "4096", "--max-concurrent", "4")
    try:
        yield s
        # SIGTERM while a stream runs: the server closes cleanly, exit 143 (Ctrl-C: 130,
        # the same handler)
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        conn.request("POST", "/v1/completions",
                     json.dumps({"max_tokens": 10_000_000, "stream": True}),
                     {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        assert conn.getresponse().readline().startswith(b"data: ")
        assert s.stop(signal.SIGTERM) == 143
        assert s.stderr[-1] == "stopped\n" and "Traceback" not in "".join(s.stderr)
    finally:
        s.kill()


@pytest.fixture(scope="module")
def model(run):
    import charrnn
    return charrnn.load(run)


def test_openai_client_same_text_as_sample(server, run, model):
    client = openai.OpenAI(base_url=server.url + "v1", api_key=KEY, max_retries=0, timeout=60)
    sampled = subprocess.Popen([sys.executable, "-m", "charrnn", "sample", "-c", str(run),
                                "--prime", "ROMEO:", "--length", "40", "--temp", "0.8",
                                "--seed", "7", "--num", "2"], stdout=subprocess.PIPE, text=True)
    assert [m.id for m in client.models.list()] == ["run"]
    r = client.completions.create(model="run", prompt="ROMEO:", max_tokens=40, temperature=0.8,
                                  seed=7, n=2)
    want = model.generate("ROMEO:", length=40, temp=0.8, seed=7, n=2)
    got = sorted(r.choices, key=lambda c: c.index)
    assert ["ROMEO:" + c.text for c in got] == want
    assert [c.finish_reason for c in got] == ["length", "length"]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (6, 80, 86)
    assert sampled.communicate(timeout=120)[0] == "\n\n".join(want)     # charrnn sample --seed

    # streamed in pieces as it is made: the same text
    chunks = list(client.completions.create(model="run", prompt="ROMEO:", max_tokens=300,
                                            temperature=0.8, seed=7, stream=True))
    pieces = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert len(pieces) > 1
    assert "ROMEO:" + "".join(pieces) == model.generate("ROMEO:", length=300, temp=0.8, seed=7)
    assert chunks[-1].choices[0].finish_reason == "length"

    # stop: one string (the sampler's own), several (cut by the server), streamed or not
    one = model.generate("", length=300, temp=1.0, seed=3, stop="e")
    r = client.completions.create(model="run", prompt="", max_tokens=300, seed=3, stop="e")
    assert r.choices[0].text == one and r.choices[0].finish_reason == "stop"
    whole = model.generate("", length=300, temp=1.0, seed=3)
    cut = min(at for at in (whole.find("e"), whole.find("o"), len(whole)) if at >= 0)
    for stream in (False, True):
        r = client.completions.create(model="run", prompt="", max_tokens=300, seed=3,
                                      stop=["o", "e"], stream=stream)
        text = "".join(c.choices[0].text for c in r if c.choices) if stream else r.choices[0].text
        assert text == whole[:cut]

    # a prompt list: one choice per prompt and n, each as its own `sample --prime P`
    r = client.completions.create(model="run", prompt=["A", "B"], max_tokens=20, seed=5, n=2,
                                  echo=True)
    assert [c.text for c in sorted(r.choices, key=lambda c: c.index)] == \
        model.generate("A", length=20, temp=1.0, seed=5, n=2) + \
        model.generate("B", length=20, temp=1.0, seed=5, n=2)

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "v1", api_key="wrong", max_retries=0).models.list()


@pytest.mark.parametrize("body, status, param", [
    (b"{", 400, None),                              # malformed JSON
    (b'"a string"', 400, None),                     # not an object
    ({"max_tokens": "5"}, 400, "max_tokens"),       # wrong types
    ({"temperature": "hot"}, 400, "temperature"),
    ({"stream": 1}, 400, "stream"),
    ({"stop": 3}, 400, "stop"),
    ({"prompt": [1, 2]}, 400, "prompt"),
    ({"seed": 1.5}, 400, "seed"),
    ({"max_tokens": 10_000_001}, 400, "max_tokens"),    # over the bounds
    ({"n": 5}, 400, "n"),
    ({"prompt": ["A", "B", "C"], "n": 2}, 400, "n"),
    ({"prompt": "x" * 101}, 400, "prompt"),
    ({"prompt": "€"}, 400, "prompt"),              # not in the vocabulary
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"top_p": 0}, 400, "top_p"),
    (b"[" + b" " * 5000 + b"]", 413, None),         # the body
])
def test_bad_requests_named(server, body, status, param):
    got, answer = server.request("POST", "/v1/completions", body)
    assert got == status
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert answer["error"]["param"] == param and answer["error"]["message"]


def test_auth_host_and_unknown_fields(server):
    for key in (None, "wrong", KEY + "x"):
        status, answer = server.request("POST", "/v1/completions", {"max_tokens": 1}, key=key)
        assert status == 401 and answer["error"]["code"] == "invalid_api_key"
    status, answer = server.request("GET", "/health", headers={"Host": "evil.example:80"})
    assert status == 400 and "loopback" in answer["error"]["message"]
    status, answer = server.request("POST", "/v1/completions",
                                    {"prompt": "A", "max_tokens": 3, "frobnicate": {"x": [1]},
                                     "logit_bias": {}, "user": "me"})
    assert status == 200 and len(answer["choices"][0]["text"]) == 3
    assert server.request("GET", "/nope")[0] == 404


def _hang_up_after_first_chunk(port, body):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = json.dumps(body).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
              + KEY.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(data) + data)
    if body.get("stream"):
        buf = b""
        while b"data: " not in buf:
            buf += s.recv(1 << 16)
    s.close()


def _wait(condition, what, timeout=60):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_hang_up_stops_the_generation(server):
    """10 million characters asked for: only a cancelled generation ends in time."""
    for stream in (True, False):
        before = server.health()
        _hang_up_after_first_chunk(server.port, {"prompt": "A", "max_tokens": 10_000_000,
                                                 "stream": stream})
        _wait(lambda: server.health()["cancelled"] == before["cancelled"] + 1, "the cancel")
        after = server.health()
        assert after["active"] == 0 and after["finished"] == before["finished"]


def test_busy_server_says_429(run, server):
    # the module server admits 4 generations: a fifth while 4 run gets 429
    conns = []
    for _ in range(4):
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        c.request("POST", "/v1/completions", json.dumps({"max_tokens": 10_000_000, "stream": True}),
                  {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        r = c.getresponse()
        r.readline()
        conns.append((c, r))
    status, answer = server.request("POST", "/v1/completions", {"max_tokens": 1})
    assert status == 429 and answer["error"]["type"] == "server_busy"
    for c, r in conns:         # hang up
        r.close()
        c.close()
    _wait(lambda: server.health()["active"] == 0, "the generations to stop")


def test_without_the_extra_says_what_to_install(run, monkeypatch, capsys):
    from charrnn.cli import main
    monkeypatch.setitem(sys.modules, "uvicorn", None)       # import uvicorn: ImportError
    with pytest.raises(SystemExit) as e:
        main(["serve", str(run)])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1
    assert 'pip install "charrnn[serve]"' in err


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=".ci/run installs Debian's chromium")
def test_page_in_headless_chromium(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    try:
        driver.get(server.url)
        assert driver.title == "run - charrnn"
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.find_element(By.ID, "prompt").send_keys("ROMEO:")
        length = driver.find_element(By.ID, "length")
        length.clear()
        length.send_keys("200")
        driver.find_element(By.ID, "go").click()
        text = lambda d: d.find_element(By.ID, "text").get_attribute("textContent")  # noqa: E731
        WebDriverWait(driver, 60).until(lambda d: len(text(d)) == 200)
        assert driver.find_element(By.ID, "prime").get_attribute("textContent") == "ROMEO:"
        assert driver.find_element(By.ID, "status").get_attribute("textContent") == ""
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []                         # nothing refused by the page's CSP
    finally:
        driver.quit()
