"""Issue 23, third reliability pass, items 1, 2, 3, 6 and 7: byte-order marks in every
place text comes in; what stdout promises, exactly (to a pipe, to a terminal, for
degenerate input); inputs that never end (/dev/zero, a FIFO with an endless writer,
an endless stdin); errors that name their file; train's options given to a sweep.
Subprocesses only where the exit status, a pipe, a FIFO or a terminal is the point."""
import io
import json
import os
import pty
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint as C
from charrnn.data import MAX_STREAM_BYTES, CorpusError, read_corpus
from conftest import run_cli

BOM8 = b"\xef\xbb\xbf"
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40


def invoke(*args, input=None):
    """The command line's entry point (charrnn.cli.main, which turns every error into one
    line and an exit status) in this process, stdin, stdout and stderr Click's test ones."""
    from types import SimpleNamespace

    from charrnn.cli import main
    with CliRunner().isolation(input=input) as (out, err, _):
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in args])
        return SimpleNamespace(exit_code=e.value.code, stdout=out.getvalue().decode(),
                               stderr=err.getvalue().decode())


def strict_json(text):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def refuse(name):
        raise AssertionError(f"{name} in JSON output")
    return json.loads(text, parse_constant=refuse)


# -- 1. byte-order marks --------------------------------------------------------------

@pytest.mark.parametrize("encoding, bom, body", [
    ("utf-8", BOM8, "utf-8"),
    ("utf-8-sig", BOM8, "utf-8"),
    ("utf-16", b"\xff\xfe", "utf-16-le"),                  # utf-16 with its mark, either order
    ("utf-16", b"\xfe\xff", "utf-16-be"),
    ("utf-16-le", b"\xff\xfe", "utf-16-le"),                # named order: the mark is U+FEFF
    ("utf-32", b"\xff\xfe\x00\x00", "utf-32-le"),
], ids=["utf-8", "utf-8-sig", "utf-16 LE", "utf-16 BE", "utf-16-le", "utf-32"])
def test_a_byte_order_mark_is_never_a_character_of_a_corpus(tmp_path, encoding, bom, body):
    plain = read_corpus([str(_write(tmp_path / "plain.txt", TEXT.encode()))])
    f = _write(tmp_path / "bom.txt", bom + TEXT.encode(body))
    got = read_corpus([str(f)], encoding)
    assert "\ufeff" not in got.vocab.chars.tolist()
    assert np.array_equal(got.ids, plain.ids) and np.array_equal(got.vocab.codepoints, plain.vocab.codepoints)
    cached = read_corpus([str(f)], encoding, cache=True)    # stored, then mapped: no mark either
    again = read_corpus([str(f)], encoding, cache=True)
    assert cached.cache == "stored" and again.cache == "hit" and np.array_equal(again.ids, plain.ids)


def test_each_file_and_stdin_lose_their_mark_but_not_a_zero_width_space_inside(tmp_path, monkeypatch):
    a = _write(tmp_path / "a.txt", BOM8 + b"ab\r\n")
    b = _write(tmp_path / "b.txt", BOM8 + "c\ufeffd\n".encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BOM8 + b"ef\n")))
    got = read_corpus([str(a), str(b), "-"])
    assert got.vocab.decode(got.ids) == "ab\nc\ufeffd\nef\n"    # U+FEFF inside a text stays


def test_prime_text_eval_complete_and_interactive_lines_drop_the_mark(trained_run, tmp_path):
    seed = ["--seed", "3", "-n", "40", "-c", trained_run]
    assert invoke("sample", *seed, "--prime", "\ufeffFirst").stdout == \
        invoke("sample", *seed, "--prime", "First").stdout
    f, g = _write(tmp_path / "f.txt", TEXT.encode()), _write(tmp_path / "g.txt", BOM8 + TEXT.encode())
    r = [strict_json(invoke("eval", "-c", trained_run, p, "--text", t, "--json").stdout)
         for p, t in ((f, "Citizen"), (g, "\ufeffCitizen"))]
    for k in ("chars", "unknown", "loss"):
        assert r[0]["files"][0][k] == r[1]["files"][0][k] and r[0]["texts"][0][k] == r[1]["texts"][0][k]
    assert r[1]["texts"][0]["text"] == "Citizen" and r[1]["files"][0]["unknown"] == 0
    assert invoke("complete", "\ufeffFirst Cit", "-c", trained_run, "--json").stdout == \
        invoke("complete", "First Cit", "-c", trained_run, "--json").stdout
    # sample -i from a pipe: a marked first line with a CRLF end reads as the plain line
    args = [sys.executable, "-m", "charrnn", "sample", "-i", *map(str, seed)]
    marked = subprocess.run(args, input=BOM8 + b"First\r\nCitizen\r\n", capture_output=True, timeout=120)
    plain = subprocess.run(args, input=b"First\nCitizen\n", capture_output=True, timeout=120)
    assert marked.returncode == plain.returncode == 0 and marked.stdout == plain.stdout
    assert b"skipped" not in marked.stderr


