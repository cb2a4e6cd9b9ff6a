"""Shard files seen from outside the cluster: read straight from every node's data directory.

Files are `<data dir>/shards/<2 hex>/<32 hex version>.<shard index>`, version 1 format:

    header (64 bytes): magic "BAOBABSH" | format u16 LE | k u8 | m u8 | shard index u8 |
                       reserved u8 | block size u32 LE | version id u128 LE | zero padding
    then per block b:  shard bytes (ceil(block_len(b) / k)) | BLAKE3 (32)

The gateway exposes no version id, so a version is tied to an object by content: data shard
i of block 0 starts with the object's bytes at i * shard_len(0), and bodies are random, so the
first 32 bytes after the header identify (object body, shard index). A version counts as
complete when all k + m indices have a file with a valid header (magic, format, k, m, index
and version matching the name) and the exact length the object's size implies, that we have
not damaged ourselves (the `corrupt` fault remembers what it broke, by inode and mtime; a
healed file is a new file). The BLAKE3 of every block is the cluster's business.
"""

import os
import re
import struct
from pathlib import Path

MAGIC = b"BAOBABSH"
FORMAT_VERSION = 1
HEADER_LEN = 64
HASH_LEN = 32
FP_LEN = 32
NAME_RE = re.compile(r"^([0-9a-f]{32})\.(\d+)$")


def div_ceil(a, b):
    return -(-a // b)


def file_len(k, block_size, size):
    """ShardLayout::file_len."""
    n_blocks = div_ceil(size, block_size)
    if n_blocks == 0:
        return HEADER_LEN
    full_record = div_ceil(block_size, k) + HASH_LEN
    last = n_blocks - 1
    last_len = min(block_size, size - last * block_size)
    return HEADER_LEN + last * full_record + div_ceil(last_len, k) + HASH_LEN


def fingerprints(body, k, block_size):
    """The first FP_LEN bytes of data shard i of block 0, for i in 0..k."""
    first = min(block_size, len(body))
    sl = div_ceil(first, k)
    out = []
    for i in range(k):
        chunk = body[i * sl:min(i * sl + FP_LEN, first)]
        want = min(FP_LEN, sl)
        out.append(bytes(chunk) + b"\0" * (want - len(chunk)))
    return out


class ShardFile:
    __slots__ = ("node", "path", "version", "index", "size", "ino", "mtime_ns", "header_ok", "k", "m",
                 "block_size", "fp")

    def __init__(self, node, path, version, index):
        self.node = node
        self.path = path
        self.version = version
        self.index = index
        self.header_ok = False
        self.fp = b""


def read_one(node, path, version, index):
    f = ShardFile(node, path, version, index)
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            head = fh.read(HEADER_LEN + FP_LEN)
    except OSError:
        return None
    f.size, f.ino, f.mtime_ns = st.st_size, st.st_ino, st.st_mtime_ns
    if len(head) >= HEADER_LEN and head[:8] == MAGIC:
        fmt, k, m, idx, _r, bs = struct.unpack_from("<HBBBBI", head, 8)
        vid = int.from_bytes(head[18:34], "little")
        f.k, f.m, f.block_size = k, m, bs
        f.header_ok = fmt == FORMAT_VERSION and idx == index and vid == int(version, 16)
        f.fp = head[HEADER_LEN:]
    return f


def scan(data_dirs):
    """{version hex: [ShardFile]} over every node's shard directory. data_dirs: {node: path}."""
    versions = {}
    for node, d in data_dirs.items():
        root = Path(d) / "shards"
        try:
            subdirs = list(os.scandir(root))
        except OSError:
            continue
        for sub in subdirs:
            if not sub.is_dir():
                continue
            try:
                entries = list(os.scandir(sub.path))
            except OSError:
                continue
            for e in entries:
                mt = NAME_RE.match(e.name)
                if not mt:
                    continue
                f = read_one(node, e.path, mt.group(1), int(mt.group(2)))
                if f is not None:
                    versions.setdefault(f.version, []).append(f)
    return versions


class Damage:
    """What the campaign broke behind the cluster's back: path -> (inode, mtime_ns, size)."""

    def __init__(self):
        self.files = {}

    def record(self, path):
        try:
            st = os.stat(path)
            self.files[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            self.files[path] = None  # deleted: absent is missing anyway

    def still_damaged(self, f):
        rec = self.files.get(f.path)
        return rec is not None and rec == (f.ino, f.mtime_ns, f.size)


def assess(versions, objects, k, m, damage, default_block_size):
    """For each object (a dict with key, body, size, fps: erasure-coded ones only), its best
    version on disk and that version's good shard indices, each with the node holding it:
    [(object, version or None, {index: node})]."""
    by_fp = {}
    for o in objects:
        for i, fp in enumerate(o["fps"]):
            by_fp[(fp, i)] = o["body"]
    body_versions = {}
    for v, files in versions.items():
        for f in files:
            if f.header_ok and f.index < k and (f.fp, f.index) in by_fp:
                body_versions.setdefault(by_fp[(f.fp, f.index)], set()).add(v)
    out = []
    for o in objects:
        best_v, best = None, {}
        for v in sorted(body_versions.get(o["body"], ())):
            good = {}
            for f in versions.get(v, []):
                if not f.header_ok or f.k != k or f.m != m or f.index >= k + m:
                    continue
                if f.size != file_len(k, f.block_size or default_block_size, o["size"]):
                    continue
                if damage.still_damaged(f):
                    continue
                if f.index < k and f.fp != o["fps"][f.index]:
                    continue
                good.setdefault(f.index, f.node)
            if best_v is None or len(good) > len(best):
                best_v, best = v, good
        out.append((o, best_v, best))
    return out


def damage_file(path, kind, rng, damage):
    """Breaks one shard file: "flip" some bytes, "truncate" it, or "delete" it. Returns a short
    description."""
    size = os.path.getsize(path)
    if kind == "delete":
        os.unlink(path)
        damage.record(path)
        return f"deleted {path}"
    if kind == "truncate":
        new = rng.randrange(0, max(1, size - 1))
        # keep the original mtime out of the picture: the size differs anyway
        os.truncate(path, new)
        damage.record(path)
        return f"truncated {path} {size} -> {new}"
    # flip: 1..8 bytes, mostly in the block records, sometimes in the header
    offs = []
    with open(path, "r+b") as fh:
        for _ in range(rng.randint(1, 8)):
            if rng.random() < 0.15:
                # a byte the header's reader looks at: magic, format, k, m, index, block size, id
                off = rng.choice([o for o in range(34) if o != 13])
            else:
                off = rng.randrange(HEADER_LEN, max(HEADER_LEN + 1, size))
            fh.seek(off)
            b = fh.read(1)
            if not b:
                continue
            fh.seek(off)
            fh.write(bytes([b[0] ^ (1 << rng.randrange(8))]))
            offs.append(off)
        fh.flush()
        os.fsync(fh.fileno())
    damage.record(path)
    return f"flipped {len(offs)} bytes of {path} at {offs}"
