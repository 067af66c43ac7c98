"""Corpus reading and encoding, the train/validation split, and TBPTT batches.

A corpus is read twice as a stream of byte chunks: once to collect the set of
characters, once to encode them into a preallocated array of the smallest id
type, so memory stays near the size of that array (1 byte a character for up to
256 distinct characters), never a Python string of the whole text. Line ends
are normalised: CRLF becomes LF, and a byte-order mark (U+FEFF) at the start of
an input is dropped: it marks the encoding and is never a character of the text.
Standard input ("-"), a FIFO or a device is copied to a temporary file as the
first pass reads it, and the second pass reads that file.

Inputs that never end: such a stream (not a regular file, so its size is not
known before it is read) is refused beyond `max_stream_bytes` (1 GiB by default,
read in a few seconds; a larger corpus is saved to a file first), and any input
whose first MiB is nothing but NUL bytes (/dev/zero, an empty disk image) is
refused at once: it is not text.
"""
import codecs
import contextlib
import io
import os
import stat
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from charrnn.errors import DataError
from charrnn.vocab import BOM, Vocab, codepoints

CHUNK = 1 << 20  # bytes per read: ~20 MB of temporaries while encoding
MAX_CHARS = 4_000_000_000   # default bound: far above any real corpus
# bound on an input read as a stream (stdin, a FIFO, a device): an endless one stops here,
# within 10 s on 2 busy cores (the first pass reads ~300 MB/s of ASCII), while a piped
# corpus of a few hundred MB still trains
MAX_STREAM_BYTES = 1 << 30


class CorpusError(DataError):
    """A corpus that cannot be used; the message names the file and the problem."""


@dataclass
class Corpus:
    ids: np.ndarray       # (N,) smallest unsigned int type; a read-only memmap when cached
    vocab: Vocab
    names: list[str]
    nbytes: int
    fingerprint: str | None = None   # runs.fingerprint(ids), when already known
    cache: str | None = None         # "hit" or "stored" when the corpus cache was used


def fingerprint(ids) -> str:
    """A cheap identity of an encoded corpus: its length and CRC-32 (of the ids' bytes)."""
    import zlib
    return f"{len(ids)}:{zlib.crc32(memoryview(ids).cast('B')):08x}"


def _reads(f):
    while chunk := f.read(CHUNK):
        yield chunk


def display_name(path) -> str:
    """How messages name an input: "<stdin>" for "-"."""
    return "<stdin>" if path == "-" else str(path)


def is_stream(path) -> bool:
    """stdin, a FIFO, a device: an input read once, whose length is not known before."""
    return path == "-" or not stat.S_ISREG(os.stat(path).st_mode)


def _byte_chunks(path, stdin_spool, max_stream_bytes=MAX_STREAM_BYTES):
    """Byte chunks of a file; stdin, a FIFO or a device can be read only once, so the
    first of two passes copies it aside (into stdin_spool[path]) for the second, and
    stops with a CorpusError after max_stream_bytes."""
    if not is_stream(path):
        with open(path, "rb") as f:
            yield from _reads(f)
        return
    spool = None if stdin_spool is None else stdin_spool.get(path)
    if spool is not None:               # a later pass reads the copy
        spool.seek(0)
        yield from _reads(spool)
        return
    if stdin_spool is not None:
        try:
            spool = stdin_spool[path] = tempfile.TemporaryFile()
        except OSError:                 # no writable temporary folder: keep it in memory
            spool = stdin_spool[path] = io.BytesIO()
    if path == "-" and sys.stdin is None:
        raise CorpusError("<stdin>: standard input is closed")
    with contextlib.ExitStack() as stack:
        source = sys.stdin.buffer if path == "-" else stack.enter_context(open(path, "rb"))
        total = 0
        for chunk in _reads(source):
            total += len(chunk)
            if total > max_stream_bytes:
                raise CorpusError(
                    f"{display_name(path)}: more than {max_stream_bytes:,} bytes read from a pipe or "
                    f"device; stopped reading (an endless input? save a corpus this large to a "
                    f"file and name the file)")
            if spool is not None:
                try:
                    spool.write(chunk)
                except OSError as e:
                    raise CorpusError(f"{display_name(path)}: cannot keep a copy for the second pass "
                                      f"in {tempfile.gettempdir()} ({e.strerror or e})") from None
            yield chunk


