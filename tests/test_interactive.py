"""charrnn sample --interactive through a real pseudo-terminal: prime, stream,
Ctrl-C stops a continuation and not the session, Ctrl-D ends it; and from a pipe."""
import os
import pty
import select
import signal
import subprocess
import sys
import time


def read_until(fd, needle, timeout=60):
    buf, end = b"", time.monotonic() + timeout
    while needle not in buf:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {needle!r}; got {buf[-500:]!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def _controlling_terminal():
    """In the child: a session of its own whose controlling terminal is the pty on
    stdin, so that a typed Ctrl-C reaches it as SIGINT, as in a shell."""
    import fcntl
    import termios
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def read_for(fd, seconds):
    buf, end = b"", time.monotonic() + seconds
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], max(0, end - time.monotonic()))
        if r:
            buf += os.read(fd, 65536)
    return buf


def test_session_in_a_real_terminal(trained_run, tmp_path):
    master, slave = pty.openpty()
    import charrnn.kernels      # the child must share this session's kernel cache
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), TERM="dumb",
               NUMBA_CACHE_DIR=os.path.dirname(charrnn.kernels.cache_folder()))
    p = subprocess.Popen([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run), "-i",
                          "--length", "0", "--seed", "3"], stdin=slave, stdout=slave, stderr=slave,
                         env=env, preexec_fn=_controlling_terminal, close_fds=True)
    os.close(slave)
    try:
        read_until(master, b"> ")
        os.write(master, b"ROMEO:\n")
        echo = read_until(master, b"ROMEO:\r\n")
        streamed = b""                       # an endless continuation is streaming
        for _ in range(40):
            streamed += read_for(master, 0.5)
            if len(streamed) > 50:
                break
        assert len(streamed) > 50, (echo, streamed)
        # Ctrl-C, typed: the terminal sends SIGINT to the foreground process group
        os.write(master, b"\x03")
        read_until(master, b"> ", timeout=20)
        assert p.poll() is None             # the session goes on
        os.write(master, b"KING:\n")
        read_until(master, b"KING:")
        os.write(master, b"\x03")
        read_until(master, b"> ", timeout=20)
        os.write(master, b"\x04")           # Ctrl-D at the prompt ends it
        assert p.wait(timeout=20) == 0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        os.close(master)
    assert (tmp_path / "cache" / "charrnn" / "history").exists()   # readline's history


def test_lines_from_a_pipe_give_one_continuation_each(trained_run):
    def interactive(lines):
        return subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run), "-i",
                               "--length", "30", "--seed", "1"], input=lines, capture_output=True,
                              timeout=120)
    one = interactive("ROMEO:\n\u2603\n".encode())
    assert one.returncode == 0, one.stderr.decode()
    assert "line skipped" in one.stderr.decode()       # the snowman is not in the vocabulary
    # the same seed and line: the same continuation as plain sampling with --prime
    plain = subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run),
                            "--prime", "ROMEO:", "--length", "30", "--seed", "1"], capture_output=True)
    # its continuation and a newline, then the skipped line's empty record (a newline)
    assert "ROMEO:" + one.stdout.decode() == plain.stdout.decode() + "\n\n"
    two = interactive(b"ROMEO:\nJULIET:\n")
    assert two.stdout.decode().startswith(one.stdout.decode()[:-1])
    assert len(two.stdout.decode()) == 2 * 31                  # 30 characters and a newline each


def test_carry_reads_one_running_text(trained_run, monkeypatch):
    import io

    from charrnn import checkpoint as C
    from charrnn.cli.interactive import session
    from charrnn.sampling import Many
    ck = C.load(trained_run / "best.npz")
    for carry in (False, True):
        gen = Many(ck.model_cfg, ck.params, ck.vocab, 1, seed=2)
        calls = []
        for name in ("reset", "prime"):
            orig = getattr(gen, name)
            monkeypatch.setattr(gen, name, lambda *a, orig=orig, name=name: (calls.append((name, *a)), orig(*a))[1])
        monkeypatch.setattr(sys, "stdin", io.StringIO("ROMEO:\nJULIET:\n"))
        out = io.StringIO()
        session(gen, ck.vocab, length=20, carry=carry, out=out, err=io.StringIO(), temp=1.0)
        first = out.getvalue().split("\n")[0] if "\n" not in out.getvalue()[:20] else None
        primes = [c[1] for c in calls if c[0] == "prime"]
        if carry:   # the second line is read after the first continuation's last character
            assert calls.count(("reset",)) == 1 and primes[0] == "ROMEO:"
            assert primes[1].endswith("\nJULIET:") and len(primes[1]) == len("\nJULIET:") + 1
            if first:
                assert primes[1][0] == first[-1]
        else:
            assert calls.count(("reset",)) == 2 and primes == ["ROMEO:", "JULIET:"]


def test_interactive_refuses_prime_and_num(trained_run):
    r = subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run), "-i",
                        "--prime", "x"], capture_output=True, input=b"")
    assert r.returncode == 2 and "--prime" in r.stderr.decode()
    r = subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run), "--carry"],
                       capture_output=True)
    assert r.returncode == 2 and "--carry" in r.stderr.decode()
