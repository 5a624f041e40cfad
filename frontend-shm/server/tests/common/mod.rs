//! What the server's test binaries share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use btfuse_core::{Config, MemFs, MemPool, ZeroClock};
use btfuse_ring_server::{DEFAULT_MAX_CONNECTIONS_PER_USER, Server, ServerConfig};

/// A server of `threads` workers on a 64 MiB store, at a socket in `dir`; and that socket.
pub(crate) fn server(dir: &Path, threads: usize) -> (Server<MemFs<MemPool>>, PathBuf) {
    let fs = Arc::new(MemFs::new(
        MemPool::new(64 << 20),
        Config::default(),
        ZeroClock,
    ));
    let socket = dir.join("s.sock");
    let server = Server::start(
        fs,
        &ServerConfig {
            socket: socket.clone(),
            threads,
            socket_mode: 0o600,
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
        },
    )
    .unwrap();
    (server, socket)
}
