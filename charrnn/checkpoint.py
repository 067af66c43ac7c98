"""Checkpoints: one `.npz` file, no pickled objects, validated before use.

Keys (format version 1); L layers, H hidden, V vocabulary, G = gates * H, P params:
    format_version   int64 ()       1
    config           str ()         JSON {"model": ModelConfig, "train": TrainConfig}
    vocab            int32 (V,)     Unicode code points, sorted ascending; id = index
    param.<name>     float (shape)  see model.param_shapes: l{l}.Wx l{l}.Wh l{l}.b Wy by
    optim.<slot>     float (P,)     optimizer state over the flat parameter vector
                                    (adagrad: mem; adam: m v; rmsprop: sq; sgd: none)
    state.h, state.c float (L, B, H) hidden state carried by the training streams
    train_state      str ()         JSON {step, pos, rng, best_val, elapsed, chars, epoch}
    meta             str ()         JSON {corpus, corpus_chars, command, created, version}
Saving writes a temporary file in the same folder through a file object, flushes
and fsyncs it, then os.replace()s it over the target: a reader (or a crash) only
ever sees the old file or the new one.
"""
import json
import os
import tempfile
import time
import zipfile

import numpy as np

from charrnn import model as M
from charrnn.config import CELLS, OPTIMIZERS, ModelConfig, TrainConfig
from charrnn.vocab import Vocab

FORMAT_VERSION = 1
OPTIM_SLOTS = {"adagrad": ("mem",), "adam": ("m", "v"), "rmsprop": ("sq",), "sgd": ()}
MAX_ARRAY_BYTES = 8 << 30      # no array in a checkpoint may claim more than this
MAX_STRING_CHARS = 1 << 20


class CheckpointError(Exception):
    """An unusable checkpoint; str() is '<file>: <what is wrong>'."""


class Checkpoint:
    """Everything a checkpoint holds, as plain Python/NumPy objects."""

    def __init__(self, model_cfg, train_cfg, vocab, flat, optim, state_h, state_c,
                 train_state, meta):
        self.model_cfg: ModelConfig = model_cfg
        self.train_cfg: TrainConfig = train_cfg
        self.vocab: Vocab = vocab
        self.flat: np.ndarray = flat            # (P,)
        self.optim: dict[str, np.ndarray] = optim
        self.state_h, self.state_c = state_h, state_c
        self.train_state: dict = train_state
        self.meta: dict = meta

    @property
    def params(self):
        return M.views(self.flat, self.model_cfg)


