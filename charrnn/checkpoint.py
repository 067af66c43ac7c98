"""Checkpoints: one `.npz` file, no pickled objects, validated before use.

Keys (format version 2); L layers, H hidden, V vocabulary, G = gates * H, P params:
    format_version   int64 ()       2 (version 1 files load as before: see below)
    config           str ()         JSON {"model": ModelConfig, "train": TrainConfig}
    vocab            int32 (V,)     Unicode code points, sorted ascending; id = index
    param.<name>     float (shape)  see model.param_shapes: l{l}.Wx l{l}.Wh l{l}.b Wy by
    optim.<slot>     float (P,)     optimizer state over the flat parameter vector
                                    (adagrad: mem; adam: m v; rmsprop: sq; sgd: none)
    state.h, state.c float (L, B, H) hidden state carried by the training streams
    average          float (P,)     only with --avg-decay: the exponential moving average of
                                    the weights (flat, in param order), which validation
                                    measured and sampling uses; param.* are the raw weights
                                    training continues from
    train_state      str ()         JSON {step, pos, rng, best_val, elapsed, chars, epoch,
                                    smooth (the logged training loss), avg_steps}
    meta             str ()         JSON {corpus, corpus_chars, command, created, version}
Version 2 added `average`, the config fields model.dropout_kind and model.wdrop and
train.avg_decay, and train_state's smooth and avg_steps. A version-1 file loads with
dropout_kind "step" (a fresh mask per time step, as it was trained), wdrop 0 and no
average, so it samples, scores and resumes exactly as before.
Saving writes a temporary file in the same folder through a file object, flushes
and fsyncs it, then os.replace()s it over the target: a reader (or a crash) only
ever sees the old file or the new one.
"""
import json
import math
import os
import time
import zipfile

import numpy as np

from charrnn import fileio
from charrnn import model as M
from charrnn.config import CELLS, DROPOUT_KINDS, OPTIMIZERS, SCHEDULES, ModelConfig, TrainConfig
from charrnn.errors import DataError
from charrnn.vocab import Vocab

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# what a version-1 config lacks, as version 1 trained
V1_MODEL_FIELDS = {"dropout_kind": "step", "wdrop": 0.0}
OPTIM_SLOTS = {"adagrad": ("mem",), "adam": ("m", "v"), "rmsprop": ("sq",), "sgd": ()}
MAX_ARRAY_BYTES = 8 << 30      # no array in a checkpoint may claim more than this
MAX_STRING_CHARS = 1 << 20
MAX_EXPANSION = 4              # arrays may claim at most this times the file's size, in all
MAX_WEIGHT = 1e4               # |weight|: trained weights stay far below (|w| < 50 seen)
MAX_OPTIM = {"mem": 1e30, "m": 1e6, "v": 1e12, "sq": 1e12}
MAX_COUNT = 10 ** 12           # steps, positions


class CheckpointError(DataError):
    """An unusable checkpoint; str() is '<file>: <what is wrong>'."""


class Checkpoint:
    """Everything a checkpoint holds, as plain Python/NumPy objects."""

    def __init__(self, model_cfg, train_cfg, vocab, flat, optim, state_h, state_c,
                 train_state, meta, avg=None, path=None):
        self.model_cfg: ModelConfig = model_cfg
        self.train_cfg: TrainConfig = train_cfg
        self.vocab: Vocab = vocab
        self.flat: np.ndarray = flat            # (P,)
        self.optim: dict[str, np.ndarray] = optim
        self.state_h, self.state_c = state_h, state_c
        self.train_state: dict = train_state
        self.meta: dict = meta
        self.avg: np.ndarray | None = avg       # (P,) the weight average, or None
        self.path = path                        # the file it was loaded from, if any

    @property
    def weights(self) -> np.ndarray:
        """(P,) the weights to sample, score and export with: the average if there is one."""
        return self.avg if self.avg is not None else self.flat

    @property
    def params(self):
        """Named views of `weights`."""
        return M.views(self.weights, self.model_cfg)


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
    if ck.avg is not None:
        arrays["average"] = ck.avg

    def write(f):
        np.savez(f, **arrays)
        _test_seam_slow_save(f)

    try:
        fileio.atomic_write(path, write, mode="wb", suffix=".npz")
    except OSError as e:    # ENOSPC, EFBIG, EDQUOT, EIO: name the file, keep the old one
        raise OSError(e.errno, f"{e.strerror} while saving; the previous {os.path.basename(path)} "
                               f"(if any) is kept", str(path)) from None


TMP_PREFIX = fileio.TMP_PREFIX


