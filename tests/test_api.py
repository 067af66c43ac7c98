"""The Python API as a notebook uses it (charrnn.load -> Model), against the commands:
same seed same text, same scores, same one-line errors; importing charrnn changes no
process-wide state; --debug is an option; run folders, locks and atomic writes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import charrnn
from charrnn.errors import CharrnnError, DataError, UsageError
from conftest import run_cli

GOLDEN = Path(__file__).parent / "data" / "golden-v1.npz"     # an LSTM 2x24, 35 characters

# the calling thread's MXCSR, read with llvmlite alone (not charrnn's code)
MXCSR = r'''
import ctypes, llvmlite.binding as llvm
llvm.initialize_native_target(); llvm.initialize_native_asmprinter()
_m = llvm.parse_assembly("""
declare void @llvm.x86.sse.stmxcsr(ptr)
define i32 @get() {
  %s = alloca i32
  call void @llvm.x86.sse.stmxcsr(ptr %s)
  %v = load i32, ptr %s
  ret i32 %v
}""")
_e = llvm.create_mcjit_compiler(_m, llvm.Target.from_default_triple().create_target_machine())
_e.finalize_object()
_get = ctypes.CFUNCTYPE(ctypes.c_uint32)(_e.get_function_address("get"))
def mode():     # control bits only: bits 0-5 are sticky exception flags, not a mode
    return _get() & ~0x3F
'''


def _python(code, env=None, timeout=120):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "AMD64"), reason="MXCSR is x86's")
def test_importing_and_using_charrnn_leaves_the_process_as_it_was(tmp_path):
    user = tmp_path / "user_kernels.py"     # a notebook's own cached Numba function
    user.write_text("from numba import njit\n@njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    code = MXCSR + f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
import numba
from numba.core import caching, config
before = (mode(), config.CACHE_DIR, list(caching.CacheImpl._locator_classes))
import charrnn, charrnn.api
assert "charrnn.kernels.lstm" not in sys.modules and "charrnn.model" not in sys.modules
assert (mode(), config.CACHE_DIR, list(caching.CacheImpl._locator_classes)) == before
m = charrnn.load({str(GOLDEN)!r})
text = m.generate("to", length=50, seed=1)
m.score("to be or not")
assert len(text) == 52
assert (mode(), config.CACHE_DIR) == before[:2], (hex(mode()), hex(before[0]))
import user_kernels
assert user_kernels.twice(21) == 42      # cached where Numba itself would put it
# where Numba itself puts a user's cache: NUMBA_CACHE_DIR if set (CI sets it), else __pycache__
import os, pathlib
where = pathlib.Path(os.environ["NUMBA_CACHE_DIR"]) if os.environ.get("NUMBA_CACHE_DIR") else \
    pathlib.Path({str(tmp_path)!r}) / "__pycache__"
print(sorted(p.name for p in where.rglob("user_kernels.twice*.nbi")))
"""
    r = _python(code)
    assert "user_kernels.twice" in r.stdout, r.stdout


