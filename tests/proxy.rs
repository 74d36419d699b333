//! A TCP proxy inside the test process, on 127.0.0.1, between a node and the
//! database server. [`Proxy::blackhole`] stops it moving bytes either way (the
//! connections stay open and hang, as in a network partition: new ones connect
//! and hang too); [`Proxy::heal`] lets them flow again, from where they stopped.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the proxy listens");
        let port = listener.local_addr().expect("an address").port();
        let (open, gate) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let gate = gate.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = pump(cr, sw, gate.clone()) => {}
                        _ = pump(sr, cw, gate) => {}
                    }
                });
            }
        });
        Proxy { port, open, task }
    }

    /// Stops every byte, both ways.
    pub fn blackhole(&self) {
        self.open.send_replace(false);
    }

    /// Lets the bytes flow again.
    pub fn heal(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies from `from` to `to` while the gate is open; holds still while it is
/// shut (what was read before it shut waits, and goes out once it opens).
async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut gate: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Shut while waiting to read: stop reading at once.
            _ = gate.wait_for(|open| !*open) => continue,
        };
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        // Let a shut gate take effect between chunks.
        tokio::time::sleep(Duration::ZERO).await;
    }
}