# -- 2. what stdout promises ----------------------------------------------------------

def test_sample_writes_exactly_its_characters_to_a_pipe(trained_run):
    one = invoke("sample", "-c", trained_run, "--seed", "5", "--length", "10")
    assert one.exit_code == 0 and len(one.stdout) == 10
    primed = invoke("sample", "-c", trained_run, "--seed", "5", "--length", "10", "--prime", "KING")
    assert len(primed.stdout) == 14 and primed.stdout.startswith("KING")
    three = invoke("sample", "-c", trained_run, "--seed", "5", "--length", "10", "--num", "3")
    out = three.stdout
    assert len(out) == 3 * 10 + 2 * 2 and out.startswith(one.stdout)      # joined by "\n\n"
    assert out[10:12] == "\n\n" and out[22:24] == "\n\n" and not out.endswith("\n\n")
    stopped = invoke("sample", "-c", trained_run, "--seed", "5", "--length", "300", "--stop", "e")
    full = invoke("sample", "-c", trained_run, "--seed", "5", "--length", "300").stdout
    assert stopped.stdout == full[:full.index("e")]                      # nothing added


def test_sample_on_a_terminal_ends_with_one_newline(trained_run):
    """A real pseudo-terminal: the final newline is added there, and only there."""
    pipe = invoke("sample", "-c", trained_run, "--seed", "9", "--length", "25", "--temp", "0").stdout
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run),
                              "--seed", "9", "--length", "25", "--temp", "0"],
                             stdout=slave, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        os.close(slave)
        got = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:         # EIO: the child closed the terminal
                break
            if not chunk:
                break
            got += chunk
        assert p.wait(timeout=120) == 0
    finally:
        os.close(master)
    text = got.decode().replace("\r\n", "\n")       # the terminal's own line ends
    assert text == pipe + ("" if pipe.endswith("\n") else "\n")


def test_eval_json_and_tsv_stay_valid_for_degenerate_input(trained_run, tmp_path):
    files = [_write(tmp_path / "empty.txt", b""), _write(tmp_path / "one.txt", b"a"),
             _write(tmp_path / "unknown.txt", "\u20ac\u2603\u20ac".encode())]
    r = invoke("eval", "-c", trained_run, *files, "--text", "", "--text", "\u2603", "--json")
    assert r.exit_code == 0
    got = strict_json(r.stdout)
    for row in got["files"] + [got["total"]]:
        assert row["chars"] == 0 and row["loss"] is row["bpc"] is row["perplexity"] is None
    assert got["files"][2]["unknown"] == 3
    for t in got["texts"]:
        assert t["chars"] == 0 and t["loss"] is None and t["logprob"] == 0.0
    tsv = invoke("eval", "-c", trained_run, *files, "--text", "").stdout.splitlines()
    assert tsv[0].split("\t") == ["file", "chars", "skipped", "nats/char", "bits/char", "perplexity"]
    assert tsv[1].split("\t") == [str(files[0]), "0", "0", "", "", ""]
    assert tsv[3].split("\t")[1:] == ["0", "3", "", "", ""]
    assert tsv[4].split("\t") == ["total", "0", "3", "", "", ""]
    assert tsv[5].split("\t") == ["rank", "text", "log P (nats)", "nats/char", "chars"]
    assert tsv[6].split("\t") == ["1", "", "0.000", "", "0"]


def test_eval_tsv_numbers_are_plain(trained_run, tmp_path):
    f = _write(tmp_path / "long.txt", TEXT.encode())
    row = invoke("eval", "-c", trained_run, f).stdout.splitlines()[1].split("\t")
    assert row[1] == str(len(TEXT) - 1) and float(row[3]) > 0         # 2479, not "2,479"


