"""Near-duplicate photos at ingestion: perceptual hashes of the decoded pixels and grouping.

A photo is hashed from the pixels that ingestion's check already decoded (no second decode):

- ``phash``: a 255-bit DCT hash. The photo is reduced to 64x64 grey (green channel; every k-th pixel
  down to 256 px a side, then box filters), its 2-D DCT taken, and the 16x16 lowest frequencies
  less the DC term are compared with their median. The box resize to 64x64 and the DCT are done
  as two small matrix products (cached per image size), so no thumbnail is made.
- the hash of the left-right mirror comes for free from the same DCT: mirroring flips the sign of
  every coefficient of odd horizontal frequency, so only those bits change (no second DCT).

Two photos are near-duplicates when the Hamming distance of their hashes, or of one's hash and
the other's mirror hash, is at most ``threshold`` bits (of 255). Pairs are grouped with
union-find, so a group of copies lands in one split. Thresholds were measured on generated
copies of ../shared photos (see tests/pipelines/audit and the report of issue 17).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

SIDE = 64      # grey thumbnail the DCT is taken of
LOW = 16       # LOW x LOW lowest frequencies make the hash
N_BITS = LOW * LOW - 1  # the DC term is left out
N_WORDS = (N_BITS + 63) // 64


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_D = _dct_matrix(SIDE)[:LOW]                    # (LOW, SIDE): only the rows we keep
# mirroring x -> SIDE-1-x multiplies horizontal frequency v by (-1)^v
_MIRROR_SIGN = np.tile((-1.0) ** np.arange(LOW), (LOW, 1)).reshape(-1)[1:]


#: the centre hash covers the photo less this fraction on each side (a cropped copy's whole frame)
CENTRE_MARGIN = 0.06


#: a photo of more than twice (SUBSAMPLE * SIDE)^2 pixels is first subsampled (nearest pixel) to at
#: most SUBSAMPLE * SIDE a side (for a smaller one, the subsampling costs more than it saves)
SUBSAMPLE = 4

#: a photo whose reduced grey image spans fewer grey levels than this is plain (one colour): its
#: hash would be noise, equal to every other plain photo's, so it is not hashed
PLAIN_RANGE = 8


def _box_matrix(n_in: int, lo: float, hi: float) -> np.ndarray:
    """(SIDE, n_in) weights of a box filter from the input span [lo, hi) to SIDE samples: each
    output sample averages the input pixels its interval covers, by overlap (what PIL's BOX
    resize computes, in floating point)."""
    edges = lo + (hi - lo) * np.arange(SIDE + 1) / SIDE
    left, right = edges[:-1, None], edges[1:, None]
    k = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(right, k + 1) - np.maximum(left, k), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


@lru_cache(maxsize=1024)
def _axis(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The low-frequency DCT of the SIDE-sample box resize of one side of ``n`` pixels, for the
    whole side and for its centre (``_D @ box``, (LOW, n) each): the 2-D DCT of the thumbnail of an
    (h, w) image is then ``_axis(h)[0] @ image @ _axis(w)[0].T``, with no thumbnail made."""
    margin = CENTRE_MARGIN * n
    return _D @ _box_matrix(n, 0, n), _D @ _box_matrix(n, margin, n - margin)


@lru_cache(maxsize=1024)
def _rows(n: int) -> np.ndarray:
    """:func:`_axis` of the rows, whole over centre in one (2 LOW, n) matrix (one product)."""
    return np.vstack(_axis(n))


