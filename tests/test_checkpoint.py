"""Checkpoint round trip, and loading never runs code or crashes on a bad file.

Cases (each a real file on disk, loaded by `charrnn sample`/`info` through the CLI):
  truncated file, bit-flipped file, text file renamed .npz, pickle-carrying
  array, wrong format version, missing key, hand-edited shape, hand-edited config,
  NaN weights, vocabulary inconsistent with the weights, huge claimed array size,
  a directory with no checkpoint, a missing file.
"""
import io
import json
import os
import zipfile

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn import model as M
from conftest import run_cli


def test_round_trip_same_logits(trained_run, tmp_path):
    ck = C.load(trained_run / "best.npz")
    C.save(tmp_path / "copy.npz", ck)
    back = C.load(tmp_path / "copy.npz")
    assert np.array_equal(back.flat, ck.flat)
    assert back.model_cfg == ck.model_cfg and back.train_cfg == ck.train_cfg
    assert np.array_equal(back.vocab.codepoints, ck.vocab.codepoints)
    x = np.array([[3], [5], [8]], np.int32)
    outs = []
    for c in (ck, back):
        ws = M.Workspace(c.model_cfg, 3, 1, np.float32, train=False)
        M.forward(c.model_cfg, c.params, ws, x, x, M.State(c.model_cfg, 1, np.float32), grad=False)
        outs.append(ws.logits.copy())
    assert np.array_equal(*outs)


def rewrite(src, dst, change):
    """Copy checkpoint src to dst with `change(dict of arrays)` applied."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)


def corrupt_cases(src, d):
    raw = open(src, "rb").read()
    cases = {}
    cases["truncated"] = raw[:len(raw) // 2]
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    cases["bitflip"] = bytes(flipped)
    cases["text"] = b"This is a text file, renamed.\n" * 20
    for name, data in cases.items():
        (d / f"{name}.npz").write_bytes(data)
    rewrite(src, d / "pickle.npz", lambda a: a.update({"evil": np.array([{"x": 1}], dtype=object)}))
    rewrite(src, d / "version.npz", lambda a: a.update({"format_version": np.array(99)}))
    rewrite(src, d / "missing.npz", lambda a: a.pop("param.Wy"))
    rewrite(src, d / "shape.npz", lambda a: a.update({"param.l0.Wh": a["param.l0.Wh"][:, :5]}))

    def edit_config(a):
        cfg = json.loads(str(a["config"]))
        cfg["model"]["hidden"] = 7
        a["config"] = np.array(json.dumps(cfg))
    rewrite(src, d / "config.npz", edit_config)

    def nan(a):
        a["param.Wy"] = a["param.Wy"].copy()
        a["param.Wy"][0, 0] = np.nan
    rewrite(src, d / "nan.npz", nan)
    rewrite(src, d / "vocab.npz", lambda a: a.update({"vocab": a["vocab"][::-1].copy()}))
    # a member whose header claims 2^40 float64 elements: refused before allocating
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, zipfile.ZipFile(src) as zs:
        for info in zs.infolist():
            zf.writestr(info.filename, zs.read(info.filename))
        hdr = io.BytesIO()
        np.lib.format.write_array_header_1_0(hdr, {"descr": "<f8", "fortran_order": False,
                                                   "shape": (1 << 40,)})
        zf.writestr("huge.npy", b"\x93NUMPY\x01\x00" + hdr.getvalue()[8:])
    (d / "huge.npz").write_bytes(buf.getvalue())
    return sorted(p.stem for p in d.glob("*.npz"))


@pytest.fixture(scope="module")
def bad_dir(trained_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    corrupt_cases(trained_run / "best.npz", d)
    return d


CASES = ["bitflip", "config", "huge", "missing", "nan", "pickle", "shape", "text", "truncated",
         "version", "vocab"]


@pytest.mark.parametrize("case", CASES)
def test_bad_checkpoint_raises_checkpoint_error(bad_dir, case):
    with pytest.raises(C.CheckpointError) as e:
        C.load(bad_dir / f"{case}.npz")
    assert str(e.value).startswith(str(bad_dir / f"{case}.npz") + ": ")


@pytest.mark.parametrize("case", ["bitflip", "pickle", "truncated", "text", "nan"])
def test_bad_checkpoint_through_cli_one_line_exit_1(bad_dir, case):
    for cmd in (["sample", "-c"], ["info"]):
        r = run_cli(*cmd, bad_dir / f"{case}.npz")
        err = r.stderr.decode()
        assert r.returncode == 1, err
        assert err.startswith(f"error: {bad_dir / f'{case}.npz'}: ") and err.count("\n") == 1
        assert "Traceback" not in err and r.stdout == b""


def test_missing_and_directory(tmp_path):
    r = run_cli("sample", "-c", tmp_path / "nope.npz")
    assert r.returncode == 1 and "no such checkpoint" in r.stderr.decode()
    r = run_cli("sample", "-c", tmp_path)
    assert r.returncode == 1 and "no best.npz or latest.npz" in r.stderr.decode()
