//! Who may talk to whom on the internal RPC: real TLS over loopback TCP.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use super::cert::{self, CertPair, ClusterCa};
use super::{
    full_body, serve, Identity, Peer, RpcClient, RpcError, RpcHandler, RpcResponse, RpcTls,
};
use crate::types::NodeId;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Answers every request with the caller's identity, as the server saw it.
struct WhoAmI;

#[async_trait::async_trait]
impl RpcHandler for WhoAmI {
    async fn handle(&self, req: Request<Incoming>) -> RpcResponse {
        let peer = req.extensions().get::<Peer>().map(|p| p.0.to_string());
        let body = super::encode(&peer).expect("encodes");
        Response::new(full_body(body))
    }
}

/// Serves `WhoAmI` as `tls` on a loopback port; returns its address.
async fn server(tls: RpcTls) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(serve(
        listener,
        tls,
        Arc::new(WhoAmI),
        std::future::pending(),
    ));
    addr
}

fn client(tls: RpcTls, node: u64, addr: &str) -> RpcClient {
    RpcClient::new(tls, HashMap::from([(NodeId(node), addr.to_string())]))
}

async fn who(c: &RpcClient, node: u64, path: &str) -> Result<Option<String>, RpcError> {
    c.call(NodeId(node), path, &(), TIMEOUT).await
}

fn from_pairs(ca_bundle: &str, pair: &CertPair) -> RpcTls {
    RpcTls::from_pem(
        ca_bundle.as_bytes(),
        pair.cert_pem.as_bytes(),
        pair.key_pem.as_bytes(),
    )
    .expect("tls")
}

#[tokio::test]
async fn peers_of_one_cluster_know_each_other() {
    let ca = ClusterCa::generate("a").expect("ca");
    let addr = server(ca.tls(Identity::Node(NodeId(1))).expect("tls")).await;
    for id in [
        Identity::Node(NodeId(2)),
        Identity::Gateway,
        Identity::Admin,
    ] {
        let c = client(ca.tls(id).expect("tls"), 1, &addr);
        assert_eq!(
            who(&c, 1, "/v1/anything").await.expect("call"),
            Some(id.to_string())
        );
    }
}

#[tokio::test]
async fn another_clusters_certificate_is_refused_at_the_handshake() {
    let ours = ClusterCa::generate("ours").expect("ca");
    let theirs = ClusterCa::generate("theirs").expect("ca");
    let addr = server(ours.tls(Identity::Node(NodeId(1))).expect("tls")).await;
    // Their node, with a certificate valid in their cluster, calling ours.
    let c = client(
        theirs.tls(Identity::Node(NodeId(2))).expect("tls"),
        1,
        &addr,
    );
    let e = who(&c, 1, "/v1/meta/read").await.expect_err("refused");
    assert!(
        matches!(e, RpcError::Connect { .. } | RpcError::Body(_)),
        "{e:?}"
    );
    // And our client does not trust their server.
    let their_addr = server(theirs.tls(Identity::Node(NodeId(1))).expect("tls")).await;
    let c = client(ours.tls(Identity::Gateway).expect("tls"), 1, &their_addr);
    assert!(matches!(
        who(&c, 1, "/v1/meta/read").await,
        Err(RpcError::Connect { .. })
    ));
}

#[tokio::test]
async fn a_client_talks_only_to_the_node_it_dialled() {
    let ca = ClusterCa::generate("a").expect("ca");
    // Node 2's certificate answers at the address the client has for node 1.
    let addr = server(ca.tls(Identity::Node(NodeId(2))).expect("tls")).await;
    let c = client(ca.tls(Identity::Gateway).expect("tls"), 1, &addr);
    assert!(matches!(
        who(&c, 1, "/v1/node/status").await,
        Err(RpcError::Connect { .. })
    ));
}

#[tokio::test]
async fn only_storage_nodes_may_call_raft_and_membership() {
    let ca = ClusterCa::generate("a").expect("ca");
    let addr = server(ca.tls(Identity::Node(NodeId(1))).expect("tls")).await;
    for path in [
        "/v1/raft/vote",
        "/v1/raft/append",
        "/v1/meta/rejoin",
        "/v1/meta/probe",
    ] {
        for id in [Identity::Gateway, Identity::Admin] {
            let c = client(ca.tls(id).expect("tls"), 1, &addr);
            match who(&c, 1, path).await {
                Err(RpcError::Status { status: 403, .. }) => {}
                other => panic!("{id} calling {path}: {other:?}"),
            }
        }
        let c = client(ca.tls(Identity::Node(NodeId(3))).expect("tls"), 1, &addr);
        assert!(who(&c, 1, path).await.is_ok(), "node 3 calling {path}");
    }
}

