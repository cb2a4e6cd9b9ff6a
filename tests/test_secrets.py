"""Secrets at rest and on the command line: the files that hold the cluster secret and access-key
credentials are readable by their owner only, and `baobab key create` never takes a secret as a
command-line argument (other users see arguments in `ps`, shells keep them in their history):
it generates one or reads it from standard input. That no log line shows a secret is checked for
every cluster of the run, at its teardown (`conftest.Cluster.unexpected_errors`)."""

import stat
import subprocess
import uuid

from conftest import BIN


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def private_keys(tls_dir):
    """The cluster CA's key and every process's certificate key."""
    keys = sorted(tls_dir.glob("*.key"))
    assert tls_dir / "ca.key" in keys and len(keys) >= 4, keys
    return [k.relative_to(tls_dir.parent) for k in keys]


def test_dev_secret_files_are_private(dev_cluster):
    for name in ["cluster.secret", "dev.env", *private_keys(dev_cluster.data_dir / "tls")]:
        path = dev_cluster.data_dir / name
        assert mode(path) == 0o600, f"{name} has mode {oct(mode(path))}"


def test_local_cluster_secret_files_are_private(local_cluster):
    for name in ["cluster.secret", "cluster.env", *private_keys(local_cluster.dir / "tls")]:
        path = local_cluster.dir / name
        assert mode(path) == 0o600, f"{name} has mode {oct(mode(path))}"


def test_key_create_takes_no_secret_argument_but_reads_stdin(dev_cluster):
    key_id = "BKSTDIN" + uuid.uuid4().hex[:12].upper()
    secret = "stdin-secret-" + uuid.uuid4().hex
    refused = subprocess.run(
        [BIN, "key", "create", "--name", "argv", "--key-id", key_id, "--secret", secret,
         "--config", str(dev_cluster.admin_config)],
        capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode != 0
    assert "--secret" in refused.stderr
    created = dev_cluster.admin("key", "create", "--name", "stdin", "--allow-create-bucket",
                                "--key-id", key_id, "--secret-stdin", stdin=secret + "\n")
    assert (created["access_key_id"], created["secret_access_key"]) == (key_id, secret)
    s3 = dev_cluster.client_for(key_id, secret)
    bucket = "stdin-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)
    # A secret too short to be one is refused.
    short = subprocess.run(
        [BIN, "key", "create", "--name", "short", "--key-id", key_id + "X", "--secret-stdin",
         "--config", str(dev_cluster.admin_config)],
        input="abc\n", capture_output=True, text=True, timeout=60,
    )
    assert short.returncode != 0 and "at least 8" in short.stderr
