//! The listening sockets Sluice binds itself, before Pingora starts: those on port 0 (whose
//! port the proxy's public URL and `--ready-file` need) and, with `server.thread_per_core`, one
//! `SO_REUSEPORT` socket per proxy thread; handed to Pingora in its fd table.

use anyhow::Context;
use pingora::server::Server;

use crate::config::wire;

/// Listener addresses as bound (a `…:0` in the file becomes the port the system chose).
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Bound {
    pub(super) proxy: Option<String>,
    /// The proxy listener's sockets in Pingora's fd table, one per thread with
    /// `server.thread_per_core` (see `bind_per_thread`), else none (the address itself).
    #[serde(skip)]
    pub(super) proxy_per_thread: Vec<String>,
    pub(super) forward: Option<String>,
    pub(super) admin: Option<String>,
    pub(super) mock: Option<String>,
    /// Sockets bound here for Pingora's listeners on port 0, handed over in its fd table.
    #[serde(skip)]
    pub(super) handed: Vec<(String, std::os::fd::OwnedFd)>,
}

impl Bound {
    /// Binds a Pingora listener address itself when its port is 0 (Pingora reports no bound
    /// port) or `always` (`--ready-file`: the file is written once every socket is bound);
    /// otherwise Pingora binds it. Returns the address Pingora is to listen on.
    pub(super) fn pingora(
        &mut self,
        addr: &str,
        field: &str,
        always: bool,
    ) -> anyhow::Result<String> {
        let wanted: std::net::SocketAddr = addr
            .parse()
            .with_context(|| format!("{field}: `{addr}` is not an IP:port address"))?;
        if wanted.port() != 0 && !always {
            return Ok(addr.to_owned());
        }
        let listener = std::net::TcpListener::bind(wanted)
            .with_context(|| format!("{field}: cannot bind {addr}"))?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?.to_string();
        self.handed.push((bound.clone(), listener.into()));
        Ok(bound)
    }

    /// `threads` sockets on `addr` with `SO_REUSEPORT` (the first chooses the port when it is
    /// 0), handed to Pingora under `ADDR`, `ADDR#1`, `ADDR#2`…: each proxy thread's service
    /// finds its own. Returns the bound address.
    pub(super) fn bind_per_thread(&mut self, addr: &str, threads: usize) -> anyhow::Result<String> {
        let field = "listeners.proxy";
        let mut wanted: std::net::SocketAddr = addr
            .parse()
            .with_context(|| format!("{field}: `{addr}` is not an IP:port address"))?;
        for i in 0..threads.max(1) {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(wanted),
                socket2::Type::STREAM,
                None,
            )?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket
                .bind(&wanted.into())
                .with_context(|| format!("{field}: cannot bind {addr}"))?;
            socket.listen(65_535)?;
            if i == 0 {
                wanted = socket
                    .local_addr()?
                    .as_socket()
                    .context("a TCP listener has an IP address")?;
            }
            let key = match i {
                0 => wanted.to_string(),
                _ => format!("{wanted}#{i}"),
            };
            self.proxy_per_thread.push(key.clone());
            self.handed.push((key, socket.into()));
        }
        Ok(wanted.to_string())
    }

    /// The proxy and forward listeners (see `pingora`); the proxy's per thread (see
    /// `bind_per_thread`) when `per_thread` is that many threads.
    pub(super) fn bind_proxies(
        &mut self,
        listeners: &wire::Listeners,
        always: bool,
        per_thread: Option<usize>,
    ) -> anyhow::Result<()> {
        let proxy = match per_thread {
            Some(threads) => self.bind_per_thread(&listeners.proxy, threads)?,
            None => self.pingora(&listeners.proxy, "listeners.proxy", always)?,
        };
        if proxy != listeners.proxy {
            wire::set_bound_proxy(proxy.clone());
        }
        self.proxy = Some(proxy);
        if let Some(addr) = &listeners.forward {
            self.forward = Some(self.pingora(addr, "listeners.forward", always)?);
        }
        Ok(())
    }

    /// Puts the sockets bound here in Pingora's fd table, where its listeners find them.
    pub(super) fn hand_to(&mut self, server: &Server) {
        use std::os::fd::IntoRawFd;
        let fds = server.listen_fds();
        for (addr, fd) in self.handed.drain(..) {
            fds.lock().add(addr, fd.into_raw_fd());
        }
    }
}