#[tokio::test]
async fn during_a_ca_rollover_both_cas_are_trusted() {
    let old = cert::new_ca("old", 30).expect("ca");
    let new = cert::new_ca("new", 30).expect("ca");
    let bundle = format!("{}{}", old.cert_pem, new.cert_pem);
    let node1_old = cert::issue(&old, Identity::Node(NodeId(1)), 30).expect("cert");
    let gw_new = cert::issue(&new, Identity::Gateway, 30).expect("cert");
    let gw_old = cert::issue(&old, Identity::Gateway, 30).expect("cert");
    // A node still on its old certificate, trusting both.
    let addr = server(from_pairs(&bundle, &node1_old)).await;
    for pair in [&gw_new, &gw_old] {
        let c = client(from_pairs(&bundle, pair), 1, &addr);
        assert_eq!(
            who(&c, 1, "/v1/x").await.expect("call"),
            Some("gateway".to_string())
        );
    }
    // A process that trusts only the new CA refuses the node still on the old certificate.
    let c = client(from_pairs(&new.cert_pem, &gw_new), 1, &addr);
    assert!(matches!(
        who(&c, 1, "/v1/x").await,
        Err(RpcError::Connect { .. })
    ));
}

/// A reload (SIGHUP) changes what new connections present and trust, without a restart; a
/// certificate for another identity, or files that do not load, change nothing.
#[tokio::test]
async fn a_reload_rotates_the_certificate_of_new_connections() {
    let old = cert::new_ca("old", 30).expect("ca");
    let new = cert::new_ca("new", 30).expect("ca");
    let node_old = cert::issue(&old, Identity::Node(NodeId(1)), 30).expect("cert");
    let node_new = cert::issue(&new, Identity::Node(NodeId(1)), 30).expect("cert");
    let node2_new = cert::issue(&new, Identity::Node(NodeId(2)), 30).expect("cert");
    let gw_new = cert::issue(&new, Identity::Gateway, 30).expect("cert");
    let node_tls = from_pairs(&old.cert_pem, &node_old);
    let addr = server(node_tls.clone()).await;
    let new_only = || client(from_pairs(&new.cert_pem, &gw_new), 1, &addr);
    assert!(matches!(
        who(&new_only(), 1, "/v1/x").await,
        Err(RpcError::Connect { .. })
    ));
    // Another identity's certificate, or a key that is not PEM: refused, nothing changes.
    assert!(node_tls
        .reload_pem(
            new.cert_pem.as_bytes(),
            node2_new.cert_pem.as_bytes(),
            node2_new.key_pem.as_bytes()
        )
        .is_err());
    assert!(node_tls
        .reload_pem(
            new.cert_pem.as_bytes(),
            node_new.cert_pem.as_bytes(),
            b"not a key"
        )
        .is_err());
    assert!(matches!(
        who(&new_only(), 1, "/v1/x").await,
        Err(RpcError::Connect { .. })
    ));
    node_tls
        .reload_pem(
            new.cert_pem.as_bytes(),
            node_new.cert_pem.as_bytes(),
            node_new.key_pem.as_bytes(),
        )
        .expect("reload");
    assert_eq!(
        who(&new_only(), 1, "/v1/x")
            .await
            .expect("call after the reload"),
        Some("gateway".to_string())
    );
}

#[tokio::test]
async fn a_client_without_a_certificate_gets_no_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = ClusterCa::generate("a").expect("ca");
    let addr = server(ca.tls(Identity::Node(NodeId(1))).expect("tls")).await;
    // Plain HTTP: no TLS at all.
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    s.write_all(b"GET /v1/node/status HTTP/1.1\r\nhost: x\r\nx-baobab-proto: 2\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut buf)).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"),
        "answered without TLS"
    );
    // TLS that trusts the server but presents no client certificate.
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.ca.cert_pem.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from(Identity::Node(NodeId(1)).dns_name())
        .expect("name");
    let answered = async {
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"GET /v1/node/status HTTP/1.1\r\nhost: x\r\nx-baobab-proto: 2\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    // An error (the handshake or the read refused) or silence is right; an answer is not.
    if let Ok(Ok(buf)) = tokio::time::timeout(TIMEOUT, answered).await {
        assert!(
            !String::from_utf8_lossy(&buf).contains("200"),
            "answered a client without a certificate"
        );
    }
}