def test_eval_perplexity_beyond_float_range_is_null(trained_run, tmp_path):
    """Weights of 1e30 in the output layer: a finite loss far above 709 nats/char."""
    ck = C.load(trained_run / "best.npz")
    with np.load(trained_run / "best.npz", allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    wy = members["param.Wy"].copy()
    wy[:] = 0
    wy[:, 0] = 1e4          # every state says "character 0", with logits far apart
    members["param.Wy"] = wy
    path = tmp_path / "sure.npz"
    np.savez(path, **members)
    text = "".join(ck.vocab.chars[1:3].tolist()) * 5
    r = invoke("eval", "-c", path, "--text", text, "--json")
    if r.exit_code != 0:        # a checkpoint check may refuse such weights: nothing to test
        pytest.skip(r.stderr)
    t = strict_json(r.stdout)["texts"][0]
    assert t["loss"] > 709
    f = _write(tmp_path / "t.txt", text.encode())
    row = strict_json(invoke("eval", "-c", path, f, "--json").stdout)["files"][0]
    assert row["loss"] > 709 and row["perplexity"] is None


# -- 3. inputs that never end ---------------------------------------------------------

def test_dev_zero_is_refused_at_once_by_train_and_eval(trained_run, tmp_path):
    r = run_cli("train", "/dev/zero", "--out", tmp_path / "z", "--steps", "1", timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.startswith("error: /dev/zero: ") and "NUL" in err
    assert err.count("\n") == 1 and not (tmp_path / "z").exists()
    r = run_cli("eval", "-c", trained_run, "/dev/zero", timeout=60)
    assert r.returncode == 1 and r.stderr.decode().startswith("error: /dev/zero: ") and r.stdout == b""


def test_a_fifo_with_an_endless_writer_stops_at_the_stream_limit(trained_run, tmp_path):
    fifo = tmp_path / "fifo"
    for reader in ("library", "eval"):
        os.mkfifo(fifo)
        writer = subprocess.Popen(["sh", "-c", f"exec yes 'to be or not to be' > {fifo}"])
        try:
            if reader == "library":
                with pytest.raises(CorpusError, match=f"^{fifo}: more than 4,194,304 bytes"):
                    read_corpus([str(fifo)], max_stream_bytes=4 << 20)
            else:
                r = run_cli("eval", "-c", trained_run, fifo, "--max-stream-bytes", "4M", timeout=60)
                err = r.stderr.decode()
                assert r.returncode == 1 and err.startswith(f"error: {fifo}: more than 4,194,304 bytes")
                assert err.count("\n") == 1
        finally:
            writer.kill()
            writer.wait()
            os.unlink(fifo)


def test_an_endless_stdin_stops_at_the_stream_limit(trained_run, tmp_path):
    for cmd in (["train", "-", "--out", tmp_path / "s", "--max-stream-bytes", "3M"],
                ["eval", "-c", trained_run, "-", "--max-stream-bytes", "3M"]):
        yes = subprocess.Popen(["yes", "to be or not to be"], stdout=subprocess.PIPE)
        try:
            r = subprocess.run([sys.executable, "-m", "charrnn", *map(str, cmd)], stdin=yes.stdout,
                               capture_output=True, timeout=60)
        finally:
            yes.kill()
            yes.wait()
        err = r.stderr.decode()
        assert r.returncode == 1 and err.startswith("error: <stdin>: more than 3,145,728 bytes"), err
        assert err.count("\n") == 1
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").glob("*.npz"))


def test_the_stream_limit_is_exact_and_a_piped_corpus_below_it_reads(tmp_path):
    data = (TEXT * 50).encode()
    for limit, ok in ((len(data), True), (len(data) - 1, False)):
        fifo = tmp_path / f"fifo{limit}"
        os.mkfifo(fifo)
        writer = subprocess.Popen(["sh", "-c", f"cat {_write(tmp_path / 'src.txt', data)} > {fifo}"])
        try:
            if ok:
                got = read_corpus([str(fifo)], max_stream_bytes=limit)
                assert got.vocab.decode(got.ids) == TEXT * 50
            else:
                with pytest.raises(CorpusError, match="more than"):
                    read_corpus([str(fifo)], max_stream_bytes=limit)
        finally:
            writer.kill()
            writer.wait()
    assert MAX_STREAM_BYTES == 1 << 30       # the documented default: a few hundred MB pipes fine


def test_sample_interactive_refuses_a_line_without_end(trained_run):
    with open("/dev/zero", "rb") as zero:
        r = subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run), "-i",
                            "-n", "5", "--seed", "1"], stdin=zero, capture_output=True, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.startswith("error: <stdin>: a line longer than") and err.count("\n") == 1


def test_bad_bytes_in_an_interactive_line_skip_it_with_an_empty_record(trained_run):
    r = subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run), "-i", "-n", "5",
                        "--seed", "1", "--stop", "\n"], input=b"Fir\xffst\nFirst\n",
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and "not valid utf-8" in r.stderr.decode()
    assert r.stdout.decode().startswith("\n") and r.stdout.decode().count("\n") == 2


