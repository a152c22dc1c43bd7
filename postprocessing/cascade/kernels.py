"""numba hot loops of Cascade: block parities, parity-tree bookkeeping and the batched binary search.

Every block of every pass is the root of an implicit binary tree (heap numbering: root 1, children
2v and 2v+1; a node's left child holds the first ceil(len/2) positions). Bob keeps one int8 per
tree node: 0 unknown, 1 known and Alice's parity equals his, 2 known and they differ, 3 asked and
awaiting Alice's answer. A search sits on a node in state 2 and walks down; it asks only for left
children, the right child's state follows from its parent's. Flipping a bit toggles every known
node containing it in every pass, which is the whole cascade effect.

Pass tables are int64 arrays indexed by pass: kind (variants.BLOCK/HALF/BICONF), ksz (block size;
n for HALF/BICONF), nb (blocks), stride (tree slots per block), base (first slot of the pass),
rowi (row of `rows`, packed bits in pass order; HALF/BICONF use row 0, the frame in frame order),
mrow (row of `masks`, subset of HALF/BICONF passes) and prow (row of `perms`/`poss`, -1: identity).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel

Int = int | np.int64
"""A scalar integer: a Python int or one read from an int64 pass table (numba sees int64 either way)."""

BLOCK = 0
HALF = 1
BICONF = 2

UNKNOWN = 0
EVEN = 1
ODD = 2
ASKED = 3

INVALID = 255


@kernel
def node_range(length: Int, v: Int) -> tuple[Int, Int]:
    """[lo, hi) of heap node `v` in a block of `length` positions (lo == hi: no such node)."""
    depth = 0
    t = v
    while t > 1:
        t >>= 1
        depth += 1
    lo: Int = 0
    hi = length
    for shift in range(depth - 1, -1, -1):
        if hi - lo <= 1:
            return lo, lo
        mid = lo + (hi - lo + 1) // 2
        if (v >> shift) & 1:
            lo = mid
        else:
            hi = mid
    return lo, hi


@kernel
def tree_stride(length: Int) -> Int:
    """Tree slots a block of `length` positions needs (heap indices are < the stride)."""
    d = 0
    while (1 << d) < length:
        d += 1
    return 1 << (d + 1)


_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


@kernel
def word_parity(x: np.uint64) -> np.int64:
    """Parity of the set bits of one 64-bit word."""
    x ^= x >> np.uint64(32)
    x ^= x >> np.uint64(16)
    x ^= x >> np.uint64(8)
    x ^= x >> np.uint64(4)
    x ^= x >> np.uint64(2)
    x ^= x >> np.uint64(1)
    return np.int64(x & np.uint64(1))


@kernel(inline="always")
def _span(lo: Int, hi: Int) -> tuple[Int, Int, np.uint64, np.uint64]:
    """The first and last word of the bit range [lo, hi) (hi > lo) and the masks of its bits in each."""
    return lo >> 6, (hi - 1) >> 6, _ONES << np.uint64(lo & 63), _ONES >> np.uint64(63 - ((hi - 1) & 63))


@kernel(inline="always")
def _range_words(
    rows: NDArray[np.uint64], r: Int, masks: NDArray[np.uint64], m: Int, flip: Int, lo: Int, hi: Int
) -> np.uint64:
    """XOR of the words of rows[r] over [lo, hi) ANDed with masks[m] (flip = 1: its complement);
    bits outside [lo, hi) cleared. Packed bits per DESIGN §3 (padding bits are zero). 2-D arrays
    and row numbers rather than row views: no array object per call in the hot loops."""
    acc = np.uint64(0)
    if hi <= lo:
        return acc
    fm = _ONES if flip else np.uint64(0)
    w0, w1, first, last = _span(lo, hi)
    if w0 == w1:
        return rows[r, w0] & (masks[m, w0] ^ fm) & first & last
    acc = rows[r, w0] & (masks[m, w0] ^ fm) & first
    for w in range(w0 + 1, w1):
        acc ^= rows[r, w] & (masks[m, w] ^ fm)
    acc ^= rows[r, w1] & (masks[m, w1] ^ fm) & last
    return acc


@kernel(inline="always")
def _plain_parity(rows: NDArray[np.uint64], r: Int, lo: Int, hi: Int) -> np.int64:
    if hi <= lo:
        return np.int64(0)
    w0, w1, first, last = _span(lo, hi)
    if w0 == w1:
        return word_parity(rows[r, w0] & first & last)
    acc = rows[r, w0] & first
    for w in range(w0 + 1, w1):
        acc ^= rows[r, w]
    acc ^= rows[r, w1] & last
    return word_parity(acc)


@kernel
def packed_parity(words: NDArray[np.uint64], lo: Int, hi: Int) -> np.int64:
    """Parity of the packed bits in [lo, hi)."""
    return _plain_parity(words.reshape(1, words.size), 0, lo, hi)


@kernel
def masked_parity(words: NDArray[np.uint64], mask: NDArray[np.uint64], flip: Int, lo: Int, hi: Int) -> np.int64:
    """Parity of the packed bits in [lo, hi) that lie in the subset `mask` (flip = 1: its complement)."""
    return word_parity(_range_words(words.reshape(1, words.size), 0, mask.reshape(1, mask.size), 0, flip, lo, hi))


@kernel
def _popcount(x: np.uint64) -> Int:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@kernel(inline="always")
def _members(masks: NDArray[np.uint64], m: Int, flip: Int, lo: Int, hi: Int) -> Int:
    """Subset members (flip = 1: complement members) among positions [lo, hi), hi - lo <= 64."""
    if hi <= lo:
        return 0
    fm = _ONES if flip else np.uint64(0)
    w0, w1, first, last = _span(lo, hi)
    if w0 == w1:
        return _popcount((masks[m, w0] ^ fm) & first & last)
    return _popcount((masks[m, w0] ^ fm) & first) + _popcount((masks[m, w1] ^ fm) & last)


@kernel
def _root_length(kind: Int, k: Int, b: Int, n: Int) -> Int:
    if kind == BLOCK:
        return min(k, n - b * k)
    return n


@kernel(inline="always")
def _node_parity(
    kind: Int, k: Int, b: Int, lo: Int, hi: Int, rows: NDArray[np.uint64], r: Int, masks: NDArray[np.uint64], m: Int
) -> np.int64:
    if kind == BLOCK:
        off = b * k
        return _plain_parity(rows, r, off + lo, off + hi)
    return word_parity(_range_words(rows, r, masks, m, b, lo, hi))


@kernel
def top_parities(
    kind: Int, k: Int, nb: Int, n: Int, words: NDArray[np.uint64], mask: NDArray[np.uint64]
) -> NDArray[np.uint8]:
    """Parity of every block of a pass of n bits (BLOCK: packed `words` in pass order; HALF/BICONF:
    packed `words` in frame order and the packed subset `mask`)."""
    out = np.zeros(nb, dtype=np.uint8)
    if kind == BLOCK:
        rows = words.reshape(1, words.size)  # one view, not one per block
        for b in range(nb):
            out[b] = _plain_parity(rows, 0, b * k, min(n, (b + 1) * k))
    else:
        a0 = np.uint64(0)
        a1 = np.uint64(0)
        for w in range(words.size):
            x = words[w]
            m = mask[w]
            a0 ^= x & m
            a1 ^= x & ~m
        out[0] = word_parity(a0)
        if nb > 1:
            out[1] = word_parity(a1)
    return out


RANGE_TABLE_SLOTS = 4096
"""BLOCK passes whose trees have at most this many slots may keep a table of their node ranges."""


@kernel
def range_table(length: Int, slots: Int) -> NDArray[np.int32]:
    """`node_range(length, v)` of every heap index v < `slots`, as rows lo and hi (2 x RANGE_TABLE_SLOTS)."""
    out = np.zeros((2, RANGE_TABLE_SLOTS), dtype=np.int32)
    for v in range(1, slots):
        lo, hi = node_range(length, v)
        out[0, v] = lo
        out[1, v] = hi
    return out


@kernel
def answer_questions(
    kind: NDArray[np.int64],
    ksz: NDArray[np.int64],
    nb: NDArray[np.int64],
    stride: NDArray[np.int64],
    rowi: NDArray[np.int64],
    mrow: NDArray[np.int64],
    trow: NDArray[np.int64],
    ranges: NDArray[np.int32],
    n_started: Int,
    n: Int,
    rows: NDArray[np.uint64],
    masks: NDArray[np.uint64],
    q_pass: NDArray[np.uint8],
    q_blk: NDArray[np.uint32],
    q_node: NDArray[np.uint32],
) -> NDArray[np.uint8]:
    """Alice's parities of the asked tree nodes; INVALID where a question names no node. A pass with a
    range table (`trow[j]` >= 0: `ranges[trow[j]]` from `range_table` of its block size) looks up the
    ranges of its full-size blocks instead of walking `node_range` for each question."""
    m = q_pass.size
    out = np.empty(m, dtype=np.uint8)
    for i in range(m):
        j = np.int64(q_pass[i])
        b = np.int64(q_blk[i])
        v = np.int64(q_node[i])
        if j >= n_started or b >= nb[j] or v < 1 or v >= stride[j]:
            out[i] = INVALID
            continue
        kd = kind[j]
        length = _root_length(kd, ksz[j], b, n)
        tr = trow[j]
        if tr >= 0 and length == ksz[j]:
            lo = np.int64(ranges[tr, 0, v])
            hi = np.int64(ranges[tr, 1, v])
        else:
            lo, hi = node_range(length, v)  # type: ignore[assignment]  # numba: both int64
        if hi <= lo:
            out[i] = INVALID
            continue
        mr = mrow[j] if mrow[j] >= 0 else 0
        out[i] = _node_parity(kd, ksz[j], b, lo, hi, rows, rowi[j], masks, mr)
    return out


@kernel
def pack_answers(answers: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], bool]:
    """`answers` packed eight to a byte, least significant bit first (np.packbits(..., bitorder="little")),
    and whether every one is a parity (no INVALID): one call where the responder made three."""
    out = np.zeros((answers.size + 7) // 8, dtype=np.uint8)
    ok = True
    for i in range(answers.size):
        a = answers[i]
        if a > 1:
            ok = False
        out[i >> 3] |= np.uint8((a & 1) << (i & 7))
    return out, ok


@kernel
def set_roots(
    j: Int,
    kind: NDArray[np.int64],
    ksz: NDArray[np.int64],
    nb: NDArray[np.int64],
    stride: NDArray[np.int64],
    base: NDArray[np.int64],
    rowi: NDArray[np.int64],
    mrow: NDArray[np.int64],
    n: Int,
    state: NDArray[np.int8],
    rows: NDArray[np.uint64],
    masks: NDArray[np.uint64],
    alice_top: NDArray[np.uint8],
) -> NDArray[np.int64]:
    """Record Alice's block parities of pass `j`; returns the blocks whose parities differ."""
    mr = mrow[j] if mrow[j] >= 0 else 0
    mine = top_parities(kind[j], ksz[j], nb[j], n, rows[rowi[j]], masks[mr])
    odd = np.empty(nb[j], dtype=np.int64)
    c = 0
    for b in range(nb[j]):
        d = mine[b] ^ alice_top[b]
        state[base[j] + b * stride[j] + 1] = EVEN + d
        if d:
            odd[c] = b
            c += 1
    return odd[:c]


