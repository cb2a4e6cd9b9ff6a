"""Real clients with their default settings (multipart thresholds and chunk sizes included):
aws-cli (s3 and s3api), rclone, s3cmd, restic, and boto3's managed transfers. The heavy workflows
(hundreds of MiB to 1 GiB, hundreds of files) run on `baobab dev` only; files are written under
tmp_path and deleted as soon as they have been compared."""

import filecmp
import hashlib
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import MiB, empty_and_delete, random_bytes, unique_bucket


def run(cmd, env, cwd=None, timeout=600):
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}"
    return p.stdout


@pytest.fixture
def files(tmp_path):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    sizes = {"empty": 0, "one": 1, "inline": 16 * 1024, "block-1": MiB - 1, "block": MiB, "block+1": MiB + 1, "sub/big": 20 * MiB, "sub/deeper/x": 12345}
    for name, size in sizes.items():
        (src / name).write_bytes(random_bytes(size) if size < MiB else os.urandom(size))
    return src


def aws(cluster, tmp_path, *args):
    cfg = tmp_path / "aws-config"
    cfg.write_text("")  # defaults only: no user configuration leaks in
    env = cluster.client_env()
    env["AWS_CONFIG_FILE"] = str(cfg)
    return run(["aws", "--endpoint-url", cluster.endpoint, *args], env)


def same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    def walk(c):
        assert not c.left_only and not c.right_only and not c.diff_files and not c.funny_files, (
            c.left_only, c.right_only, c.diff_files)
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        assert not mismatch and not errors, (mismatch, errors)
        for sub in c.subdirs.values():
            walk(sub)
    walk(cmp)


def test_aws_cli_s3(cluster, tmp_path, files):
    bucket = unique_bucket("awscli")
    aws(cluster, tmp_path, "s3", "mb", f"s3://{bucket}")
    try:
        aws(cluster, tmp_path, "s3", "cp", str(files / "block+1"), f"s3://{bucket}/single")
        listing = aws(cluster, tmp_path, "s3", "ls", f"s3://{bucket}/")
        assert "single" in listing and str(MiB + 1) in listing
        aws(cluster, tmp_path, "s3", "cp", f"s3://{bucket}/single", str(tmp_path / "single.out"))
        assert (tmp_path / "single.out").read_bytes() == (files / "block+1").read_bytes()

        aws(cluster, tmp_path, "s3", "sync", str(files), f"s3://{bucket}/tree")
        out = tmp_path / "out"
        aws(cluster, tmp_path, "s3", "sync", f"s3://{bucket}/tree", str(out))
        same_tree(files, out)
        # A second sync has nothing to do.
        again = aws(cluster, tmp_path, "s3", "sync", str(files), f"s3://{bucket}/tree")
        assert "upload:" not in again

        recursive = aws(cluster, tmp_path, "s3", "ls", "--recursive", f"s3://{bucket}/tree/")
        assert len(recursive.strip().splitlines()) == 8
        aws(cluster, tmp_path, "s3", "rm", "--recursive", f"s3://{bucket}/tree")
        aws(cluster, tmp_path, "s3", "rm", f"s3://{bucket}/single")
    finally:
        empty_and_delete(cluster.client(), bucket)


def test_aws_cli_s3api(cluster, tmp_path, files):
    bucket = unique_bucket("s3api")
    aws(cluster, tmp_path, "s3api", "create-bucket", "--bucket", bucket)
    try:
        aws(cluster, tmp_path, "s3api", "put-object", "--bucket", bucket, "--key", "a/b", "--body", str(files / "block"),
            "--content-type", "application/x-test", "--metadata", "k1=v1")
        head = json.loads(aws(cluster, tmp_path, "s3api", "head-object", "--bucket", bucket, "--key", "a/b"))
        assert head["ContentLength"] == MiB
        assert head["ContentType"] == "application/x-test"
        assert head["Metadata"] == {"k1": "v1"}
        aws(cluster, tmp_path, "s3api", "get-object", "--bucket", bucket, "--key", "a/b", str(tmp_path / "got"))
        assert (tmp_path / "got").read_bytes() == (files / "block").read_bytes()
        listing = json.loads(aws(cluster, tmp_path, "s3api", "list-objects-v2", "--bucket", bucket, "--delimiter", "/"))
        assert listing["CommonPrefixes"] == [{"Prefix": "a/"}]
        aws(cluster, tmp_path, "s3api", "delete-object", "--bucket", bucket, "--key", "a/b")
        listing = json.loads(aws(cluster, tmp_path, "s3api", "list-objects-v2", "--bucket", bucket) or "{}")
        assert not listing.get("Contents")
    finally:
        empty_and_delete(cluster.client(), bucket)


def rclone(cluster, tmp_path, *args):
    conf = tmp_path / "rclone.conf"
    conf.write_text(
        "[baobab]\ntype = s3\nprovider = Other\nenv_auth = false\n"
        f"access_key_id = {cluster.key}\nsecret_access_key = {cluster.secret}\n"
        f"endpoint = {cluster.endpoint}\nregion = us-east-1\nforce_path_style = true\n"
    )
    env = cluster.client_env()
    env.pop("AWS_CA_BUNDLE", None)
    return run(["rclone", "--config", str(conf), *args], env)