def remove_stale_temporaries(folder) -> int:
    """Delete the temporary files of saves that were killed (call with the run lock
    held, so that no save is in progress); returns how many. Symlinks are removed,
    never followed."""
    n = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if name.startswith(TMP_PREFIX) and name.endswith((".npz", ".json")):
            try:
                os.unlink(os.path.join(folder, name))
                n += 1
            except OSError:
                pass
    return n


def _test_seam_slow_save(f):
    """Tests set CHARRNN_TEST_SLOW_SAVE=<seconds> to widen the window in which a
    save can be killed; it writes nothing and does nothing when unset."""
    delay = os.environ.get("CHARRNN_TEST_SLOW_SAVE")
    if delay:
        f.flush()
        time.sleep(float(delay))


def _headers(zf: zipfile.ZipFile, label, file_size):
    """{key: (shape, dtype)} from each member's .npy header, read before any data.
    Refuses duplicate or non-.npy members, any malformed header, object dtypes, and a
    member claiming more bytes than MAX_EXPANSION times the file (so loading never
    allocates much more than the file's own size)."""
    out = {}
    budget = MAX_EXPANSION * file_size + (1 << 20)
    claimed = 0
    for info in zf.infolist():
        name = info.filename
        if not name.endswith(".npy") or name[:-4] in out or "/" in name:
            what = "duplicate" if name[:-4] in out else "unexpected"
            raise CheckpointError(f"{label}: corrupt checkpoint ({what} member {name!r})")
        with zf.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"format version {version}")
            except Exception as e:  # noqa: BLE001 - numpy parses the header with ast: any error
                raise CheckpointError(f"{label}: corrupt checkpoint (bad header in {name!r}: "
                                      f"{type(e).__name__})") from None
        if dtype.hasobject:
            raise CheckpointError(f"{label}: array {name[:-4]!r} holds Python "
                                  f"objects (pickle); refusing to load it")
        if fortran and len(shape) > 1:
            raise CheckpointError(f"{label}: corrupt checkpoint ({name!r} is in Fortran order)")
        nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        claimed += nbytes
        if nbytes > MAX_ARRAY_BYTES or claimed > budget:
            raise CheckpointError(f"{label}: corrupt checkpoint (array {name[:-4]!r} claims "
                                  f"{nbytes / 2**20:,.1f} MiB in a {file_size / 2**20:,.1f} MiB file)")
        out[name[:-4]] = (tuple(shape), dtype)
    return out


def _expect(headers, key, shape, dtype, label):
    """The member exists with this shape (None: any) and exactly this dtype (a
    np.dtype, or "str" for a scalar string)."""
    if key not in headers:
        raise CheckpointError(f"{label}: missing {key!r}")
    got_shape, got = headers[key]
    if shape is not None and got_shape != tuple(shape):
        raise CheckpointError(f"{label}: {key!r} has shape {got_shape}, expected {tuple(shape)}")
    ok = got.kind == "U" and got.byteorder in "=<|" if dtype == "str" else got == np.dtype(dtype)
    if not ok:
        raise CheckpointError(f"{label}: {key!r} has dtype {got}, expected "
                              f"{'a string' if dtype == 'str' else np.dtype(dtype)}")


def _json(arr, key, label):
    if arr.shape != () or arr.dtype.kind != "U" or arr.dtype.itemsize // 4 > MAX_STRING_CHARS:
        raise CheckpointError(f"{label}: {key!r} is not a JSON string")
    try:
        value = json.loads(str(arr))
    except (ValueError, RecursionError):
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
        size = os.path.getsize(path)
        with zipfile.ZipFile(path) as zf:
            headers = _headers(zf, label, size)
    except FileNotFoundError:
        raise CheckpointError(f"{label}: no such file") from None
    except PermissionError:
        raise CheckpointError(f"{label}: not readable (permission denied)") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise CheckpointError(f"{label}: not a charrnn checkpoint (not a valid .npz: {e})") from None
    try:
        with np.load(path, allow_pickle=False) as z:
            return _load_checked(z, headers, label)
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile,
            NotImplementedError, OverflowError, RecursionError) as e:
        raise CheckpointError(f"{label}: corrupt checkpoint ({type(e).__name__}: {e})") from None