# -- 6. errors name their file --------------------------------------------------------

def test_a_corpus_that_fails_to_read_is_named(tmp_path):
    with pytest.raises(CorpusError, match=r"^/proc/self/mem: cannot read \("):
        read_corpus(["/proc/self/mem"])     # a regular file whose read fails (EIO)


def test_sweep_and_plot_errors_name_their_file(tmp_path):
    corpus = _write(tmp_path / "c.txt", TEXT.encode())
    blocker = _write(tmp_path / "file", b"x")
    r = invoke("sweep", corpus, "--grid", "hidden=8", "--steps", "5", "--out", blocker / "sweep")
    assert r.exit_code == 1 and f"{blocker / 'sweep'}: cannot create the sweep folder" in r.stderr
    folder = tmp_path / "sw"
    folder.mkdir()
    (folder / "sweep.json").write_text("{}")
    (folder / "sweep.jsonl").mkdir()        # unreadable as a file
    r = invoke("runs", folder)
    assert r.exit_code == 1 and f"{folder / 'sweep.jsonl'}: cannot read" in r.stderr
    log = _write(tmp_path / "log.jsonl", b"\xff\xfe{}\n")
    r = invoke("plot", log)
    assert r.exit_code == 1 and f"{log}: not a charrnn log" in r.stderr


# -- 7. train's options given to a sweep ----------------------------------------------

def test_sweep_refuses_bad_train_options_as_train_does(tmp_path):
    corpus = _write(tmp_path / "c.txt", TEXT.encode())
    for args, words in [(["--model", "foo"], "'--model'"), (["--dropout", "1.5"], "--dropout"),
                        (["--lr", "0.1", "--min-lr", "0.5"], "--min-lr"),
                        (["--model", "gru", "--grid", "model=rnn,lstm"], "--model is given both")]:
        r = invoke("sweep", corpus, *args, "--grid", "hidden=8,16", "--steps", "5", "--out", tmp_path / "s")
        assert r.exit_code == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert not (tmp_path / "s").exists()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = invoke("sweep", fifo, "--grid", "hidden=8", "--steps", "5", "--out", tmp_path / "s")
    assert r.exit_code == 1 and f"{fifo}: not a regular file" in r.stderr


def test_every_train_option_is_a_sweep_option_and_new_ones_follow(monkeypatch):
    import click

    from charrnn.cli import sweep as SW
    from charrnn.cli.train import train
    own = {p.name for p in SW.sweep.params if not getattr(p, "from_train", False)}
    given = {p.name for p in SW.sweep.params if getattr(p, "from_train", False)}
    for p in train.params:
        if isinstance(p, click.Option) and p.name not in SW.SWEEP_SETS:
            assert p.name in given or p.name in own, p.name        # own: --seed, --encoding
    # an option added to train later is a sweep option and a --grid key without an edit here
    extra = click.Option(["--frobnicate"], type=click.IntRange(1), default=3, show_default=True)
    monkeypatch.setattr(SW, "_train", click.Command("train", params=[*train.params, extra]))
    cmd = SW.SweepCommand("sweep", params=[p for p in SW.sweep.params if not getattr(p, "from_train", False)],
                          callback=SW.sweep.callback)
    assert any("--frobnicate" in p.opts for p in cmd.params) and "frobnicate" in SW.grid_keys()
    help_text = cmd.get_help(click.Context(cmd))
    assert "--frobnicate" in help_text.split("Train's options")[1]


def test_sweep_trials_get_the_fixed_options(tmp_path):
    corpus = _write(tmp_path / "c.txt", TEXT.encode())
    out = tmp_path / "sw"
    args = ["sweep", corpus, "--model", "gru", "--layers", "1", "--batch-size", "2", "--seq-len", "8",
            "--eval-every", "5", "--no-cache", "--grid", "hidden=8,16", "--steps", "5", "--workers", "2",
            "--out", out, "-q"]
    r = run_cli(*args, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    for h in (8, 16):
        ck = C.load(out / f"hidden={h}" / "latest.npz")
        assert (ck.model_cfg.model, ck.model_cfg.hidden, ck.model_cfg.layers) == ("gru", h, 1)
        assert (ck.train_cfg.batch_size, ck.train_cfg.seq_len, ck.train_cfg.eval_every) == (2, 8, 5)
    assert "--model" in json.loads((out / "sweep.json").read_text())["fixed"]


def _write(path, data: bytes):
    path.write_bytes(data)
    return path
