//! The RPC transport over turmoil's simulated TCP: a listener for the server and a connect
//! function for the client. Addresses are `"<host name>:<port>"`; turmoil resolves host names.

use std::collections::HashMap;
use std::net::SocketAddr;

use baobab::rpc::{RpcClient, RpcListener, RpcTls};
use baobab::types::NodeId;

/// The port every simulated storage node serves RPC on.
pub const RPC_PORT: u16 = 7000;

/// A turmoil listener as the RPC server's listener.
pub struct SimListener(pub turmoil::net::TcpListener);

impl SimListener {
    pub async fn bind() -> std::io::Result<SimListener> {
        Ok(SimListener(
            turmoil::net::TcpListener::bind(("0.0.0.0", RPC_PORT)).await?,
        ))
    }
}

impl RpcListener for SimListener {
    type Io = turmoil::net::TcpStream;

    async fn accept(&mut self) -> std::io::Result<(turmoil::net::TcpStream, SocketAddr)> {
        self.0.accept().await
    }
}

/// An RPC client whose connections are turmoil TCP streams (TLS on top, as over TCP).
pub fn sim_rpc_client(tls: RpcTls, addrs: HashMap<NodeId, String>) -> RpcClient {
    RpcClient::with_connector(tls, addrs, |addr: String| async move {
        turmoil::net::TcpStream::connect(addr).await
    })
}
