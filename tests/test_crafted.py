"""A checkpoint is untrusted input, second pass: crafted files, each written by the
test, each refused with one line (exit 1 through the CLI), never a traceback, never
a large allocation; and a checkpoint that loads trains its first step without NaN."""
import io
import json
import resource
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from charrnn import checkpoint as C
from conftest import run_cli
from test_checkpoint import rewrite


def _npy_header(descr, shape, fortran=False, raw=None):
    """A .npy header, or `raw` dict text as the header (for malformed ones)."""
    text = raw if raw is not None else repr({"descr": descr, "fortran_order": fortran, "shape": shape})
    text = text + " " * (63 - (len(text) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin-1")


def with_members(src, dst, extra=(), drop=(), replace=None):
    """Copy the zip src to dst, dropping names, replacing {name: bytes}, adding (name, bytes)."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zs, zipfile.ZipFile(dst, "w") as zd:
        for info in zs.infolist():
            if info.filename in drop:
                continue
            zd.writestr(info.filename, replace.get(info.filename, zs.read(info.filename)))
        for name, data in extra:
            zd.writestr(name, data)


def _edit_json(key, fn):
    def change(a):
        d = json.loads(str(a[key]))
        fn(d)
        a[key] = np.array(json.dumps(d))
    return change


def crafted(src, d):
    cases = {}

    def case(name, fn):
        path = d / f"{name}.npz"
        fn(path)
        cases[name] = path

    # -- headers: malformed in every way numpy's parser can trip
    for name, raw in [("hdr_syntax", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,"),
                      ("hdr_notdict", "[1, 2, 3]"), ("hdr_keys", "{'descr': '<f4'}"),
                      ("hdr_shape_str", "{'descr': '<f4', 'fortran_order': False, 'shape': 'x'}"),
                      ("hdr_negative", "{'descr': '<f4', 'fortran_order': False, 'shape': (-5,)}"),
                      ("hdr_descr", "{'descr': 'zz9', 'fortran_order': False, 'shape': (3,)}"),
                      ("hdr_binary", "\x00\x01\x02\x03\x04"), ("hdr_empty", "")]:
        case(name, lambda p, raw=raw: with_members(src, p, replace={"param.by.npy": _npy_header(None, None, raw=raw)}))
    case("hdr_version", lambda p: with_members(src, p, replace={"param.by.npy": b"\x93NUMPY\x07\x00" + b"\x00" * 60}))
    case("hdr_short", lambda p: with_members(src, p, replace={"param.by.npy": b"\x93NU"}))
    # -- sizes: members claiming far more than the file holds (no allocation first)
    case("big_param", lambda p: with_members(src, p, replace={"param.Wy.npy": _npy_header("<f4", (60_000, 10_000))}))
    case("big_string", lambda p: with_members(src, p, replace={"meta.npy": _npy_header("<U200000000", ())}))
    case("big_vocab", lambda p: with_members(src, p, replace={"vocab.npy": _npy_header("<i4", (500_000_000,))}))
    # -- members: duplicate, unknown, nested
    case("duplicate", lambda p: with_members(src, p, extra=[("param.by.npy", zipfile.ZipFile(src).read("param.by.npy"))]))
    case("unknown", lambda p: with_members(src, p, extra=[("param.extra.npy", zipfile.ZipFile(src).read("param.by.npy"))]))
    case("nested", lambda p: with_members(src, p, extra=[("x/y.npy", zipfile.ZipFile(src).read("param.by.npy"))]))
    # -- dtypes: exactly the documented ones
    case("float16", lambda p: rewrite(src, p, lambda a: a.update({"param.Wy": a["param.Wy"].astype(np.float16)})))
    case("float64", lambda p: rewrite(src, p, lambda a: a.update({"param.Wy": a["param.Wy"].astype(np.float64)})))
    case("bigendian", lambda p: rewrite(src, p, lambda a: a.update({"param.Wy": a["param.Wy"].astype(">f4")})))
    case("vocab_int64", lambda p: rewrite(src, p, lambda a: a.update({"vocab": a["vocab"].astype(np.int64)})))
    case("version_str", lambda p: rewrite(src, p, lambda a: a.update({"format_version": np.array("1")})))
    case("config_bytes", lambda p: rewrite(src, p, lambda a: a.update({"config": np.array(b"{}")})))
    case("optim_int", lambda p: rewrite(src, p, lambda a: a.update({"optim.m": a["optim.m"].astype(np.int32)})))
    # -- values: the training and optimizer state
    case("neg_v", lambda p: rewrite(src, p, lambda a: a.update({"optim.v": -np.abs(a["optim.v"]) - 1})))
    case("huge_weight", lambda p: rewrite(src, p, lambda a: a.update({"param.Wy": a["param.Wy"] * 0 + 1e30})))
    case("inf_state", lambda p: rewrite(src, p, lambda a: a.update({"state.c": a["state.c"] * 0 + np.inf})))
    case("h_out_of_range", lambda p: rewrite(src, p, lambda a: a.update({"state.h": a["state.h"] * 0 + 7})))
    case("state_batch", lambda p: rewrite(src, p, lambda a: a.update({"state.h": a["state.h"][:, :1].copy(),
                                                                        "state.c": a["state.c"][:, :1].copy()})))
    for key, value in [("step", -1), ("step", 1.5), ("step", "3"), ("step", 10 ** 30), ("pos", -4),
                       ("rng", {"bit_generator": "PCG64", "state": "x"}), ("rng", None),
                       ("rng", {"bit_generator": "Evil", "state": {}}), ("elapsed", float("nan")),
                       ("best_val", -3), ("horizon", {"steps": -1}), ("horizon", {"what": 1}),
                       ("since_best", True)]:
        case(f"ts_{key}_{str(value)[:12]}", lambda p, k=key, v=value: rewrite(
            src, p, _edit_json("train_state", lambda d: d.__setitem__(k, v))))
    for key, value in [("schedule", "zigzag"), ("lr", -1), ("lr", 0), ("warmup", -3), ("patience", 0),
                       ("batch_size", 0), ("min_lr", float("inf")), ("eval_every", "often")]:
        case(f"cfg_{key}_{value}", lambda p, k=key, v=value: rewrite(
            src, p, _edit_json("config", lambda d: d["train"].__setitem__(k, v))))
    # -- format 2: the new config fields, the average, the logged figures, the bounds
    for key, value in [("steps", "3000"), ("steps", -5), ("epochs", -1), ("time", float("nan")),
                       ("avg_decay", 1.0), ("avg_decay", "0.9")]:
        case(f"cfg2_{key}_{value}", lambda p, k=key, v=value: rewrite(
            src, p, _edit_json("config", lambda d: d["train"].__setitem__(k, v))))
    for key, value in [("wdrop", 1.0), ("wdrop", -0.5), ("dropout_kind", "spatial")]:
        case(f"model_{key}_{value}", lambda p, k=key, v=value: rewrite(
            src, p, _edit_json("config", lambda d: d["model"].__setitem__(k, v))))
    for key, value in [("smooth", float("inf")), ("smooth", "low"), ("avg_steps", -1)]:
        case(f"ts2_{key}_{value}", lambda p, k=key, v=value: rewrite(
            src, p, _edit_json("train_state", lambda d: d.__setitem__(k, v))))
    case("avg_missing", lambda p: with_members(src, p, drop=("average.npy",)))
    case("avg_nan", lambda p: rewrite(src, p, lambda a: a.update({"average": a["average"] * np.nan})))
    case("avg_shape", lambda p: rewrite(src, p, lambda a: a.update({"average": a["average"][:-1].copy()})))
    case("meta_chars", lambda p: rewrite(src, p, _edit_json("meta", lambda d: d.__setitem__("corpus_chars", "many"))))
    case("meta_corpus", lambda p: rewrite(src, p, _edit_json("meta", lambda d: d.__setitem__("corpus", [1, 2]))))
    case("json_deep", lambda p: rewrite(src, p, lambda a: a.update({"meta": np.array("[" * 100_000 + "]" * 100_000)})))
    case("json_list", lambda p: rewrite(src, p, lambda a: a.update({"meta": np.array("[1, 2]")})))
    # -- the vocabulary: Unicode scalar values only
    case("surrogate", lambda p: rewrite(src, p, lambda a: a.update({"vocab": np.sort(np.concatenate(
        [a["vocab"][:-1], np.array([0xD800], np.int32)])).astype(np.int32)})))
    return cases


@pytest.fixture(scope="module")
def cases(trained_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("crafted")
    # an Adam checkpoint, so that both moments are there to tamper with
    from conftest import train_small
    text = (trained_run.parent / "corpus.txt").read_text(encoding="utf-8")
    _, run = train_small(tmp_path_factory.mktemp("adam"), text, steps=10, hidden=16, layers=2,
                         optimizer="adam", lr=1e-3, avg_decay=0.99)     # with a weight average
    return crafted(run / "latest.npz", d)


def test_every_crafted_checkpoint_is_refused_in_one_line(cases):
    assert len(cases) >= 50
    for name, path in cases.items():
        with pytest.raises(C.CheckpointError) as e:
            C.load(path)
        msg = str(e.value)
        assert msg.startswith(f"{path}: ") and "\n" not in msg, (name, msg)
        assert "internal error" not in msg


@pytest.mark.parametrize("name", ["hdr_syntax", "hdr_binary", "big_string", "duplicate", "float16",
                                  "surrogate", "ts_rng_None", "json_deep", "meta_chars", "avg_nan",
                                  "cfg2_steps_3000"])
def test_crafted_through_the_cli(cases, name):
    r = run_cli("info", cases[name])
    err = r.stderr.decode()
    assert r.returncode == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "internal error" not in err and "Traceback" not in err


def test_loading_a_crafted_file_allocates_little(cases, tmp_path):
    """Each large-claiming file is refused with the process's peak memory barely
    above what importing costs (a 1 MB file once made the loader take 2 GB)."""
    code = ("import resource, sys; from charrnn import checkpoint as C\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "for p in sys.argv[1:]:\n"
            "    try: C.load(p)\n"
            "    except C.CheckpointError: pass\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)")
    paths = [str(cases[n]) for n in ("big_param", "big_string", "big_vocab", "json_deep")]
    r = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) < 50, f"grew by {r.stdout.strip()} MB"


def test_a_checkpoint_that_loads_takes_a_finite_first_step(trained_run, tmp_path):
    from charrnn.data import read_corpus
    from charrnn.training import Trainer
    ck = C.load(trained_run / "latest.npz")
    corpus = read_corpus([str(trained_run.parent / "corpus.txt")])
    tr = Trainer(ck.model_cfg, ck.train_cfg, corpus.ids, ck.vocab, resume=ck)
    assert np.isfinite(tr.train_step())