@kernel(inline="always")
def _locate(
    j: Int,
    p: Int,
    kind: NDArray[np.int64],
    ksz: NDArray[np.int64],
    prow: NDArray[np.int64],
    mrow: NDArray[np.int64],
    poss: NDArray[np.int32],
    masks: NDArray[np.uint64],
) -> tuple[Int, Int]:
    """(block, position within the block's range) of frame position p in pass j; block -1: in none."""
    kd = kind[j]
    if kd == BLOCK:
        q = p if prow[j] < 0 else np.int64(poss[prow[j], p])
        b = q // ksz[j]
        return int(b), int(q - b * ksz[j])
    m = int((masks[mrow[j], p >> 6] >> np.uint64(p & 63)) & np.uint64(1))
    if kd == BICONF and m == 0:
        return -1, 0
    return 1 - m, p


# What walking one search down its tree came to (see `_descend`).
_GONE = 0  # the node is no longer of odd parity: a correction elsewhere ended this search
_FOUND = 1  # the node is a single position: the error
_ASK = 2  # its left child's parity is needed and was not asked yet: ask it and wait
_WAIT = 3  # its left child's parity is already asked: wait for the answer


SEARCH_COLUMNS = 6
"""A search is a row (pass, block, node, lo, hi, asked) of an int64 array: [lo, hi) is the node's range in
its block (carried, so no round walks `node_range` again) and `asked` is 1 where the node's left child
was asked this round (its answer comes back in question order)."""