def test_rclone(cluster, tmp_path, files):
    bucket = unique_bucket("rclone")
    rclone(cluster, tmp_path, "mkdir", f"baobab:{bucket}")
    try:
        rclone(cluster, tmp_path, "copy", str(files), f"baobab:{bucket}/copy")
        rclone(cluster, tmp_path, "check", str(files), f"baobab:{bucket}/copy")  # exit 0 = 0 differences
        (files / "new").write_bytes(b"new file")
        (files / "one").unlink()
        rclone(cluster, tmp_path, "sync", str(files), f"baobab:{bucket}/copy")
        rclone(cluster, tmp_path, "check", str(files), f"baobab:{bucket}/copy")
        names = rclone(cluster, tmp_path, "lsf", "-R", f"baobab:{bucket}/copy").split()
        assert "new" in names and "one" not in names and "sub/big" in names
        out = tmp_path / "back"
        rclone(cluster, tmp_path, "copy", f"baobab:{bucket}/copy", str(out))
        same_tree(files, out)
        rclone(cluster, tmp_path, "delete", f"baobab:{bucket}/copy")
        assert rclone(cluster, tmp_path, "lsf", "-R", f"baobab:{bucket}").strip() == ""
    finally:
        empty_and_delete(cluster.client(), bucket)


def s3cmd(cluster, tmp_path, *args):
    cfg = tmp_path / "s3cfg"
    hostport = f"127.0.0.1:{cluster.port}"
    cfg.write_text(
        "[default]\n"
        f"access_key = {cluster.key}\nsecret_key = {cluster.secret}\n"
        f"host_base = {hostport}\nhost_bucket = {hostport}\n"
        "use_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n"
    )
    return run(["s3cmd", "-c", str(cfg), *args], cluster.client_env())


def test_s3cmd(cluster, tmp_path, files):
    bucket = unique_bucket("s3cmd")
    s3cmd(cluster, tmp_path, "mb", f"s3://{bucket}")
    try:
        s3cmd(cluster, tmp_path, "put", str(files / "block+1"), f"s3://{bucket}/f")
        assert f"s3://{bucket}/f" in s3cmd(cluster, tmp_path, "ls", f"s3://{bucket}")
        s3cmd(cluster, tmp_path, "get", f"s3://{bucket}/f", str(tmp_path / "f.out"))
        assert (tmp_path / "f.out").read_bytes() == (files / "block+1").read_bytes()
        s3cmd(cluster, tmp_path, "del", f"s3://{bucket}/f")
        s3cmd(cluster, tmp_path, "rb", f"s3://{bucket}")
    finally:
        empty_and_delete(cluster.client(), bucket)


# ---- Heavy workflows, `baobab dev` only -------------------------------------------------------


