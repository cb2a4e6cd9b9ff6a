"""Streaming both ways: a 1 GiB object goes up and comes back through `baobab dev` (three storage
nodes and a gateway in one process) while the process stays under a few hundred MiB."""

import hashlib
import os
import threading
import time

from conftest import MiB

SIZE = 1024 * MiB
RSS_LIMIT_BYTES = 400 * MiB


class Generated:
    """A file-like body of `size` pseudo-random bytes, produced as it is read."""

    def __init__(self, size):
        self.size = size
        self.pos = 0
        self.block = os.urandom(MiB + 7)  # odd length: blocks never line up with 1 MiB
        self.md5 = hashlib.md5()

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.size - self.pos
        n = min(n, self.size - self.pos, len(self.block))
        start = self.pos % len(self.block)
        chunk = (self.block[start:] + self.block[:start])[:n]
        self.pos += len(chunk)
        self.md5.update(chunk)
        return chunk

    def seek(self, offset, whence=0):
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, min(self.size, base + offset))
        if self.pos == 0:
            self.md5 = hashlib.md5()  # botocore reads once to sign, then again to send
        return self.pos

    def tell(self):
        return self.pos

    def seekable(self):
        return True

    def __len__(self):
        return self.size


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def test_one_gib_streams_with_bounded_memory(dev_cluster):
    s3 = dev_cluster.client(read_timeout=300)
    s3.create_bucket(Bucket="memory")
    pid = dev_cluster.proc.pid
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes(pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        body = Generated(SIZE)
        t = time.time()
        put = s3.put_object(Bucket="memory", Key="big", Body=body, ContentLength=SIZE)
        put_s = time.time() - t
        assert put["ETag"] == f'"{body.md5.hexdigest()}"'
        t = time.time()
        got = s3.get_object(Bucket="memory", Key="big")
        md5, n = hashlib.md5(), 0
        for chunk in got["Body"].iter_chunks(4 * MiB):
            md5.update(chunk)
            n += len(chunk)
        get_s = time.time() - t
        assert n == SIZE
        assert md5.hexdigest() == body.md5.hexdigest()
    finally:
        done.set()
        sampler.join()
        s3.delete_object(Bucket="memory", Key="big")
        s3.delete_bucket(Bucket="memory")
    print(f"1 GiB through boto3: PUT {SIZE / MiB / put_s:.0f} MiB/s, GET {SIZE / MiB / get_s:.0f} MiB/s, "
          f"peak RSS of baobab dev {peak[0] / MiB:.0f} MiB")
    assert peak[0] < RSS_LIMIT_BYTES, f"peak RSS {peak[0] / MiB:.0f} MiB"