def _low_frequencies(image: Image.Image | np.ndarray) -> np.ndarray | None:
    """(2, LOW, LOW) lowest DCT frequencies of the SIDE x SIDE grey thumbnails of the whole photo
    and of its centre (None for a plain photo)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, np.uint8))
    # The green channel stands in for luminance (a copy, no arithmetic: 40% cheaper than "L");
    # reduce() is a cheap integer box filter (one pass over the full photo, the only one); the box
    # resize of the small image to SIDE x SIDE and the DCT are then two small matrix products.
    if image.width * image.height > 2 * (SUBSAMPLE * SIDE) ** 2:
        # every k-th pixel first (reads 1/k^2 of the photo): the box filter below then averages
        # SUBSAMPLE x SUBSAMPLE of those per sample, enough against aliasing at 16 frequencies of 64
        image = image.resize((min(image.width, SUBSAMPLE * SIDE), min(image.height, SUBSAMPLE * SIDE)),
                             Image.NEAREST)
    grey = image.getchannel(1) if image.mode == "RGB" else image.convert("L")
    factor = (max(1, grey.width // SIDE), max(1, grey.height // SIDE))
    if factor != (1, 1):
        grey = grey.reduce(factor)
    lo, hi = grey.getextrema()
    if hi - lo < PLAIN_RANGE:
        return None
    w, h = grey.size
    rows, cols = _rows(h), _axis(w)
    both = rows @ np.frombuffer(grey.tobytes(), np.uint8).reshape(h, w)   # (2 LOW, w): whole, centre
    return np.stack([both[:LOW] @ cols[0].T, both[LOW:] @ cols[1].T])


@dataclass(frozen=True)
class PhotoHash:
    """The 255-bit DCT hashes of a photo, of its mirror and of its centre (``N_WORDS`` uint64
    words each)."""

    phash: np.ndarray
    mirror: np.ndarray
    centre: np.ndarray

    def hex(self) -> str:
        """The three hashes as one hex string (for the manifest or a cache)."""
        return np.concatenate([self.phash, self.mirror, self.centre]).astype(">u8").tobytes().hex()


def photo_hash(image: Image.Image | np.ndarray) -> PhotoHash | None:
    """Hashes of decoded pixels (a PIL image or an (H, W, 3) uint8 array); None for a plain
    photo (one colour, see PLAIN_RANGE), which has nothing to match on."""
    low = _low_frequencies(image)
    if low is None:
        return None
    coeffs = low.reshape(2, -1)[:, 1:]  # LOW*LOW - 1 coefficients each, DC dropped
    rows = np.stack([coeffs[0], coeffs[0] * _MIRROR_SIGN, coeffs[1]])
    median = np.partition(rows, N_BITS // 2, axis=1)[:, N_BITS // 2]  # N_BITS is odd: the middle value
    bits = np.zeros((3, N_WORDS * 64), bool)
    bits[:, :N_BITS] = rows > median[:, None]
    words = np.packbits(bits, axis=1, bitorder="little").view("<u8").astype(np.uint64)
    return PhotoHash(words[0], words[1], words[2])


def stack(hashes: list[PhotoHash]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, N_WORDS) arrays of the hashes, the mirror hashes and the centre hashes."""
    if not hashes:
        z = np.zeros((0, N_WORDS), np.uint64)
        return z, z, z
    return (np.stack([h.phash for h in hashes]), np.stack([h.mirror for h in hashes]),
            np.stack([h.centre for h in hashes]))


def from_hex(value: str) -> PhotoHash:
    """A :class:`PhotoHash` from :meth:`PhotoHash.hex`."""
    words = np.frombuffer(bytes.fromhex(value), dtype=">u8").astype(np.uint64)
    return PhotoHash(*words.reshape(3, N_WORDS))


def _hamming8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) uint8 Hamming distances (at most N_BITS = 255 bits, so uint8 holds them)."""
    out = np.bitwise_count(a[:, None, 0] ^ b[None, :, 0])
    for w in range(1, a.shape[1]):
        out += np.bitwise_count(a[:, None, w] ^ b[None, :, w])
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between rows of ``a`` (n, W) and ``b`` (m, W): an (n, m) int array."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]), np.int32)
    return _hamming8(a, b).astype(np.int32)


def _best(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    pa, _, ca = a
    pb, mb, cb = b
    direct = _hamming8(pa, pb)
    flipped = _hamming8(pa, mb)
    cropped = np.minimum(_hamming8(pa, cb), _hamming8(ca, pb))
    rest = np.minimum(direct, cropped)
    return np.minimum(rest, flipped), flipped < rest


def distances(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(n, m) distances between the photos of ``a`` and ``b`` (each a :func:`stack` result) and
    whether the closest reading was the mirror: the least of whole-whole, whole-mirror and
    whole-centre both ways (a copy cropped by about CENTRE_MARGIN a side matches the centre)."""
    if a[0].shape[0] == 0 or b[0].shape[0] == 0:
        return np.zeros((a[0].shape[0], b[0].shape[0]), np.int32), np.zeros((a[0].shape[0], b[0].shape[0]), bool)
    best, mirrored = _best(a, b)
    return best.astype(np.int32), mirrored


def close_pairs(hashes: tuple[np.ndarray, ...], threshold: int, chunk: int = 256,
                workers: int = 1) -> list[tuple[int, int, int, bool]]:
    """Pairs (i, j, distance, mirrored) with i < j within ``threshold`` bits (see :func:`distances`).
    Each block of rows is compared with the rows after it only; numpy releases the GIL, so
    ``workers`` threads share the blocks."""
    n = hashes[0].shape[0]

    def block(start: int) -> list[tuple[int, int, int, bool]]:
        a = tuple(h[start:start + chunk] for h in hashes)
        b = tuple(h[start:] for h in hashes)
        best, mirrored = _best(a, b)
        rows, cols = np.nonzero(best <= threshold)
        keep = cols > rows  # j > i: each pair once, not a photo with itself
        return [(start + int(r), start + int(c), int(best[r, c]), bool(mirrored[r, c]))
                for r, c in zip(rows[keep], cols[keep])]

    starts = range(0, n, chunk)
    if workers > 1 and n > chunk:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(block, starts))
    else:
        parts = [block(s) for s in starts]
    return [p for part in parts for p in part]


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:  # the smaller index stays the root: the group's representative is its first member
            self.parent[max(a, b)] = min(a, b)