@kernel(inline="always")
def _put(lst: NDArray[np.int64], count: Int, j: Int, b: Int, v: Int, lo: Int, hi: Int, asked: Int) -> None:
    """Write search (j, b, v, lo, hi, asked) as row `count` of a (capacity, 6) list the caller made
    room in. Nothing is returned: reassigning an array on every push would cost atomic reference-count
    updates of numba's runtime in the hot loop, so only growing a full list (`_grown`) reassigns."""
    lst[count, 0] = j
    lst[count, 1] = b
    lst[count, 2] = v
    lst[count, 3] = lo
    lst[count, 4] = hi
    lst[count, 5] = asked


@kernel
def _grown(lst: NDArray[np.int64], count: Int, need: Int) -> NDArray[np.int64]:
    """A copy of the first `count` rows of a search list with room for at least `need` rows (twice
    the capacity, or more): the rare path of a list that is full."""
    grown = np.empty((max(2 * lst.shape[0], need), SEARCH_COLUMNS), dtype=np.int64)
    grown[:count] = lst[:count]
    return grown


@kernel
def root_searches(
    j: Int, odd: NDArray[np.int64], kind: NDArray[np.int64], ksz: NDArray[np.int64], n: Int
) -> NDArray[np.int64]:
    """The searches that start at the roots of pass `j`'s blocks `odd` (those of odd parity difference)."""
    out = np.empty((odd.size, SEARCH_COLUMNS), dtype=np.int64)
    for i in range(odd.size):
        b = odd[i]
        out[i, 0] = j
        out[i, 1] = b
        out[i, 2] = 1
        out[i, 3] = 0
        out[i, 4] = _root_length(kind[j], ksz[j], b, n)
        out[i, 5] = 0
    return out


