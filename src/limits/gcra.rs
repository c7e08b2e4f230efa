//! One GCRA cell (generic cell rate algorithm): the allowance `limit` per `period` as a single
//! atomic, the theoretical arrival time (TAT) of the next unit. Taking `n` units moves the TAT
//! on by `n × period / limit`; a request fits while the TAT stays within one period of now, so
//! a full period's allowance may be spent at once and then refills smoothly.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Gcra {
    limit: u64,
    period_ns: u64,
    /// Nanoseconds one unit occupies (`period / limit`, rounded up: never more than `limit`).
    interval_ns: u64,
    tat: AtomicU64,
}

impl Gcra {
    pub fn new(limit: u64, period_ns: u64) -> Gcra {
        let limit = limit.max(1);
        Gcra {
            limit,
            period_ns,
            interval_ns: period_ns.div_ceil(limit).max(1),
            tat: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// Moves the cell on to what another view of the same allowance says (the shared one in
    /// Redis): its allowance is whole again in `reset_ns`, if that is later than here.
    pub fn catch_up(&self, now: u64, reset_ns: u64) {
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                (tat < now + reset_ns).then_some(now + reset_ns)
            });
    }

    /// Takes one unit, or says in how many nanoseconds one fits.
    pub fn take(&self, now: u64) -> Result<(), u64> {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let next = tat.max(now) + self.interval_ns;
            let ahead = next - now;
            if ahead > self.period_ns {
                return Err(ahead - self.period_ns);
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }

    /// Whether at least one unit is left, without taking it; else in how many nanoseconds.
    pub fn check(&self, now: u64) -> Result<(), u64> {
        let next = self.tat.load(Ordering::Acquire).max(now) + self.interval_ns;
        let ahead = next - now;
        if ahead > self.period_ns {
            return Err(ahead - self.period_ns);
        }
        Ok(())
    }

    /// Spends `n` units whether or not they fit (usage reported after the fact): the allowance
    /// may go into debt, and later requests wait until it is paid off.
    pub fn debit(&self, n: u64, now: u64) {
        let cost = n.saturating_mul(self.interval_ns);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.max(now).saturating_add(cost))
            });
    }

    /// Gives back `n` units taken earlier (an over-estimate, a request refused by another limit).
    pub fn credit(&self, n: u64, now: u64) {
        let cost = n.saturating_mul(self.interval_ns);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                (tat > now).then(|| tat.saturating_sub(cost).max(now))
            });
    }

    /// Nanoseconds until the whole allowance is available again.
    pub fn reset_ns(&self, now: u64) -> u64 {
        self.tat.load(Ordering::Acquire).saturating_sub(now)
    }

    /// Units available now.
    pub fn remaining(&self, now: u64) -> u64 {
        let used = self.reset_ns(now);
        self.period_ns.saturating_sub(used) / self.interval_ns
    }
}