def text_chunks(path, encoding, stdin_spool, max_stream_bytes=MAX_STREAM_BYTES):
    """Decoded text chunks of one file ("-": stdin, spooled into the dict stdin_spool for
    a second pass unless it is None) with CRLF -> LF and a leading byte-order mark
    dropped; CorpusError naming a missing, unreadable or directory path, the byte offset
    of bad input, a stream longer than max_stream_bytes, or a first MiB of NUL bytes."""
    _check_path(path)
    name = display_name(path)
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset, carry_cr, start = 0, False, True
    chunks = _byte_chunks(path, stdin_spool, max_stream_bytes)
    while True:
        try:
            chunk = next(chunks, None)
        except OSError as e:
            raise CorpusError(f"{name}: cannot read ({e.strerror or e})") from None
        final = chunk is None
        if offset == 0 and chunk is not None and len(chunk) >= CHUNK and chunk.count(0) == len(chunk):
            raise CorpusError(f"{name}: its first {len(chunk):,} bytes are all NUL (zero) bytes; "
                              f"not text (/dev/zero, or a disk image?)")
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(chunk or b"", final=final)
        except UnicodeDecodeError as e:
            where = offset - pending + e.start
            raise CorpusError(f"{name}: not valid {encoding} at byte {where} "
                              f"(use --encoding to name the file's encoding)") from None
        offset += len(chunk or b"")
        if start and text:              # the mark, where the encoding leaves one in the text
            start = False
            if text[0] == BOM:
                text = text[1:]
        if carry_cr:
            text = "\r" + text
        carry_cr = text.endswith("\r") and not final
        if carry_cr:
            text = text[:-1]
        yield text.replace("\r\n", "\n") if "\r" in text else text
        if final:
            return


def _check_path(path):
    if path == "-":
        return
    if os.path.isdir(path):
        raise CorpusError(f"{path}: is a directory; name the text files inside it")
    if not os.path.exists(path):
        raise CorpusError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise CorpusError(f"{path}: not readable (permission denied)")


def read_corpus(paths, encoding="utf-8", vocab: Vocab | None = None, max_chars: int = MAX_CHARS,
                cache: bool = False, warn=None, max_stream_bytes: int = MAX_STREAM_BYTES) -> Corpus:
    """Read and encode the files in `paths` ("-" is stdin), concatenated in order.

    With `vocab` given (resuming, evaluating) characters must belong to it;
    otherwise the vocabulary is the sorted set of characters read.
    max_chars bounds the whole text; max_stream_bytes each input that is not a regular
    file (stdin, a FIFO, a device: an endless one stops there).
    cache: use the corpus cache (`corpus_cache`) for regular files, and fill it when the
    vocabulary is the corpus's own (no `vocab` given); a cache that cannot be written
    costs one `warn(message)` and an in-memory encoding.
    """
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}") from None
    if cache:
        from charrnn import corpus_cache as K
        cache = K.cacheable(paths)
        hit = K.lookup(paths, encoding) if cache else None
        if hit is not None:
            ids, cps, meta = hit
            if len(ids) > max_chars:
                raise CorpusError(f"{', '.join(paths)}: more than {max_chars:,} characters "
                                  f"(raise --max-chars for a corpus this large)")
            if vocab is None or np.array_equal(vocab.codepoints, cps):
                return Corpus(ids=ids, vocab=vocab or Vocab(cps), names=list(paths),
                              nbytes=meta["bytes"], fingerprint=meta["fingerprint"], cache="hit")
    stdin_spool: dict = {}
    try:
        # stored only under the corpus's own vocabulary, never a checkpoint's (a superset
        # would then become the vocabulary of every later fresh run on these files)
        return _encode(paths, encoding, vocab, stdin_spool, max_chars, cache and vocab is None, warn,
                       max_stream_bytes)
    finally:
        for spool in stdin_spool.values():
            spool.close()