@kernel(refcounts=False)
def _record_answers(
    kind: NDArray[np.int64],
    ksz: NDArray[np.int64],
    stride: NDArray[np.int64],
    base: NDArray[np.int64],
    rowi: NDArray[np.int64],
    mrow: NDArray[np.int64],
    state: NDArray[np.int8],
    rows: NDArray[np.uint64],
    masks: NDArray[np.uint64],
    searches: NDArray[np.int64],
    answers: NDArray[np.uint8],
) -> Int:
    """Alice's answers, in question order: each asked node's (the left child of a search that asked)
    difference from Bob's own parity, then its right sibling's, which follows from the parent's (Eve
    learns nothing more from it: it is implied). Returns the answers used (-1: fewer than asked).
    Compiled without numba's runtime, like `_walk`: no reference count is updated in its loop."""
    a = 0
    for i in range(searches.shape[0]):
        if searches[i, 5] == 0:
            continue
        if a >= answers.size:
            return -1
        j = searches[i, 0]
        b = searches[i, 1]
        v = 2 * searches[i, 2]
        lo = searches[i, 3]
        hi = searches[i, 4]
        hi = lo + (hi - lo + 1) // 2  # the left child's range
        kd = kind[j]
        mr = mrow[j] if mrow[j] >= 0 else 0
        mine = _node_parity(kd, ksz[j], b, lo, hi, rows, rowi[j], masks, mr)
        slot = base[j] + b * stride[j]
        state[slot + v] = EVEN + (mine ^ answers[a])
        a += 1
        ps = state[slot + (v >> 1)]
        if ps == EVEN or ps == ODD:  # noqa: SIM109 - two compares, no tuple, in the numba kernel
            state[slot + (v ^ 1)] = EVEN + ((ps - EVEN) ^ (state[slot + v] - EVEN))
    return a