def test_import_charrnn_and_its_api_loads_nothing_heavy():
    # what keeps `import charrnn` and `charrnn --help` as cheap as before
    r = _python("import sys, charrnn, charrnn.api, charrnn.cli; charrnn.load; charrnn.Model\n"
                "print(sorted(m for m in ('numpy', 'numba', 'llvmlite', 'scipy') if m in sys.modules))")
    assert r.stdout.strip() == "[]"
    r = subprocess.run([sys.executable, "-m", "charrnn", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Usage: charrnn" in r.stdout


def test_generate_is_what_sample_prints_for_the_same_seed():
    m = charrnn.load(GOLDEN)
    r = run_cli("sample", "-c", GOLDEN, "--prime", "to be", "--length", "120", "--seed", "11",
                "--temp", "0.9", "--top-k", "20")
    one = m.generate("to be", length=120, seed=11, temp=0.9, top_k=20)
    # (with or without a final newline: its contract is being settled, issue 23 item 2)
    assert r.returncode == 0 and r.stdout.decode() in (one, one + "\n")
    assert isinstance(one, str) and one.startswith("to be") and len(one) == 5 + 120
    r = run_cli("sample", "-c", GOLDEN, "--num", "3", "--length", "60", "--seed", "5", "--stop", "\n",
                "--top-p", "0.9")
    many = m.generate(length=60, seed=5, n=3, stop="\n", top_p=0.9)
    assert isinstance(many, list) and len(many) == 3 and all("\n" not in s for s in many)
    assert r.stdout.decode() in ("\n\n".join(many), "\n\n".join(many) + "\n")
    assert many[0] == m.generate(length=60, seed=5, stop="\n", top_p=0.9)   # sample i for any n
    # streamed: the same text in pieces, the prime first; length 0 never ends
    chunks = list(m.stream("to be", length=120, seed=11, temp=0.9, top_k=20))
    assert chunks[0] == "to be" and "".join(chunks) == one
    endless, got = m.stream(length=0, seed=3), ""
    while len(got) < 5000:
        got += next(endless)
    assert got.startswith(m.generate(length=100, seed=3))
    m.generate(length=10)
    assert m.last_seed is not None and m.generate(length=30, seed=m.last_seed) == \
        m.generate(length=30, seed=m.last_seed)


def test_score_and_complete_are_what_eval_and_complete_print():
    m = charrnn.load(GOLDEN)
    text = "to be or not to beX"        # X is not in the vocabulary: skipped and counted
    s = m.score(text)
    r = run_cli("eval", "-c", GOLDEN, "--text", text, "--json")
    row = json.loads(r.stdout)["texts"][0]
    assert (s["chars"], s["unknown"]) == (row["chars"], row["unknown"]) == (18, 1)
    assert s["loss"] == row["loss"] and s["logprob"] == row["logprob"]
    assert s["losses"].shape == (18,) and s["losses"].dtype == np.float64
    assert s["bpc"] == pytest.approx(s["loss"] / np.log(2)) and s["perplexity"] == pytest.approx(np.exp(s["loss"]))
    assert np.isnan(m.score("")["loss"]) and m.score("")["chars"] == 0
    # a leading byte-order mark is not text, in the API as in the commands
    assert m.score("\ufeff" + text)["losses"].tolist() == s["losses"].tolist()
    assert m.complete("\ufeffto be or not to", k=4, beam=6) == m.complete("to be or not to", k=4, beam=6)
    assert m.generate("\ufeffThou", length=20, seed=3) == m.generate("Thou", length=20, seed=3)
    found = m.complete("to be or not to", k=4, beam=6)
    r = run_cli("complete", "to be or not to", "-c", GOLDEN, "--words", "4", "--beam", "6", "--json")
    assert [(d["text"], d["probability"]) for d in json.loads(r.stdout)] == found and len(found) == 4


def _cli_error(*args):
    r = run_cli(*args)
    err = r.stderr.decode()
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return r.returncode, err[len("error: "):].rstrip("\n")


def test_bad_input_raises_the_documented_error_with_the_commands_message(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(DataError) as e:
        charrnn.load(missing)
    assert _cli_error("sample", "-c", missing) == (1, str(e.value))
    empty = tmp_path / "empty-run"
    empty.mkdir()
    with pytest.raises(DataError) as e:
        charrnn.load(empty)
    assert _cli_error("sample", "-c", empty) == (1, str(e.value)) and "no best.npz" in str(e.value)
    crafted = tmp_path / "crafted.npz"          # a checkpoint whose weight is NaN
    with np.load(GOLDEN, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["param.by"] = np.full_like(arrays["param.by"], np.nan)
    np.savez(crafted, **arrays)
    with pytest.raises(charrnn.CharrnnError) as e:
        charrnn.load(crafted)
    assert type(e.value).__name__ == "CheckpointError" and isinstance(e.value, DataError)
    assert _cli_error("sample", "-c", crafted) == (1, str(e.value)) and "NaN" in str(e.value)

    m = charrnn.load(GOLDEN)
    for kwargs, flag, args in [({"top_p": 2}, "--top-p", ["--top-p", "2"]),
                               ({"prime": "EEK"}, "--prime", ["--prime", "EEK"]),
                               ({"stop": ""}, "--stop", ["--stop", ""]),
                               ({"length": 0, "n": 2}, "--length", ["--length", "0", "--num", "2"])]:
        with pytest.raises(UsageError) as e:
            m.generate(**kwargs)
        code, line = _cli_error("sample", "-c", GOLDEN, *args)
        assert code == 2 and line.startswith(f"Invalid value for {flag}: ") or \
            line.startswith(f"Invalid value for '{flag}': "), line
        assert e.value.message.replace("n 1", "--num 1") in line, (e.value.message, line)
        assert isinstance(e.value, ValueError) and isinstance(e.value, CharrnnError)
    for bad in ({"temp": -1}, {"temp": float("nan")}, {"top_k": -1}, {"length": 2.5}, {"n": 0}):
        with pytest.raises(UsageError) as e:
            m.generate(**bad)
        assert e.value.param == next(iter(bad)) and e.value.exit_code == 2
    with pytest.raises(UsageError, match="never return"):
        m.generate(length=0)
    with pytest.raises(UsageError, match="vocabulary"):
        m.complete("EEK")
    with pytest.raises(DataError) as e:
        m.export(tmp_path / "no-such-folder" / "m.onnx")
    code, line = _cli_error("export", GOLDEN, "-o", tmp_path / "no-such-folder" / "m.onnx")
    assert (code, line) == (1, str(e.value))


def test_export_writes_onnx(tmp_path):
    pytest.importorskip("onnx")
    out = charrnn.load(GOLDEN).export(tmp_path / "m.onnx")
    import onnx
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert json.loads(meta["vocab"]) == charrnn.load(GOLDEN).vocab


def test_debug_is_an_option_not_a_substring(monkeypatch, capsys):
    from charrnn import cli, kernels, runs

    def boom(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(runs, "checkpoint_path", boom)
    monkeypatch.setattr(kernels, "own_process", lambda: None)     # this process is pytest's
    monkeypatch.delenv("CHARRNN_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:    # "--debug" as the text of --prime: no traceback
        cli.main(["sample", "-c", "x.npz", "--prime", "--debug"])
    assert e.value.code == 1
    assert "internal error: RuntimeError: boom (rerun with --debug" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["--debug", "sample", "-c", "x.npz"])


def test_one_rule_for_a_run_folders_checkpoint(tmp_path):
    from charrnn import runs
    run = tmp_path / "run"
    run.mkdir()
    assert runs.run_checkpoint(run) is None
    (run / "latest.npz").write_bytes(b"x")
    assert runs.run_checkpoint(run) == runs.run_checkpoint(run, resume=True) == str(run / "latest.npz")
    (run / "best.npz").write_bytes(b"x")
    assert runs.run_checkpoint(run) == runs.checkpoint_path(run) == str(run / "best.npz")
    assert runs.run_checkpoint(run, resume=True) == runs.checkpoint_path(run, resume=True) == \
        str(run / "latest.npz")
    assert runs.checkpoint_path(run / "latest.npz") == str(run / "latest.npz")


def test_a_locked_run_folder_is_a_data_error_not_a_click_one(tmp_path):
    from charrnn import runs
    with runs.lock_run_dir(str(tmp_path / "r")):
        with pytest.raises(DataError, match="another charrnn train") as e:
            with runs.lock_run_dir(str(tmp_path / "r")):
                pass
    assert not any("click" in c.__module__ for c in type(e.value).__mro__)


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    from charrnn.fileio import atomic_write
    target = tmp_path / "f.json"
    target.write_text("old")

    def fails(f):
        f.write("half")
        raise RuntimeError("disk on fire")
    with pytest.raises(RuntimeError):
        atomic_write(target, fails)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.json"]
    atomic_write(target, lambda f: np.save(f, np.arange(3)), mode="wb")     # a binary writer
    assert np.load(target).tolist() == [0, 1, 2] and os.listdir(tmp_path) == ["f.json"]
    os.symlink(tmp_path / "elsewhere", tmp_path / "link.txt")       # replaced, never followed
    atomic_write(tmp_path / "link.txt", lambda f: f.write("new"), perms=0o600)
    assert not (tmp_path / "elsewhere").exists() and (tmp_path / "link.txt").read_text() == "new"
    assert oct(os.stat(tmp_path / "link.txt").st_mode & 0o777) == oct(0o600)
