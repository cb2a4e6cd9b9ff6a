"""Mutual TLS on the internal RPC, from outside: a process without a certificate of this cluster
gets no answer from any RPC endpoint of any storage node (plain HTTP, TLS without a client
certificate, TLS with a valid certificate of another cluster are all refused at the handshake),
and a gateway's or admin's certificate cannot speak Raft. The positive control (a certificate of
this cluster gets an HTTP answer through the same client code) shows the refusals are real."""

import socket
import ssl
import subprocess

import pytest

from conftest import BIN

# Every path a storage node serves (shard paths take a version and index).
ENDPOINTS = [
    ("POST", "/v1/meta/read"),
    ("POST", "/v1/meta/write"),
    ("POST", "/v1/meta/probe"),
    ("POST", "/v1/meta/rejoin"),
    ("POST", "/v1/raft/append"),
    ("POST", "/v1/raft/vote"),
    ("POST", "/v1/raft/snapshot/chunk"),
    ("POST", "/v1/node/status"),
    ("GET", "/v1/shard/list?after=&min_age_secs=0"),
    ("GET", "/v1/shard/0000000000000000000000000000002a/0?offset=0&len=10"),
    ("PUT", "/v1/shard/0000000000000000000000000000002a/0"),
    ("DELETE", "/v1/shard/0000000000000000000000000000002a/0"),
]
NODE_NAME = "node-{}.baobab.internal"


def rpc_ports(cluster):
    port = int((cluster.dir / "port").read_text())
    return {n: port + n for n in (1, 2, 3)}


def request_bytes(method, path):
    body = b"\x80"  # an empty MessagePack map: a well-formed message for the POSTs
    return (f"{method} {path} HTTP/1.1\r\nhost: x\r\nx-baobab-proto: 3\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


def exchange(port, node, method, path, ctx=None):
    """Sends one HTTP/1.1 request (over TLS with `ctx`, else plain); returns what came back, or
    the error that ended the exchange."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock = ctx.wrap_socket(raw, server_hostname=NODE_NAME.format(node)) if ctx else raw
        sock.sendall(request_bytes(method, path))
        out = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk
    except (ssl.SSLError, ConnectionError, socket.timeout, OSError) as e:
        return e
    finally:
        raw.close()


def client_ctx(ca, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def answered(reply):
    return isinstance(reply, bytes) and reply.startswith(b"HTTP/1.1")


def status_of(reply):
    assert answered(reply), f"no HTTP answer: {reply!r}"
    return int(reply.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def other_cluster_certs(tmp_path_factory):
    """A valid CA and node certificate of another cluster."""
    d = tmp_path_factory.mktemp("other-cluster")
    subprocess.run([BIN, "cert", "ca", "--dir", str(d), "--name", "other"], check=True, capture_output=True)
    subprocess.run([BIN, "cert", "issue", "--ca-dir", str(d), "--node", "1"], check=True, capture_output=True)
    subprocess.run([BIN, "cert", "issue", "--ca-dir", str(d), "--gateway"], check=True, capture_output=True)
    return d


def test_every_rpc_endpoint_refuses_whoever_has_no_certificate_of_this_cluster(local_cluster, other_cluster_certs):
    tls = local_cluster.dir / "tls"
    ours = client_ctx(tls / "ca.pem", tls / "gateway.pem", tls / "gateway.key")
    no_cert = client_ctx(tls / "ca.pem")
    # Another cluster's node certificate; it trusts our CA too, so only our side can refuse.
    theirs = client_ctx(tls / "ca.pem", other_cluster_certs / "node-1.pem", other_cluster_certs / "node-1.key")
    for node, port in rpc_ports(local_cluster).items():
        # Positive control: the same client code with this cluster's certificate is answered.
        assert status_of(exchange(port, node, "POST", "/v1/node/status", ours)) == 200
        for method, path in ENDPOINTS:
            for who, ctx in (("plain HTTP", None), ("TLS without a certificate", no_cert),
                             ("another cluster's certificate", theirs)):
                reply = exchange(port, node, method, path, ctx)
                assert not answered(reply), f"node {node} answered {who} on {method} {path}: {reply!r}"
    # The refusals are logged by the nodes (at WARN), never as errors.
    for n in (1, 2, 3):
        log = (local_cluster.dir / f"node{n}.log").read_text()
        assert "refused at the TLS handshake" in log


def test_our_client_refuses_a_node_of_another_cluster(local_cluster, other_cluster_certs):
    """The other direction: a process of this cluster does not talk to a server whose
    certificate another CA issued (as a man in the middle would present)."""
    tls = local_cluster.dir / "tls"
    ctx = client_ctx(tls / "ca.pem", tls / "gateway.pem", tls / "gateway.key")
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(str(other_cluster_certs / "node-1.pem"), str(other_cluster_certs / "node-1.key"))
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    import threading

    def accept():
        try:
            conn, _ = lsock.accept()
            try:
                srv.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                pass
            conn.close()
        except OSError:
            pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    reply = exchange(port, 1, "POST", "/v1/node/status", ctx)
    assert isinstance(reply, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(reply), reply
    lsock.close()
    t.join(timeout=5)


def test_only_storage_nodes_speak_raft(local_cluster):
    tls = local_cluster.dir / "tls"
    gateway = client_ctx(tls / "ca.pem", tls / "gateway.pem", tls / "gateway.key")
    node2 = client_ctx(tls / "ca.pem", tls / "node-2.pem", tls / "node-2.key")
    port = rpc_ports(local_cluster)[1]
    for path in ("/v1/raft/vote", "/v1/raft/append", "/v1/raft/snapshot/chunk", "/v1/meta/rejoin", "/v1/meta/probe"):
        assert status_of(exchange(port, 1, "POST", path, gateway)) == 403, path
        # A node is let through (then refuses the empty message as malformed, not as forbidden),
        # except that it may rejoin only itself.
        assert status_of(exchange(port, 1, "POST", path, node2)) != 403 or path == "/v1/meta/rejoin", path