def _load_checked(z, headers, label) -> Checkpoint:
    _expect(headers, "format_version", (), np.int64, label)
    version = int(z["format_version"])
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{label}: format version {version}, this charrnn reads "
                              f"versions {', '.join(map(str, READABLE_VERSIONS))}")
    for key in ("config", "train_state", "meta"):
        _expect(headers, key, (), "str", label)
    config = _json(z["config"], "config", label)
    try:
        if version == 1 and isinstance(config.get("model"), dict):
            config["model"] = {**V1_MODEL_FIELDS, **config["model"]}
        mcfg = ModelConfig.from_dict(config["model"])
        tcfg = TrainConfig.from_dict(config["train"])
    except (KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{label}: config is incomplete ({e})") from None
    _check_config(mcfg, tcfg, label)
    expected = {"format_version", "config", "train_state", "meta", "vocab", "state.h", "state.c"}
    expected |= {f"param.{name}" for name, _ in M.param_shapes(mcfg)}
    expected |= {f"optim.{slot}" for slot in OPTIM_SLOTS[tcfg.optimizer]}
    if version >= 2 and tcfg.avg_decay is not None:
        expected.add("average")
    unknown = sorted(set(headers) - expected)
    if unknown:
        raise CheckpointError(f"{label}: corrupt checkpoint (unknown member {unknown[0]!r})")
    V, L, H = mcfg.vocab_size, mcfg.layers, mcfg.hidden
    _expect(headers, "vocab", (V,), np.int32, label)
    vocab = np.asarray(z["vocab"], dtype=np.int64)
    if V > 0 and (vocab.min() < 0 or vocab.max() > 0x10FFFF or np.any(np.diff(vocab) <= 0)):
        raise CheckpointError(f"{label}: vocabulary is not a sorted set of Unicode code points")
    if np.any((vocab >= 0xD800) & (vocab <= 0xDFFF)):
        raise CheckpointError(f"{label}: vocabulary holds surrogate code points, which are not "
                              f"characters")
    dtype = np.dtype(tcfg.dtype)
    for name, shape in M.param_shapes(mcfg):
        _expect(headers, f"param.{name}", shape, dtype, label)
    flat = np.empty(M.num_params(mcfg), dtype)
    views = M.views(flat, mcfg)
    for name in views:
        views[name][:] = z[f"param.{name}"]
    _bounded(flat, MAX_WEIGHT, "weights", label)
    optim = {}
    for slot in OPTIM_SLOTS[tcfg.optimizer]:
        _expect(headers, f"optim.{slot}", (flat.size,), dtype, label)
        optim[slot] = np.ascontiguousarray(z[f"optim.{slot}"])
        _bounded(optim[slot], MAX_OPTIM[slot], "optimizer state", label)
        if slot != "m" and optim[slot].size and optim[slot].min() < 0:
            raise CheckpointError(f"{label}: optimizer state {slot!r} has negative entries "
                                  f"(it accumulates squares)")
    avg = None
    if "average" in expected:
        _expect(headers, "average", (flat.size,), dtype, label)
        avg = np.ascontiguousarray(z["average"])
        _bounded(avg, MAX_WEIGHT, "averaged weights", label)
    _expect(headers, "state.h", None, dtype, label)
    sh = headers["state.h"][0]
    if len(sh) != 3 or sh[0] != L or sh[2] != H or not 1 <= sh[1] <= 100_000:
        raise CheckpointError(f"{label}: 'state.h' has shape {sh}, expected ({L}, B, {H})")
    if sh[1] != tcfg.batch_size:
        raise CheckpointError(f"{label}: 'state.h' holds {sh[1]} streams, the config says "
                              f"--batch-size {tcfg.batch_size}")
    _expect(headers, "state.c", sh, dtype, label)
    state_h = np.ascontiguousarray(z["state.h"])
    state_c = np.ascontiguousarray(z["state.c"])
    _bounded(state_h, 1.0, "hidden state", label)
    _bounded(state_c, MAX_WEIGHT, "cell state", label)
    train_state = _check_train_state(_json(z["train_state"], "train_state", label), label)
    meta = _json(z["meta"], "meta", label)
    if not (isinstance(meta.get("corpus", []), list) and all(isinstance(c, str) for c in meta.get("corpus", []))):
        raise CheckpointError(f"{label}: meta has an invalid 'corpus' (a list of file names)")
    n = meta.get("corpus_chars")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise CheckpointError(f"{label}: meta has an invalid 'corpus_chars' ({n!r})")
    return Checkpoint(mcfg, tcfg, Vocab(vocab), flat, optim, state_h, state_c, train_state, meta,
                      avg=avg, path=label)


def _bounded(a, limit, what, label):
    """Finite, and no entry beyond +-limit: a checkpoint that loads must not overflow
    to NaN on its first step."""
    if not np.isfinite(a).all():
        raise CheckpointError(f"{label}: {what} contain NaN or infinity")
    if a.size and np.abs(a).max() > limit:
        raise CheckpointError(f"{label}: {what} hold values beyond +-{limit:g}, which no "
                              f"training produces")


def _check_train_state(ts, label):
    """Counters in range, a well-formed random generator state; returns ts."""
    def bad(what):
        raise CheckpointError(f"{label}: train_state has {what}")

    def count(key, hi=MAX_COUNT, required=True):
        v = ts.get(key)
        if v is None and not required:
            return
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi:
            bad(f"no valid {key!r} ({v!r})")

    count("step")
    count("pos")
    count("chars", hi=MAX_COUNT * 1_000_000, required=False)
    count("since_best", required=False)
    count("avg_steps", required=False)
    v = ts.get("smooth")
    if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)
                          or not 0 <= v < 1e6):
        bad(f"an invalid 'smooth' ({v!r})")
    for key in ("elapsed", "epoch"):
        v = ts.get(key, 0.0)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0 <= v < 1e12):
            bad(f"an invalid {key!r} ({v!r})")
    for key in ("best_val", "last_val"):
        v = ts.get(key)
        if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
            bad(f"an invalid {key!r} ({v!r})")
    h = ts.get("horizon")
    if h is not None:
        ok = isinstance(h, dict) and len(h) == 1 and (
            ("steps" in h and isinstance(h["steps"], int) and 0 <= h["steps"] <= MAX_COUNT) or
            ("seconds" in h and isinstance(h["seconds"], (int, float)) and 0 <= h["seconds"] < 1e9))
        if not ok:
            bad(f"an invalid 'horizon' ({h!r})")
    try:
        rng = np.random.default_rng()
        rng.bit_generator.state = ts["rng"]
    except Exception:  # noqa: BLE001 - NumPy raises several kinds for a bad state
        bad("no valid random generator state")
    return ts