class _Seen:
    """The set of characters read: a mark per code point. An ASCII chunk costs one
    bytes.translate that deletes the characters already seen (0.3 ms/MB, measured),
    instead of a scatter of 1.6 ms/MB: the first pass reads ASCII at ~300 MB/s."""

    def __init__(self):
        self.marks = np.zeros(0x110000, dtype=bool)     # (0x110000,) one per code point
        self.ascii = b""                                # the ASCII characters seen so far

    def add(self, text: str):
        if text.isascii():
            rest = text.encode("ascii").translate(None, self.ascii)
            if rest:
                self.marks[np.frombuffer(rest, np.uint8)] = True
                self.ascii = np.flatnonzero(self.marks[:128]).astype(np.uint8).tobytes()
        else:
            self.marks[codepoints(text)] = True


def _encode(paths, encoding, vocab, stdin_spool, max_chars=MAX_CHARS, cache=False, warn=None,
            max_stream_bytes=MAX_STREAM_BYTES) -> Corpus:
    n, nbytes = 0, 0
    seen = _Seen()
    for path in paths:
        for text in text_chunks(path, encoding, stdin_spool, max_stream_bytes):
            seen.add(text)
            n += len(text)
            if n > max_chars:
                raise CorpusError(f"{display_name(path)}: more than {max_chars:,} characters; stopped "
                                  f"reading (an endless input? raise --max-chars for a corpus this large)")
        nbytes += stdin_spool[path].tell() if path in stdin_spool else os.path.getsize(path)
    if n == 0:
        raise CorpusError(f"{', '.join(map(display_name, paths))}: the corpus is empty")
    found = np.flatnonzero(seen.marks).astype(np.int32)
    if vocab is None:
        vocab = Vocab(found)
    else:
        unknown = found[~np.isin(found, vocab.codepoints)]
        if len(unknown):
            sample = "".join(chr(c) for c in unknown[:10].tolist())
            raise CorpusError(f"{', '.join(map(display_name, paths))}: {len(unknown)} character(s) not in the "
                              f"model's vocabulary, e.g. {sample!r}")
    if cache:
        stored = _encode_to_cache(paths, encoding, vocab, n, nbytes, warn)
        if stored is not None:
            return stored
    ids = np.empty(n, dtype=vocab.id_dtype)
    k = 0
    for path in paths:
        for text in text_chunks(path, encoding, stdin_spool):
            codes = vocab.encode_known(text)
            if k + len(codes) > n:      # a file grew between the passes
                raise CorpusError(f"{display_name(path)}: changed while being read; try again")
            ids[k:k + len(codes)] = codes
            k += len(codes)
    if k != n:
        raise CorpusError(f"{', '.join(map(display_name, paths))}: changed while being read; try again")
    return Corpus(ids=ids, vocab=vocab, names=list(paths), nbytes=nbytes)


def _encode_to_cache(paths, encoding, vocab, n, nbytes, warn) -> Corpus | None:
    """The second pass written chunk by chunk into a new cache entry, then mapped;
    None (after one warning) if the cache cannot be written."""
    import zlib

    from charrnn import corpus_cache as K
    writer = None
    try:
        writer = K.Writer(paths, encoding)
        crc, k = 0, 0
        for path in paths:
            for text in text_chunks(path, encoding, None):
                codes = vocab.encode_known(text)
                writer.write(codes)
                crc = zlib.crc32(memoryview(codes).cast("B"), crc)
                k += len(codes)
        if k != n:      # a file changed between the passes
            raise CorpusError(f"{', '.join(paths)}: changed while being read; try again")
        ids = writer.commit(vocab, n, nbytes, f"{n}:{crc:08x}")
    except OSError as e:
        if writer is not None:
            writer.abort()
        if warn is not None:
            warn(f"corpus cache {K.folder()}: cannot write ({e.strerror or e}); "
                 f"encoding in memory")
        return None
    return Corpus(ids=ids, vocab=vocab, names=list(paths), nbytes=nbytes,
                  fingerprint=f"{n}:{crc:08x}", cache="stored")


