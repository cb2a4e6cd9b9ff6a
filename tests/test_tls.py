"""HTTPS on the S3 listener: aws-cli, boto3 and rclone over TLS trusting the test's own CA, plain
HTTP refused on the HTTPS port, and the certificate reloaded on SIGHUP (a broken file keeps the
pair in use). The CA and server certificates are made here with `openssl`."""

import filecmp
import os
import signal
import socket
import ssl
import subprocess
import time
import uuid

import boto3
import pytest
from botocore.config import Config

from conftest import LocalCluster, MiB, check_logs, free_port_block, random_bytes

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "openssl"], capture_output=True).returncode != 0,
    reason="openssl makes the test certificates",
)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=Baobab test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d)
    return d / f"{name}.crt"


def make_server_cert(d, ca, name):
    """A certificate for localhost and 127.0.0.1 issued by CA `ca`: (cert, key) paths."""
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=localhost", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name, cwd=d)
    return d / f"{name}.crt", d / f"{name}.key"


class TlsCluster(LocalCluster):
    def __init__(self, directory, port, cert, key):
        super().__init__(directory, port,
                         script_env={"BAOBAB_S3_TLS_CERT": str(cert), "BAOBAB_S3_TLS_KEY": str(key)})

    def gateway_log(self):
        return (self.dir / "gateway.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def pki(workdir):
    d = workdir / "pki"
    d.mkdir(exist_ok=True)
    ca = make_ca(d, "ca")
    cert, key = make_server_cert(d, "ca", "server")
    # The files the gateway reads; the reload test overwrites them.
    live_cert, live_key = d / "live.crt", d / "live.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    return {"dir": d, "ca": ca, "cert": live_cert, "key": live_key}


@pytest.fixture(scope="module")
def tls_cluster(workdir, pki):
    c = TlsCluster(workdir / "tls", free_port_block(), pki["cert"], pki["key"]).start()
    yield c
    c.stop()
    check_logs(c)


def s3_client(cluster, ca):
    return boto3.client(
        "s3", endpoint_url=cluster.endpoint, aws_access_key_id=cluster.key,
        aws_secret_access_key=cluster.secret, region_name="us-east-1", verify=str(ca),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


@pytest.fixture
def tls_bucket(tls_cluster, pki):
    s3 = s3_client(tls_cluster, pki["ca"])
    name = f"tls-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    yield name
    for o in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=o["Key"])
    s3.delete_bucket(Bucket=name)


def handshake(port, ca):
    """True when a TLS client trusting only `ca` connects (ALPN http/1.1); else False."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                assert s.selected_alpn_protocol() == "http/1.1"
                return True
    except ssl.SSLCertVerificationError:
        return False


def test_endpoint_is_https(tls_cluster, pki):
    assert tls_cluster.endpoint.startswith("https://")
    assert handshake(tls_cluster.port, pki["ca"])


def test_boto3_over_https(tls_cluster, pki, tls_bucket):
    s3 = s3_client(tls_cluster, pki["ca"])
    body = random_bytes(5 * MiB + 3)
    s3.put_object(Bucket=tls_bucket, Key="big", Body=body)
    assert s3.get_object(Bucket=tls_bucket, Key="big")["Body"].read() == body
    assert s3.get_object(Bucket=tls_bucket, Key="big", Range="bytes=100-199")["Body"].read() == body[100:200]
    s3.put_object(Bucket=tls_bucket, Key="small", Body=b"hello")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=tls_bucket)["Contents"]]
    assert keys == ["big", "small"]
    # Multipart through the managed transfer (aws-chunked bodies with trailing checksums).
    from boto3.s3.transfer import TransferConfig
    data = random_bytes(12 * MiB)
    import io
    s3.upload_fileobj(io.BytesIO(data), tls_bucket, "mp",
                      Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    assert s3.get_object(Bucket=tls_bucket, Key="mp")["Body"].read() == data


def test_untrusted_and_plain_clients_are_refused(tls_cluster, pki, workdir):
    other = make_ca(pki["dir"], "stranger")
    assert not handshake(tls_cluster.port, other)
    # Plain HTTP on the HTTPS port gets no HTTP answer.
    with socket.create_connection(("127.0.0.1", tls_cluster.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(1024)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/")


def test_aws_cli_over_https(tls_cluster, pki, tls_bucket, tmp_path):
    env = tls_cluster.client_env()
    env["AWS_CA_BUNDLE"] = str(pki["ca"])
    src = tmp_path / "src.bin"
    src.write_bytes(random_bytes(9 * MiB))  # over aws-cli's 8 MiB multipart threshold
    def aws(*args):
        return subprocess.run(["aws", *args], env=env, check=True, capture_output=True, text=True, timeout=120).stdout
    aws("s3", "cp", str(src), f"s3://{tls_bucket}/cli.bin")
    assert "cli.bin" in aws("s3", "ls", f"s3://{tls_bucket}/")
    back = tmp_path / "back.bin"
    aws("s3", "cp", f"s3://{tls_bucket}/cli.bin", str(back))
    assert filecmp.cmp(src, back, shallow=False)
    aws("s3api", "head-object", "--bucket", tls_bucket, "--key", "cli.bin")


def test_rclone_over_https(tls_cluster, pki, tls_bucket, tmp_path):
    conf = tmp_path / "rclone.conf"
    conf.write_text(
        "[baobab]\ntype = s3\nprovider = Other\nenv_auth = false\n"
        f"access_key_id = {tls_cluster.key}\nsecret_access_key = {tls_cluster.secret}\n"
        f"endpoint = {tls_cluster.endpoint}\nregion = us-east-1\nforce_path_style = true\n"
    )
    env = tls_cluster.client_env()
    env.pop("AWS_CA_BUNDLE", None)  # rclone 1.60 refuses to start with it set
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(random_bytes(1000))
    (src / "sub" / "b").write_bytes(random_bytes(3 * MiB))

    def rclone(*args):
        return subprocess.run(["rclone", "--config", str(conf), "--ca-cert", str(pki["ca"]), *args],
                              env=env, check=True, capture_output=True, text=True, timeout=120).stdout
    rclone("copy", str(src), f"baobab:{tls_bucket}/tree")
    rclone("check", str(src), f"baobab:{tls_bucket}/tree")
    assert sorted(rclone("lsf", "-R", f"baobab:{tls_bucket}/tree").split()) == ["a", "sub/", "sub/b"]


def wait_log(cluster, needle, count, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cluster.gateway_log().count(needle) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not logged {count} times")


def test_sighup_reloads_the_certificate(tls_cluster, pki):
    d = pki["dir"]
    ca2 = make_ca(d, "ca2")
    cert2, key2 = make_server_cert(d, "ca2", "server2")
    s3 = s3_client(tls_cluster, pki["ca"])
    s3.list_buckets()
    pid = tls_cluster.gateway_pid()
    reloaded = "S3 TLS certificate reloaded"
    refused = "S3 TLS certificate not reloaded"
    pki["cert"].write_bytes(cert2.read_bytes())
    pki["key"].write_bytes(key2.read_bytes())
    os.kill(pid, signal.SIGHUP)
    wait_log(tls_cluster, reloaded, 1)
    # New connections get the new certificate; the old CA no longer verifies it.
    assert handshake(tls_cluster.port, ca2)
    assert not handshake(tls_cluster.port, pki["ca"])
    assert s3_client(tls_cluster, ca2).list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    # A broken certificate file: logged, and the pair in use stays.
    tls_cluster.allow_errors(refused)
    pki["cert"].write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    os.kill(pid, signal.SIGHUP)
    wait_log(tls_cluster, refused, 1)
    assert handshake(tls_cluster.port, ca2)
    assert s3_client(tls_cluster, ca2).list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    # Files fixed again: reloaded.
    pki["cert"].write_bytes(cert2.read_bytes())
    os.kill(pid, signal.SIGHUP)
    wait_log(tls_cluster, reloaded, 2)
    assert handshake(tls_cluster.port, ca2)