def _check_config(m: ModelConfig, t: TrainConfig, label):
    problems = []
    if m.model not in CELLS:
        problems.append(f"unknown cell {m.model!r}")
    for name, value, lo, hi in [("hidden", m.hidden, 1, 65536), ("layers", m.layers, 1, 64),
                                ("vocab_size", m.vocab_size, 1, 1 << 21)]:
        if not isinstance(value, int) or not lo <= value <= hi:
            problems.append(f"{name} {value!r} out of range")
    for name, value in (("dropout", m.dropout), ("wdrop", m.wdrop)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            problems.append(f"{name} {value!r} out of range")
    if m.dropout_kind not in DROPOUT_KINDS:
        problems.append(f"unknown dropout kind {m.dropout_kind!r}")
    d = t.avg_decay
    if d is not None and (not isinstance(d, float) or not 0 < d < 1):
        problems.append(f"avg_decay {d!r} out of range")
    if t.optimizer not in OPTIMIZERS:
        problems.append(f"unknown optimizer {t.optimizer!r}")
    if t.dtype not in ("float32", "float64"):
        problems.append(f"unknown dtype {t.dtype!r}")
    if t.schedule not in SCHEDULES:
        problems.append(f"unknown schedule {t.schedule!r}")
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    for name, value, lo, hi in [("batch_size", t.batch_size, 1, 100_000), ("seq_len", t.seq_len, 1, 100_000),
                                ("eval_every", t.eval_every, 0, MAX_COUNT)]:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            problems.append(f"{name} {value!r} out of range")
    for name, value, lo, hi in [("lr", t.lr, 0, 1e3), ("min_lr", t.min_lr, 0, 1e3), ("clip", t.clip, 0, 1e9),
                                ("warmup", t.warmup, 0, MAX_COUNT), ("val_frac", t.val_frac, 0, 1)]:
        if not num(value) or not lo <= value <= hi or (name == "lr" and value == 0):
            problems.append(f"{name} {value!r} out of range")
    vmax = getattr(t, "val_max_chars", None)
    if vmax is not None and (not isinstance(vmax, int) or isinstance(vmax, bool) or vmax < 1):
        problems.append(f"val_max_chars {vmax!r} out of range")
    if t.patience is not None and (not isinstance(t.patience, int) or t.patience < 1):
        problems.append(f"patience {t.patience!r} out of range")
    # the bounds a resumed run continues to
    if t.steps is not None and (not isinstance(t.steps, int) or isinstance(t.steps, bool)
                                or not 0 <= t.steps <= MAX_COUNT):
        problems.append(f"steps {t.steps!r} out of range")
    for name, value in (("epochs", t.epochs), ("time", t.time)):
        if value is not None and (not num(value) or not 0 < value < 1e12):
            problems.append(f"{name} {value!r} out of range")
    if problems:
        raise CheckpointError(f"{label}: bad config: {'; '.join(problems)}")
    if M.num_params(m) * 4 > MAX_ARRAY_BYTES:
        raise CheckpointError(f"{label}: config describes an implausibly large model")
