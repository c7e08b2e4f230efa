//! Caps on the connections a listener holds before anyone is authenticated: in all, and per
//! client address (an IPv6 client by its /64), so one source cannot hold the listener with
//! slow or idle sockets. A connection over a cap is closed at once, unanswered, and counted in
//! `sluice_connections_refused_total{listener,reason}` (by `edge::Edge`, which holds the slot).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::metrics::METRICS;

/// The caps and what is held now.
#[derive(Debug)]
pub struct ConnCaps {
    listener: &'static str,
    max_total: usize,
    max_per_source: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

impl ConnCaps {
    pub fn new(listener: &'static str, max_total: usize, max_per_source: usize) -> ConnCaps {
        ConnCaps {
            listener,
            max_total,
            max_per_source,
            held: Mutex::default(),
        }
    }

    /// The listener these caps are for (a metric label).
    pub fn listener(&self) -> &'static str {
        self.listener
    }

    /// A slot for a connection from `source` (`None`: not an IP socket, counted in all only),
    /// or why not.
    pub fn admit(self: &Arc<Self>, source: Option<IpAddr>) -> Result<Slot, &'static str> {
        let source = source.map(crate::client_address::source_key);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.total >= self.max_total {
            return Err("total");
        }
        if let Some(ip) = source {
            let n = held.by_source.entry(ip).or_insert(0);
            if *n >= self.max_per_source {
                return Err("per_source");
            }
            *n += 1;
        }
        held.total += 1;
        METRICS
            .connections
            .with_label_values(&[self.listener])
            .set(held.total as i64);
        Ok(Slot {
            caps: self.clone(),
            source,
        })
    }

    fn release(&self, source: Option<IpAddr>) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.total = held.total.saturating_sub(1);
        if let Some(ip) = source {
            if let Some(n) = held.by_source.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    held.by_source.remove(&ip);
                }
            }
        }
        METRICS
            .connections
            .with_label_values(&[self.listener])
            .set(held.total as i64);
    }
}

/// One held connection; released when dropped.
#[derive(Debug)]
pub struct Slot {
    caps: Arc<ConnCaps>,
    source: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.caps.release(self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_source_and_slots_come_back() {
        let caps = Arc::new(ConnCaps::new("test", 3, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = caps.admit(Some(a)).unwrap();
        let _a2 = caps.admit(Some(a)).unwrap();
        assert_eq!(caps.admit(Some(a)).unwrap_err(), "per_source");
        let _b1 = caps.admit(Some(b)).unwrap();
        assert_eq!(caps.admit(Some(b)).unwrap_err(), "total");
        drop(a1);
        let _a3 = caps.admit(Some(a)).unwrap();
        // One IPv6 host's /64 is one source; a mapped IPv4 address is that address.
        let caps = Arc::new(ConnCaps::new("test", 10, 1));
        let _v6 = caps.admit(Some("2001:db8::1".parse().unwrap())).unwrap();
        assert!(caps
            .admit(Some("2001:db8::ffff:1".parse().unwrap()))
            .is_err());
        assert!(caps.admit(Some("2001:db8:0:1::1".parse().unwrap())).is_ok());
        let _v4 = caps.admit(Some(a)).unwrap();
        assert!(caps
            .admit(Some("::ffff:192.0.2.1".parse().unwrap()))
            .is_err());
    }
}