@kernel(inline="always")
def _empty_half(
    kd: Int, masks: NDArray[np.uint64], mr: Int, b: Int, lo: Int, hi: Int, state: NDArray[np.int8], left: Int
) -> Int:
    """Subset passes: a half of a node of at most 64 positions with no member has parity 0 on both
    sides, so both children's differences follow from the parent's without asking. Returns the left
    child's state (UNKNOWN where both halves have members)."""
    if kd == BLOCK or hi - lo > 64:
        return UNKNOWN
    mid = lo + (hi - lo + 1) // 2
    if _members(masks, mr, b, lo, mid) == 0:
        state[left] = EVEN
        state[left + 1] = ODD
        return EVEN
    if _members(masks, mr, b, mid, hi) == 0:
        state[left] = ODD
        state[left + 1] = EVEN
        return ODD
    return UNKNOWN


@kernel(inline="always")
def _descend(
    kd: Int, b: Int, v: Int, lo: Int, hi: Int, slot: Int, state: NDArray[np.int8], masks: NDArray[np.uint64], mr: Int
) -> tuple[Int, Int, Int, Int]:
    """Walk one search down from node `v` (odd parity, range [lo, hi)) through the parities already
    known. Returns (outcome, node, its range's lo and hi): `_FOUND` at the erroneous leaf, `_ASK`/`_WAIT`
    at the node whose left child's parity is missing, `_GONE` where the node became even."""
    while True:
        if state[slot + v] != ODD:
            return _GONE, v, lo, hi
        if hi - lo == 1:
            return _FOUND, v, lo, hi
        left = 2 * v
        sl = state[slot + left]
        if sl == UNKNOWN:
            sl = _empty_half(kd, masks, mr, b, lo, hi, state, slot + left)
        if sl == UNKNOWN:
            state[slot + left] = ASKED
            return _ASK, v, lo, hi
        if sl == ASKED:
            return _WAIT, v, lo, hi
        sr = state[slot + left + 1]
        if sr != EVEN and sr != ODD:
            state[slot + left + 1] = EVEN + ((ODD - EVEN) ^ (sl - EVEN))
        mid = lo + (hi - lo + 1) // 2
        if sl == ODD:
            v = left
            hi = mid
        else:
            v = left + 1
            lo = mid


@kernel(inline="always")
def _frame_position(kd: Int, k: Int, b: Int, lo: Int, prow: Int, perms: NDArray[np.int32]) -> Int:
    """Frame position of position `lo` of block `b` (BLOCK passes count in their shuffled order)."""
    if kd != BLOCK:
        return lo
    q = b * k + lo
    return q if prow < 0 else np.int64(perms[prow, q])