def groups(n: int, pairs: list[tuple[int, int, int, bool]]) -> np.ndarray:
    """Group index of each of ``n`` items (the smallest member index) from close pairs."""
    uf = UnionFind(n)
    for i, j, *_ in pairs:
        uf.union(i, j)
    return np.asarray([uf.find(i) for i in range(n)], dtype=np.int64)


def best_matches(n: int, pairs: list[tuple[int, int, int, bool]]) -> dict[int, tuple[int, int, bool]]:
    """For each item in at least one pair: (closest partner, distance, mirrored)."""
    best: dict[int, tuple[int, int, bool]] = {}
    for i, j, d, m in pairs:
        for a, b in ((i, j), (j, i)):
            if a not in best or d < best[a][1]:
                best[a] = (b, d, m)
    return best


def hash_file(path: str, *, min_side: int = 1, max_pixels: int | None = None) -> PhotoHash | None:
    """Decode one file with the project's decoder and hash it (tests, tools; ingestion hashes the
    pixels its check already decoded)."""
    from transfer_lab.data.imaging import load_rgb

    return photo_hash(load_rgb(path, min_side=min_side))


#: Hamming threshold (bits of 255), measured on ../shared (issue 17): generated copies are at
#: most 40 bits from their originals (JPEG q60 <= 6, shrunk to 60% <= 34, cropped 6% a side <= 40,
#: brightened 25% <= 28, mirrored <= 36, shrunk with less contrast <= 32; 900 copies of 150
#: photos), while 2,160,081 pairs of different photos had 2 pairs (true duplicates of the source
#: sets) under 80 and 115 under 90. Re-measured with the subsampled, matrix-product thumbnail:
#: copies <= 28 bits (480 copies of 80 photos), 1,245,831 pairs of 1,579 photos: 2 under 80
#: (the same true duplicates), the next at 82.
DEFAULT_THRESHOLD = 56


def near_duplicate_table(paths: list[str], hashes: list[PhotoHash], threshold: int = DEFAULT_THRESHOLD):
    """One row per photo in a group of near-duplicates: ``path, group, match, distance, kind``
    (group: the group's first path; match: the closest other photo; kind ``hash`` or
    ``hash_mirror``). Empty when nothing is close."""
    import pandas as pd

    stacked = stack(hashes)
    pairs = close_pairs(stacked, threshold)
    group = groups(len(paths), pairs)
    best = best_matches(len(paths), pairs)
    rows = [
        (paths[i], paths[group[i]], paths[j], d, "hash_mirror" if m else "hash")
        for i, (j, d, m) in sorted(best.items())
    ]
    return pd.DataFrame(rows, columns=["path", "group", "match", "distance", "kind"])


@dataclass(frozen=True)
class Groups:
    """Near-duplicate groups of ``n`` photos: ``rep[i]`` the index of the group's representative
    (``i`` itself for a photo with no near-duplicate) and, for each photo in a group, its closest
    fellow member within the threshold: ``best[i] = (j, distance, mirrored)``."""

    rep: np.ndarray
    best: dict[int, tuple[int, int, bool]]

    def members(self) -> list[int]:
        """Indices of the photos in a group of two or more, in order."""
        return sorted(self.best)


def find_groups(hashes: list[PhotoHash | None], threshold: int = DEFAULT_THRESHOLD,
                sizes: list[int] | np.ndarray | None = None, workers: int = 1) -> Groups:
    """Group photos whose hashes are within ``threshold`` bits (any reading, see :func:`distances`;
    chains join: union-find). A group's representative is its largest photo (``sizes``, e.g.
    pixels), the first one on a tie. A photo without a hash (None: plain) is in no group."""
    n = len(hashes)
    have = [i for i, h in enumerate(hashes) if h is not None]
    local = close_pairs(stack([hashes[i] for i in have]), threshold, workers=workers) if have else []
    pairs = [(have[a], have[b], d, m) for a, b, d, m in local]
    root = groups(n, pairs)
    size = np.zeros(n) if sizes is None else np.asarray(sizes, dtype=np.float64)
    rep = np.arange(n)
    chosen: dict[int, int] = {}
    for i in range(n):  # i ascending: on a tie the first member stays
        r = int(root[i])
        if r not in chosen or size[i] > size[chosen[r]]:
            chosen[r] = i
    for i in range(n):
        rep[i] = chosen[int(root[i])]
    return Groups(rep=rep, best=best_matches(n, pairs))
