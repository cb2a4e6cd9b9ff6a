//! `baobab-wan`: a user-space WAN emulator for benchmarks (`tc netem` is missing on the
//! kernels we run on). Each `--link LISTEN=TARGET@MS` accepts TCP connections on LISTEN and
//! relays them to TARGET, holding every byte MS milliseconds in each direction: a link with
//! `@10` adds a 20 ms round trip. Order is kept and bandwidth is not limited; the delay is
//! applied per chunk read (up to 64 KiB), as a long fibre would.
//!
//!   baobab-wan --link 127.0.0.1:5001=127.0.0.1:4701@10 --link ...
//!
//! Runs until killed. Only for benchmarks and tests on 127.0.0.0/8.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "baobab-wan",
    version,
    about = "Delaying TCP relay for WAN benchmarks"
)]
struct Args {
    /// LISTEN=TARGET@MS: relay LISTEN to TARGET, MS milliseconds each way.
    #[arg(long = "link", required = true)]
    links: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Link {
    listen: SocketAddr,
    target: SocketAddr,
    delay: Duration,
}

fn parse_link(s: &str) -> anyhow::Result<Link> {
    let (listen, rest) = s.split_once('=').context("expected LISTEN=TARGET@MS")?;
    let (target, ms) = rest.split_once('@').context("expected TARGET@MS")?;
    Ok(Link {
        listen: listen
            .parse()
            .with_context(|| format!("listen address {listen}"))?,
        target: target
            .parse()
            .with_context(|| format!("target address {target}"))?,
        delay: Duration::from_millis(ms.parse().with_context(|| format!("delay {ms}"))?),
    })
}

/// Chunks in flight on one direction of one connection at most (64 KiB each): bounds memory
/// to ~16 MiB per direction; a full pipe stops reading, as a full TCP window would.
const IN_FLIGHT_CHUNKS: usize = 256;

/// Reads `from`, stamping each chunk with when it may leave.
async fn read_side(mut from: OwnedReadHalf, delay: Duration, tx: mpsc::Sender<(Instant, Bytes)>) {
    loop {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        match from.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if tx
                    .send((Instant::now() + delay, buf.freeze()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Writes each chunk to `to` once its time has come; closes `to`'s write side at the end.
async fn write_side(mut to: OwnedWriteHalf, mut rx: mpsc::Receiver<(Instant, Bytes)>) {
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

fn pipe(from: OwnedReadHalf, to: OwnedWriteHalf, delay: Duration) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT_CHUNKS);
    tokio::spawn(read_side(from, delay, tx));
    tokio::spawn(write_side(to, rx));
}

async fn relay(link: Link) -> anyhow::Result<()> {
    let listener = TcpListener::bind(link.listen)
        .await
        .with_context(|| format!("bind {}", link.listen))?;
    loop {
        let (inbound, _) = listener.accept().await?;
        tokio::spawn(async move {
            // Connection setup costs a round trip on a real link too.
            tokio::time::sleep(link.delay * 2).await;
            let Ok(outbound) = TcpStream::connect(link.target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_r, in_w) = inbound.into_split();
            let (out_r, out_w) = outbound.into_split();
            pipe(in_r, out_w, link.delay);
            pipe(out_r, in_w, link.delay);
        });
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let links = args
        .links
        .iter()
        .map(|l| parse_link(l))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut tasks = Vec::new();
    for link in links {
        tasks.push(tokio::spawn(relay(link)));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse() {
        let l = parse_link("127.0.0.1:5001=127.0.0.1:4701@10").expect("parse");
        assert_eq!(l.listen.port(), 5001);
        assert_eq!(l.target.port(), 4701);
        assert_eq!(l.delay, Duration::from_millis(10));
        assert!(parse_link("127.0.0.1:5001").is_err());
        assert!(parse_link("127.0.0.1:5001=127.0.0.1:4701").is_err());
        assert!(parse_link("x=127.0.0.1:4701@1").is_err());
    }

    #[tokio::test]
    async fn a_link_delays_each_direction() {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.expect("accept");
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.expect("read");
            s.write_all(&buf).await.expect("write");
        });
        let free = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let listen = free.local_addr().expect("addr");
        drop(free);
        let link = Link {
            listen,
            target,
            delay: Duration::from_millis(30),
        };
        tokio::spawn(relay(link));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = TcpStream::connect(listen).await.expect("connect");
        let started = std::time::Instant::now();
        c.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        // Connect (2 × 30 ms) + one round trip (2 × 30 ms).
        assert!(
            started.elapsed() >= Duration::from_millis(115),
            "{:?}",
            started.elapsed()
        );
    }
}
