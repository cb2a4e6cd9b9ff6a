"""`baobab dev`: zero configuration, credentials in dev.env, restart keeps everything, clean
shutdown."""

import subprocess

from conftest import MiB, DevCluster, check_logs, free_port_block, random_bytes


def test_restart_keeps_buckets_and_objects(workdir):
    c = DevCluster(workdir / "dev-restart", free_port_block()).start()
    key = c.key
    s3 = c.client()
    s3.create_bucket(Bucket="keep")
    big = random_bytes(3 * MiB)
    s3.put_object(Bucket="keep", Key="big", Body=big)
    s3.put_object(Bucket="keep", Key="small", Body=b"small")
    assert c.stop() == 0

    c.start()
    assert c.key == key, "the access key changed across a restart"
    s3 = c.client()
    assert "keep" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_object(Bucket="keep", Key="big")["Body"].read() == big
    assert s3.get_object(Bucket="keep", Key="small")["Body"].read() == b"small"
    assert c.stop() == 0
    check_logs(c)


def test_dev_env_is_shell_sourceable(dev_cluster):
    env_file = dev_cluster.data_dir / "dev.env"
    out = subprocess.run(
        ["bash", "-c", f'source "{env_file}" && echo "$AWS_ACCESS_KEY_ID $AWS_SECRET_ACCESS_KEY $AWS_ENDPOINT_URL $AWS_REGION"'],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out == [dev_cluster.key, dev_cluster.secret, dev_cluster.endpoint, "us-east-1"]
    assert dev_cluster.endpoint == f"http://127.0.0.1:{dev_cluster.s3_port}"


def test_port_in_use_fails_clearly(dev_cluster, workdir):
    p = subprocess.run(
        [__import__("conftest").BIN, "dev", "--data-dir", str(workdir / "dev-busy"), "--s3-port", str(dev_cluster.s3_port)],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode != 0
    assert "cannot listen" in p.stderr