@kernel(inline="always")
def _flip_everywhere(
    p: Int,
    n_started: Int,
    kind: NDArray[np.int64],
    rowi: NDArray[np.int64],
    prow: NDArray[np.int64],
    rows: NDArray[np.uint64],
    poss: NDArray[np.int32],
) -> None:
    """Correct frame position p in the frame and in every shuffled copy of it."""
    rows[0, p >> 6] ^= np.uint64(1) << np.uint64(p & 63)
    for jj in range(n_started):
        if kind[jj] == BLOCK and prow[jj] >= 0:
            q = np.int64(poss[prow[jj], p])
            rows[rowi[jj], q >> 6] ^= np.uint64(1) << np.uint64(q & 63)


@kernel(inline="always")
def _toggle_path(s2: Int, length: Int, r: Int, state: NDArray[np.int8]) -> tuple[Int, Int, Int]:
    """Toggle every known node containing position r (of a block of `length`), from the root down
    while known; returns the deepest node now odd (0: none), where a new search starts, and its range."""
    vv = 1
    lo: Int = 0
    hi = length
    deepest: Int = 0
    dlo: Int = 0
    dhi: Int = 0
    while True:
        st = state[s2 + vv]
        if st != EVEN and st != ODD:
            return deepest, dlo, dhi
        st = EVEN + ODD - st
        state[s2 + vv] = st
        if st == ODD:
            deepest = vv
            dlo = lo
            dhi = hi
        if hi - lo <= 1:
            return deepest, dlo, dhi
        mid = lo + (hi - lo + 1) // 2
        if r < mid:
            vv = 2 * vv
            hi = mid
        else:
            vv = 2 * vv + 1
            lo = mid


@kernel(inline="always")
def _cascade(
    p: Int,
    n_started: Int,
    kind: NDArray[np.int64],
    ksz: NDArray[np.int64],
    stride: NDArray[np.int64],
    base: NDArray[np.int64],
    mrow: NDArray[np.int64],
    prow: NDArray[np.int64],
    n: Int,
    state: NDArray[np.int8],
    masks: NDArray[np.uint64],
    poss: NDArray[np.int32],
    work: NDArray[np.int64],
    nw: Int,
) -> Int:
    """The cascade of correcting p: in every started pass, the block holding p changes parity along
    its known path, and a search starts at the deepest node now odd. Appends them to `work`, which
    has room for `n_started` more rows; returns the new row count."""
    for jj in range(n_started):
        bb, r = _locate(jj, p, kind, ksz, prow, mrow, poss, masks)
        if bb < 0:
            continue
        deepest, lo, hi = _toggle_path(base[jj] + bb * stride[jj], _root_length(kind[jj], ksz[jj], bb, n), r, state)
        if deepest:
            _put(work, nw, jj, bb, deepest, lo, hi, 0)
            nw += 1
    return nw


_CURSOR = 5
"""`_walk`'s cursor: next work item, rows in `extra`, waiting searches, questions, bits flipped."""
_DONE = 0
_WAITS_FULL = 1
_EXTRA_FULL = 2
_INCONSISTENT = 3