def save(path, ck: Checkpoint):
    """Write `ck` to `path` atomically (temp file + fsync + os.replace)."""
    arrays = {
        "format_version": np.array(FORMAT_VERSION, np.int64),
        "config": np.array(json.dumps({"model": ck.model_cfg.to_dict(),
                                       "train": ck.train_cfg.to_dict()})),
        "vocab": ck.vocab.codepoints,
        "state.h": ck.state_h,
        "state.c": ck.state_c,
        "train_state": np.array(json.dumps(ck.train_state)),
        "meta": np.array(json.dumps(ck.meta)),
    }
    for name, arr in M.views(ck.flat, ck.model_cfg).items():
        arrays[f"param.{name}"] = arr
    for slot, arr in ck.optim.items():
        arrays[f"optim.{slot}"] = arr
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            _test_seam_slow_save(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:   # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _test_seam_slow_save(f):
    """Tests set CHARRNN_TEST_SLOW_SAVE=<seconds> to widen the window in which a
    save can be killed; it writes nothing and does nothing when unset."""
    delay = os.environ.get("CHARRNN_TEST_SLOW_SAVE")
    if delay:
        f.flush()
        time.sleep(float(delay))


def _headers(zf: zipfile.ZipFile, label):
    """{key: (shape, dtype)} from each member's .npy header, read before any data."""
    out = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise CheckpointError(f"{label}: unexpected member {info.filename!r}")
        with zf.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            except ValueError as e:
                raise CheckpointError(f"{label}: corrupt array {info.filename!r} ({e})") from None
        if dtype.hasobject:
            raise CheckpointError(f"{label}: array {info.filename[:-4]!r} holds Python "
                                  f"objects (pickle); refusing to load it")
        nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if nbytes > MAX_ARRAY_BYTES:
            raise CheckpointError(f"{label}: array {info.filename[:-4]!r} claims "
                                  f"{nbytes / 2**30:.1f} GiB")
        out[info.filename[:-4]] = (tuple(shape), dtype)
    return out


def _expect(headers, key, shape, kinds, label):
    if key not in headers:
        raise CheckpointError(f"{label}: missing {key!r}")
    got_shape, dtype = headers[key]
    if shape is not None and got_shape != tuple(shape):
        raise CheckpointError(f"{label}: {key!r} has shape {got_shape}, expected {tuple(shape)}")
    if dtype.kind not in kinds:
        raise CheckpointError(f"{label}: {key!r} has dtype {dtype}, expected kind {kinds!r}")


def _json(arr, key, label):
    if arr.shape != () or arr.dtype.kind != "U" or arr.dtype.itemsize // 4 > MAX_STRING_CHARS:
        raise CheckpointError(f"{label}: {key!r} is not a JSON string")
    try:
        value = json.loads(str(arr))
    except ValueError:
        raise CheckpointError(f"{label}: {key!r} is not valid JSON") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{label}: {key!r} is not a JSON object")
    return value


def load(path) -> Checkpoint:
    """Load and validate a checkpoint; raises CheckpointError naming the problem."""
    label = str(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{label}: is a directory")
    try:
        with zipfile.ZipFile(path) as zf:
            headers = _headers(zf, label)
    except FileNotFoundError:
        raise CheckpointError(f"{label}: no such file") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(f"{label}: not a charrnn checkpoint (not a valid .npz: {e})") from None
    try:
        with np.load(path, allow_pickle=False) as z:
            return _load_checked(z, headers, label)
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{label}: corrupt checkpoint ({type(e).__name__}: {e})") from None


def _load_checked(z, headers, label) -> Checkpoint:
    _expect(headers, "format_version", (), "iu", label)
    version = int(z["format_version"])
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{label}: format version {version}, this charrnn reads "
                              f"version {FORMAT_VERSION}")
    for key in ("config", "train_state", "meta"):
        _expect(headers, key, (), "U", label)
    config = _json(z["config"], "config", label)
    try:
        mcfg = ModelConfig.from_dict(config["model"])
        tcfg = TrainConfig.from_dict(config["train"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{label}: config is incomplete ({e})") from None
    _check_config(mcfg, tcfg, label)
    V, L, H = mcfg.vocab_size, mcfg.layers, mcfg.hidden
    _expect(headers, "vocab", (V,), "iu", label)
    vocab = np.asarray(z["vocab"], dtype=np.int64)
    if V > 0 and (vocab.min() < 0 or vocab.max() > 0x10FFFF or np.any(np.diff(vocab) <= 0)):
        raise CheckpointError(f"{label}: vocabulary is not a sorted set of Unicode code points")
    dtype = np.dtype(tcfg.dtype)
    flat = np.empty(M.num_params(mcfg), dtype)
    for name, shape in M.param_shapes(mcfg):
        _expect(headers, f"param.{name}", shape, "f", label)
    views = M.views(flat, mcfg)
    for name in views:
        views[name][:] = z[f"param.{name}"]
    if not np.isfinite(flat).all():
        raise CheckpointError(f"{label}: weights contain NaN or infinity")
    optim = {}
    for slot in OPTIM_SLOTS[tcfg.optimizer]:
        _expect(headers, f"optim.{slot}", (flat.size,), "f", label)
        optim[slot] = np.ascontiguousarray(z[f"optim.{slot}"], dtype=dtype)
        if not np.isfinite(optim[slot]).all():
            raise CheckpointError(f"{label}: optimizer state contains NaN or infinity")
    _expect(headers, "state.h", None, "f", label)
    sh = headers["state.h"][0]
    if len(sh) != 3 or sh[0] != L or sh[2] != H:
        raise CheckpointError(f"{label}: 'state.h' has shape {sh}, expected ({L}, B, {H})")
    _expect(headers, "state.c", sh, "f", label)
    state_h = np.ascontiguousarray(z["state.h"], dtype=dtype)
    state_c = np.ascontiguousarray(z["state.c"], dtype=dtype)
    if not (np.isfinite(state_h).all() and np.isfinite(state_c).all()):
        raise CheckpointError(f"{label}: hidden state contains NaN or infinity")
    train_state = _json(z["train_state"], "train_state", label)
    for key in ("step", "pos"):
        if not isinstance(train_state.get(key), int) or train_state[key] < 0:
            raise CheckpointError(f"{label}: train_state has no valid {key!r}")
    meta = _json(z["meta"], "meta", label)
    return Checkpoint(mcfg, tcfg, Vocab(vocab), flat, optim, state_h, state_c, train_state, meta)


def _check_config(m: ModelConfig, t: TrainConfig, label):
    problems = []
    if m.model not in CELLS:
        problems.append(f"unknown cell {m.model!r}")
    for name, value, lo, hi in [("hidden", m.hidden, 1, 65536), ("layers", m.layers, 1, 64),
                                ("vocab_size", m.vocab_size, 1, 1 << 21)]:
        if not isinstance(value, int) or not lo <= value <= hi:
            problems.append(f"{name} {value!r} out of range")
    if not isinstance(m.dropout, (int, float)) or not 0 <= m.dropout < 1:
        problems.append(f"dropout {m.dropout!r} out of range")
    if t.optimizer not in OPTIMIZERS:
        problems.append(f"unknown optimizer {t.optimizer!r}")
    if t.dtype not in ("float32", "float64"):
        problems.append(f"unknown dtype {t.dtype!r}")
    if problems:
        raise CheckpointError(f"{label}: bad config: {'; '.join(problems)}")
    if M.num_params(m) * 4 > MAX_ARRAY_BYTES:
        raise CheckpointError(f"{label}: config describes an implausibly large model")
