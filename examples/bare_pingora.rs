//! A bare Pingora reverse proxy with no Sluice logic (no auth, pools, metrics): the load-test
//! kit runs it beside Sluice so the cost of Sluice's own filters can be told apart from
//! Pingora's. usage: bare_pingora LISTEN UPSTREAM_ADDR THREADS

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;

/// The same allocator as the `sluice` binary, so the comparison isolates Sluice's filters.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _s: &mut Session,
        req: &mut RequestHeader,
        _c: &mut (),
    ) -> Result<()> {
        let path = req
            .uri
            .path()
            .strip_prefix("/openai")
            .unwrap_or("/")
            .to_owned();
        req.set_uri(
            path.parse()
                .map_err(|_| Error::new(ErrorType::InvalidHTTPHeader))?,
        );
        req.insert_header("authorization", "Bearer sk-bare")?;
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream), Some(threads)) = (args.get(1), args.get(2), args.get(3))
    else {
        eprintln!("usage: bare_pingora LISTEN UPSTREAM_ADDR THREADS");
        std::process::exit(2);
    };
    let (Ok(upstream), Ok(threads)) = (upstream.parse(), threads.parse()) else {
        eprintln!("bad UPSTREAM_ADDR or THREADS");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = http_proxy_service(&server.configuration, Bare { upstream });
    svc.add_tcp(listen);
    server.add_service(svc);
    server.run_forever()
}