@kernel(refcounts=False)
def _walk(
    kind: NDArray[np.int64],
    ksz: NDArray[np.int64],
    stride: NDArray[np.int64],
    base: NDArray[np.int64],
    mrow: NDArray[np.int64],
    prow: NDArray[np.int64],
    rowi: NDArray[np.int64],
    n_started: Int,
    n: Int,
    state: NDArray[np.int8],
    rows: NDArray[np.uint64],
    masks: NDArray[np.uint64],
    perms: NDArray[np.int32],
    poss: NDArray[np.int32],
    flipmap: NDArray[np.uint64],
    searches: NDArray[np.int64],
    extra: NDArray[np.int64],
    waits: NDArray[np.int64],
    cursor: NDArray[np.int64],
) -> Int:
    """Bob's walk over the work list (`searches`, then `extra`) from `cursor`, without numba's runtime
    so no reference count is updated in the loop. Stops before an item it might not have room for:
    `_WAITS_FULL` (no row left in `waits`) or `_EXTRA_FULL` (fewer than `n_started` rows left in
    `extra`, what one correction's cascade may append); the caller grows that list and calls again
    with the same cursor. `_INCONSISTENT` where a bit is pointed at twice; `_DONE` at the end."""
    ns = searches.shape[0]
    wi = cursor[0]
    nx = cursor[1]
    nk = cursor[2]
    nq = cursor[3]
    nflip = cursor[4]
    status = _DONE
    while wi < ns + nx:
        if nk == waits.shape[0]:
            status = _WAITS_FULL
            break
        if nx + n_started > extra.shape[0]:
            status = _EXTRA_FULL
            break
        if wi < ns:
            j = searches[wi, 0]
            b = searches[wi, 1]
            v0 = searches[wi, 2]
            lo0 = searches[wi, 3]
            hi0 = searches[wi, 4]
        else:
            j = extra[wi - ns, 0]
            b = extra[wi - ns, 1]
            v0 = extra[wi - ns, 2]
            lo0 = extra[wi - ns, 3]
            hi0 = extra[wi - ns, 4]
        kd = kind[j]
        mr = mrow[j] if mrow[j] >= 0 else 0
        outcome, v, lo, hi = _descend(kd, b, v0, lo0, hi0, base[j] + b * stride[j], state, masks, mr)
        wi += 1
        if outcome == _ASK or outcome == _WAIT:  # noqa: SIM109 - two compares, no tuple, in the numba kernel
            asked = 1 if outcome == _ASK else 0
            _put(waits, nk, j, b, v, lo, hi, asked)
            nk += 1
            nq += asked
        elif outcome == _FOUND:
            p = _frame_position(kd, ksz[j], b, lo, prow[j], perms)
            bit = np.uint64(1) << np.uint64(p & 63)
            if flipmap[p >> 6] & bit:
                # true parities never point at a bit twice (each flip makes it agree with Alice's):
                # her answers are inconsistent, stop rather than oscillate
                nk = nq = 0
                nflip = -1
                status = _INCONSISTENT
                break
            flipmap[p >> 6] |= bit
            nflip += 1
            _flip_everywhere(p, n_started, kind, rowi, prow, rows, poss)
            nx = _cascade(p, n_started, kind, ksz, stride, base, mrow, prow, n, state, masks, poss, extra, nx)
    cursor[0] = wi
    cursor[1] = nx
    cursor[2] = nk
    cursor[3] = nq
    cursor[4] = nflip
    return status