def write_random_file(path, size, chunk=64 * MiB):
    """Writes `size` random bytes to `path` in chunks; returns their sha256 (hex)."""
    h = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(chunk, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def small_tree(root, count, seed, min_size=1024, max_size=4096):
    """`count` files of min_size..max_size random bytes spread over a few directories."""
    rng = random.Random(seed)
    for i in range(count):
        path = root / f"d{i % 7}" / (f"e{i % 3}" if i % 2 else "") / f"f{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(rng.randint(min_size, max_size)))
    return root


@pytest.fixture
def dev_bucket(dev_cluster):
    s3 = dev_cluster.client()
    name = unique_bucket("heavy")
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(s3, name)


@pytest.fixture
def work(tmp_path):
    """A directory for the big files, removed after the test whatever its outcome (pytest keeps
    the tmp_path of recent runs)."""
    d = tmp_path / "work"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_aws_cli_cp_1gib(dev_cluster, dev_bucket, tmp_path, work):
    size = 1024 * MiB
    src = work / "big.bin"
    want = write_random_file(src, size)
    aws(dev_cluster, tmp_path, "s3", "cp", str(src), f"s3://{dev_bucket}/big.bin")
    src.unlink()  # keep the disk use down: the hash is all that is needed
    head = dev_cluster.client().head_object(Bucket=dev_bucket, Key="big.bin")
    assert head["ContentLength"] == size
    assert "-" in head["ETag"], "aws-cli uploads this with a multipart upload by default"

    out = work / "big.out"
    aws(dev_cluster, tmp_path, "s3", "cp", f"s3://{dev_bucket}/big.bin", str(out))
    assert out.stat().st_size == size
    assert file_sha256(out) == want


def test_aws_cli_sync_500_small_files(dev_cluster, dev_bucket, tmp_path, work):
    src = small_tree(work / "src", 500, seed=1)
    first = aws(dev_cluster, tmp_path, "s3", "sync", str(src), f"s3://{dev_bucket}/tree")
    assert first.count("upload:") == 500
    keys = [o["Key"] for page in dev_cluster.client().get_paginator("list_objects_v2").paginate(
        Bucket=dev_bucket, Prefix="tree/") for o in page.get("Contents", [])]
    assert len(keys) == 500
    again = aws(dev_cluster, tmp_path, "s3", "sync", str(src), f"s3://{dev_bucket}/tree")
    assert "upload:" not in again, again[:2000]
    out = work / "out"
    aws(dev_cluster, tmp_path, "s3", "sync", f"s3://{dev_bucket}/tree", str(out))
    same_tree(src, out)


def test_boto3_upload_file_download_file_200mib(dev_cluster, dev_bucket, work):
    s3 = dev_cluster.client()
    size = 200 * MiB
    src = work / "200m.bin"
    want = write_random_file(src, size)
    s3.upload_file(str(src), dev_bucket, "200m.bin")  # default TransferConfig: 8 MiB parts, 10 threads
    src.unlink()
    head = s3.head_object(Bucket=dev_bucket, Key="200m.bin")
    assert head["ContentLength"] == size
    assert "-" in head["ETag"], "upload_file uses a multipart upload above 8 MiB"
    out = work / "200m.out"
    s3.download_file(dev_bucket, "200m.bin", str(out))  # ranged GETs in parallel
    assert file_sha256(out) == want


def test_rclone_sync_large_tree(dev_cluster, dev_bucket, tmp_path, work):
    src = small_tree(work / "tree", 20, seed=2, min_size=0, max_size=200 * 1024)
    write_random_file(src / "d0" / "large.bin", 300 * MiB)  # over rclone's 200 MiB upload cutoff
    rclone(dev_cluster, tmp_path, "sync", str(src), f"baobab:{dev_bucket}/tree")
    rclone(dev_cluster, tmp_path, "check", "--checksum", str(src), f"baobab:{dev_bucket}/tree")
    head = dev_cluster.client().head_object(Bucket=dev_bucket, Key="tree/d0/large.bin")
    assert head["ContentLength"] == 300 * MiB
    assert "-" in head["ETag"], "rclone uploads this with a multipart upload by default"
    names = rclone(dev_cluster, tmp_path, "lsf", "-R", "--files-only", f"baobab:{dev_bucket}/tree").split()
    assert len(names) == 21


def test_s3cmd_multipart_and_sync(dev_cluster, dev_bucket, tmp_path, work):
    size = 30 * MiB  # two of s3cmd's default 15 MiB chunks
    big = work / "30m.bin"
    want = write_random_file(big, size)
    s3cmd(dev_cluster, tmp_path, "put", str(big), f"s3://{dev_bucket}/30m.bin")
    head = dev_cluster.client().head_object(Bucket=dev_bucket, Key="30m.bin")
    assert head["ContentLength"] == size
    assert head["ETag"].endswith('-2"'), head["ETag"]
    out = work / "30m.out"
    s3cmd(dev_cluster, tmp_path, "get", f"s3://{dev_bucket}/30m.bin", str(out))
    assert file_sha256(out) == want

    src = small_tree(work / "src", 30, seed=3, min_size=0, max_size=64 * 1024)
    s3cmd(dev_cluster, tmp_path, "sync", f"{src}/", f"s3://{dev_bucket}/tree/")
    again = s3cmd(dev_cluster, tmp_path, "sync", f"{src}/", f"s3://{dev_bucket}/tree/")
    assert "upload:" not in again, again[:2000]
    back = work / "back"
    back.mkdir()
    s3cmd(dev_cluster, tmp_path, "sync", f"s3://{dev_bucket}/tree/", f"{back}/")
    same_tree(src, back)


def test_restic_backup_check_restore(dev_cluster, dev_bucket, work):
    if shutil.which("restic") is None:
        pytest.fail("restic is not installed (scripts/test.sh installs it with apt, as rclone and s3cmd)")
    src = work / "data"
    small_tree(src / "small", 200, seed=4, min_size=0, max_size=20 * 1024)
    write_random_file(src / "big" / "eight.bin", 8 * MiB)
    for i in range(6):
        write_random_file(src / "big" / f"one-{i}.bin", MiB + i)
    (src / "big" / "copy-of-eight.bin").write_bytes((src / "big" / "eight.bin").read_bytes())  # deduplicated
    (src / "empty").write_bytes(b"")
    (src / "text.txt").write_text("hello restic\n" * 1000)

    env = dev_cluster.client_env()
    env.pop("AWS_CA_BUNDLE", None)
    env["RESTIC_PASSWORD"] = "baobab-test-password"
    env["RESTIC_REPOSITORY"] = f"s3:{dev_cluster.endpoint}/{dev_bucket}/repo"

    def restic(*args):
        return run(["restic", "--no-cache", *args], env, timeout=300)

    restic("init")
    restic("backup", str(src))
    snapshots = json.loads(restic("snapshots", "--json"))
    assert len(snapshots) == 1
    restic("check", "--read-data")
    out = work / "restored"
    restic("restore", "latest", "--target", str(out))
    # restic restores a path under the target as it was: <target>/<absolute source path>.
    same_tree(src, out / src.relative_to(src.anchor))
