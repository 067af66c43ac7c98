"""Vocabulary: the sorted set of Unicode characters <-> integer ids."""
import numpy as np


class Vocab:
    """Sorted characters; id i is the i-th character. `codepoints` is (V,) int32."""

    def __init__(self, codepoints):
        self.codepoints = np.asarray(codepoints, dtype=np.int32)
        self.chars = np.array([chr(c) for c in self.codepoints.tolist()], dtype=object)

    @classmethod
    def from_chars(cls, chars) -> "Vocab":
        return cls(sorted(ord(c) for c in set(chars)))

    def __len__(self) -> int:
        return len(self.codepoints)

    @property
    def id_dtype(self):
        """The smallest unsigned type that holds every id: the corpus stays compact."""
        return np.uint8 if len(self) <= 256 else np.uint16 if len(self) <= 65536 else np.int32

    def lookup(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids intp, known bool) for every character of text; unknown ids are 0."""
        cps = codepoints(text)
        pos = np.searchsorted(self.codepoints, cps)
        np.minimum(pos, len(self) - 1, out=pos)
        known = self.codepoints[pos] == cps
        pos[~known] = 0
        return pos, known

    def encode_known(self, text: str) -> np.ndarray:
        """ids (id_dtype) of a text whose characters are all in the vocabulary, through a
        table over every code point (4.4 MB, built once): the corpus encoder's fast path,
        about 5x `lookup` on 1 MB chunks."""
        if getattr(self, "_table", None) is None:
            self._table = np.zeros(0x110000, dtype=self.id_dtype)
            self._table[self.codepoints] = np.arange(len(self), dtype=self.id_dtype)
        return self._table[codepoints(text)]

    def index(self, ch: str) -> int:
        """The id of one character, or -1 if it is not in the vocabulary."""
        ids, known = self.lookup(ch)
        return int(ids[0]) if known[0] else -1

    def missing(self, chars) -> list[str]:
        """The characters of `chars` (any iterable) not in the vocabulary, sorted."""
        return sorted(set(chars) - set(self.chars.tolist()))

    def encode(self, text: str) -> np.ndarray:
        """ids for text; raises KeyError naming the first character not in the vocabulary."""
        ids, known = self.lookup(text)
        if not known.all():
            bad = text[int(np.argmin(known))]
            raise KeyError(bad)
        return ids.astype(self.id_dtype)

    def decode(self, ids) -> str:
        return "".join(self.chars[np.asarray(ids, dtype=np.int64)].tolist())

    def preview(self, n: int = 80) -> str:
        s = "".join(self.chars[:n].tolist())
        return repr(s) + (f" ... (+{len(self) - n})" if len(self) > n else "")


BOM = "\ufeff"     # a byte-order mark: at the start of a text it marks the encoding


def strip_bom(text: str) -> str:
    """`text` without a leading byte-order mark (U+FEFF), which an editor or a file read
    with `$(cat FILE)` leaves there; never a character of the text. Elsewhere in a text
    U+FEFF is a zero-width no-break space, and stays."""
    return text[1:] if text.startswith(BOM) else text


def codepoints(text: str) -> np.ndarray:
    """(len(text),) int32 code points of a string (lone surrogates included)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.int32)