@kernel
def bob_round(
    kind: NDArray[np.int64],
    ksz: NDArray[np.int64],
    nb: NDArray[np.int64],
    stride: NDArray[np.int64],
    base: NDArray[np.int64],
    rowi: NDArray[np.int64],
    mrow: NDArray[np.int64],
    prow: NDArray[np.int64],
    n_started: Int,
    n: Int,
    state: NDArray[np.int8],
    rows: NDArray[np.uint64],
    masks: NDArray[np.uint64],
    perms: NDArray[np.int32],
    poss: NDArray[np.int32],
    answers: NDArray[np.uint8],
    searches: NDArray[np.int64],
    flipmap: NDArray[np.uint64],
) -> tuple[NDArray[np.uint8], NDArray[np.uint32], NDArray[np.uint32], NDArray[np.int64], int]:
    """One round of Bob's side: take Alice's answers to the questions the waiting `searches` asked,
    walk every search down as far as known parities allow, correct the errors found (with their
    cascade into all started passes), and collect the next batch of questions. Returns (question
    pass, block, node, the searches now waiting (rows as in `SEARCH_COLUMNS`), number of bits flipped
    this round). `flipmap` (packed, one bit per frame position) marks the bits flipped so far; a bit
    pointed at twice means inconsistent answers and returns -1, as do answers that do not match the
    questions in number.
    """
    ns = searches.shape[0]
    waits = np.empty((max(16, 2 * ns), SEARCH_COLUMNS), dtype=np.int64)
    if _record_answers(kind, ksz, stride, base, rowi, mrow, state, rows, masks, searches, answers) != answers.size:
        return np.empty(0, dtype=np.uint8), np.empty(0, dtype=np.uint32), np.empty(0, dtype=np.uint32), waits[:0], -1
    # the work list is the waiting searches, then `extra`: the cascade's new searches as errors are
    # corrected; the walk runs without numba's runtime and comes back here only to grow a full list
    extra = np.empty((max(16, 4 * n_started), SEARCH_COLUMNS), dtype=np.int64)
    cursor = np.zeros(_CURSOR, dtype=np.int64)
    while True:
        status = _walk(
            kind, ksz, stride, base, mrow, prow, rowi, n_started, n, state, rows, masks, perms, poss, flipmap,
            searches, extra, waits, cursor,
        )  # fmt: skip
        if status == _WAITS_FULL:
            waits = _grown(waits, cursor[2], cursor[2] + 1)
        elif status == _EXTRA_FULL:
            extra = _grown(extra, cursor[1], cursor[1] + n_started)
        else:
            break
    nk = cursor[2]
    nq = cursor[3]
    nflip = cursor[4]
    q_pass = np.empty(nq, dtype=np.uint8)
    q_blk = np.empty(nq, dtype=np.uint32)
    q_node = np.empty(nq, dtype=np.uint32)
    q = 0
    for i in range(nk):
        if waits[i, 5]:
            q_pass[q] = waits[i, 0]
            q_blk[q] = waits[i, 1]
            q_node[q] = 2 * waits[i, 2]
            q += 1
    return q_pass, q_blk, q_node, waits[:nk], nflip


@kernel
def clear_trees(
    kind: NDArray[np.int64],
    ksz: NDArray[np.int64],
    nb: NDArray[np.int64],
    stride: NDArray[np.int64],
    base: NDArray[np.int64],
    n_passes: Int,
    n: Int,
    state: NDArray[np.int8],
) -> Int:
    """Zero every node of the first `n_passes` passes' trees, so the state can serve another block.
    Trees of up to a page are cleared whole; in bigger ones only written nodes are visited: a node is
    written only once its parent is (a search writes the children of the node it stands on), so a
    walk from each root through non-zero nodes finds them all, and never reads a page nobody wrote. Returns the nodes cleared at heap index >= 4096, an
    upper bound on the pages of big (half-frame) trees that the state holds."""
    stack = np.empty((128, 3), dtype=np.int64)
    deep = 0
    for j in range(n_passes):
        if stride[j] <= 4096:
            # a root on every page: the trees are paged in whole, a plain clear is cheaper than a walk
            state[base[j] : base[j] + nb[j] * stride[j]] = UNKNOWN
            continue
        for b in range(nb[j]):
            slot = base[j] + b * stride[j]
            if state[slot + 1] == UNKNOWN:
                continue
            stack[0, 0] = 1
            stack[0, 1] = 0
            stack[0, 2] = _root_length(kind[j], ksz[j], b, n)
            top = 1
            while top:
                top -= 1
                v = stack[top, 0]
                lo = stack[top, 1]
                hi = stack[top, 2]
                state[slot + v] = UNKNOWN
                if v >= 4096:
                    deep += 1
                if hi - lo <= 1:
                    continue
                mid = lo + (hi - lo + 1) // 2
                if state[slot + 2 * v] != UNKNOWN:
                    stack[top, 0] = 2 * v
                    stack[top, 1] = lo
                    stack[top, 2] = mid
                    top += 1
                if state[slot + 2 * v + 1] != UNKNOWN:
                    stack[top, 0] = 2 * v + 1
                    stack[top, 1] = mid
                    stack[top, 2] = hi
                    top += 1
    return deep
