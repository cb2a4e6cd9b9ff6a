"""Real command-line clients with their default settings: aws-cli (s3 and s3api), rclone, s3cmd.
Multipart upload is not implemented yet, so each client's multipart threshold is raised."""

import filecmp
import json
import os
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
    cfg.write_text("[default]\ns3 =\n  multipart_threshold = 5GB\n")
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
    return run(["rclone", "--config", str(conf), "--s3-upload-cutoff", "5G", *args], env)


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


def test_s3cmd(cluster, tmp_path, files):
    bucket = unique_bucket("s3cmd")
    cfg = tmp_path / "s3cfg"
    hostport = f"127.0.0.1:{cluster.port}"
    cfg.write_text(
        "[default]\n"
        f"access_key = {cluster.key}\nsecret_key = {cluster.secret}\n"
        f"host_base = {hostport}\nhost_bucket = {hostport}\n"
        "use_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n"
    )
    env = cluster.client_env()

    def s3cmd(*args):
        return run(["s3cmd", "-c", str(cfg), "--disable-multipart", *args], env)

    s3cmd("mb", f"s3://{bucket}")
    try:
        s3cmd("put", str(files / "block+1"), f"s3://{bucket}/f")
        assert f"s3://{bucket}/f" in s3cmd("ls", f"s3://{bucket}")
        s3cmd("get", f"s3://{bucket}/f", str(tmp_path / "f.out"))
        assert (tmp_path / "f.out").read_bytes() == (files / "block+1").read_bytes()
        s3cmd("del", f"s3://{bucket}/f")
        s3cmd("rb", f"s3://{bucket}")
    finally:
        empty_and_delete(cluster.client(), bucket)