def split(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): the first int((1 - val_frac) N) ids, then the rest (views)."""
    n_train = int((1.0 - val_frac) * len(ids))
    return ids[:n_train], ids[n_train:]


class Batches:
    """B contiguous streams over the training ids, T steps per batch.

    Step k feeds [pos, pos + T) of every stream and predicts [pos + 1, pos + T + 1);
    when a stream has fewer than T + 1 ids left, all wrap to 0 (`next` says so,
    and the caller resets the hidden state).
    """

    def __init__(self, ids: np.ndarray, batch: int, seq: int, pos: int = 0):
        self.per_stream = len(ids) // batch
        if self.per_stream < seq + 1:
            raise CorpusError(f"the training text ({len(ids)} characters) is too short for "
                              f"--batch-size {batch} x --seq-len {seq}: it needs at least "
                              f"{batch * (seq + 1)}; lower them or add text")
        self.streams = ids[:batch * self.per_stream].reshape(batch, self.per_stream)
        self.seq, self.pos = seq, pos
        self.x = np.empty((seq, batch), np.int32)
        self.y = np.empty((seq, batch), np.int32)
        self._behind = _Release(self.streams)

    def next(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(x (T, B) int32, y (T, B) int32, wrapped); x, y are reused buffers."""
        wrapped = self.pos + self.seq + 1 > self.per_stream
        if wrapped:
            self.pos = 0
        p, t = self.pos, self.seq
        self.x[:] = self.streams[:, p:p + t].T
        self.y[:] = self.streams[:, p + 1:p + t + 1].T
        self.pos += t
        self._behind(self.pos)
        return self.x, self.y, wrapped


class _Release:
    """For ids memory-mapped from the corpus cache: gives back the pages every stream
    has read past, every RELEASE ids, so resident memory stays near B x RELEASE
    instead of growing to the whole corpus over an epoch (the pages are clean file
    pages, read again from the file if a later epoch needs them)."""
    RELEASE = 1 << 18

    def __init__(self, streams: np.ndarray):
        import mmap
        root = streams
        while isinstance(root.base, np.ndarray):
            root = root.base
        self.mm = getattr(root, "_mmap", None) if isinstance(root, np.memmap) else None
        if self.mm is None or not hasattr(self.mm, "madvise"):
            self.mm = None
            return
        self.page = mmap.PAGESIZE
        start = root.ctypes.data
        # byte offset of each stream's first id within the mapping, and of the step between ids
        self.offsets = [streams[s].ctypes.data - start for s in range(streams.shape[0])]
        self.itemsize = streams.itemsize
        self.done = 0       # ids per stream released so far

    def __call__(self, pos):
        if self.mm is None:
            return
        if pos < self.done:                 # wrapped to the start of the streams
            self.done = 0
        if pos - self.done < self.RELEASE:
            return
        import mmap
        for off in self.offsets:
            lo = (off + self.done * self.itemsize) // self.page * self.page
            hi = (off + pos * self.itemsize) // self.page * self.page - self.page
            if hi > lo:
                self.mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        self.done = pos


def eval_streams(ids: np.ndarray, max_streams: int = 32, min_len: int = 64) -> np.ndarray:
    """(E, N) contiguous streams covering `ids` for evaluation; E is at most
    max_streams and each stream has at least min_len ids where possible."""
    E = max(1, min(max_streams, len(ids) // min_len))
    per = len(ids) // E
    return ids[:E * per].reshape(E, per)
