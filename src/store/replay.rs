//! The JWT replay ledger: which token ids (`jti`) have been used, shared by every replica on
//! the same database and kept across restarts, each until its token expires. A claim is one
//! `INSERT … ON CONFLICT` in a durable transaction, atomic on SQLite and PostgreSQL alike, so
//! of two replicas claiming the same token at once exactly one wins. Rows hold a SHA-256 key
//! and an expiry, nothing else; expired rows are pruned every minute.
//!
//! Claims run on a thread and connection of their own (never behind the queue of card
//! records), several at a time in one transaction. When the database does not answer, the
//! authenticator is told at once (it then decides on its own memory, see
//! [`crate::auth::ReplayLedger`]), and the claims made meanwhile are kept and written when the
//! database answers again, so a replay after the outage is still refused everywhere.

use super::migrations::ts;
use super::sql::{Backend, Link, Target, Tx, V};
use super::supervisor::supervise;
use super::StoreError;
use crate::auth::{ClaimFuture, LedgerUnavailable, ReplayLedger};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Longest a request waits for its claim before deciding without the ledger.
const CLAIM_DEADLINE: Duration = Duration::from_secs(2);
/// Claims waiting for the ledger thread; beyond, a claim is decided without it.
const WAITING_CLAIMS: usize = 10_000;
/// Claims written in one transaction.
const BATCH: usize = 500;
/// Claims kept while the database is away, to write when it is back.
const MAX_BACKLOG: usize = 100_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

struct Claim {
    key: String,
    until: i64,
    /// `None` when nobody waits for the answer (claimed while the ledger was known down).
    reply: Option<oneshot::Sender<Result<bool, StoreError>>>,
}

/// Handle to the ledger thread; implements [`ReplayLedger`] for the authenticator.
pub struct JtiLedger {
    claims: SyncSender<Claim>,
    /// The database failed the last attempt: claims are answered "unavailable" without waiting.
    down: Arc<AtomicBool>,
}

impl JtiLedger {
    pub(super) fn spawn(target: Target) -> Result<Self, StoreError> {
        let (claims, rx) = mpsc::sync_channel(WAITING_CLAIMS);
        let down = Arc::new(AtomicBool::new(false));
        let flag = down.clone();
        std::thread::Builder::new()
            .name("jwt-replay-ledger".into())
            .spawn(move || {
                let mut ledger = Worker { rx, link: Link::new(target, true), down: flag, backlog: Vec::new() };
                supervise("replay-ledger", || ledger.run(), || {});
            })
            .map_err(|e| StoreError::Thread("replay-ledger", e))?;
        Ok(Self { claims, down })
    }
}

impl ReplayLedger for JtiLedger {
    fn claim(&self, key: String, until: i64) -> ClaimFuture<'_> {
        Box::pin(async move {
            if self.down.load(Ordering::Acquire) {
                // Kept for later; the caller decides now.
                let _ = self.claims.try_send(Claim { key, until, reply: None });
                return Err(LedgerUnavailable("the feedback store did not answer the last claim".into()));
            }
            let (reply, answer) = oneshot::channel();
            self.claims
                .try_send(Claim { key, until, reply: Some(reply) })
                .map_err(|_| LedgerUnavailable("too many claims waiting for the feedback store".into()))?;
            match tokio::time::timeout(CLAIM_DEADLINE, answer).await {
                Ok(Ok(Ok(fresh))) => Ok(fresh),
                Ok(Ok(Err(e))) => Err(LedgerUnavailable(e.to_string())),
                Ok(Err(_)) => Err(LedgerUnavailable("the replay ledger thread stopped".into())),
                Err(_) => Err(LedgerUnavailable(format!("no answer within {} ms", CLAIM_DEADLINE.as_millis()))),
            }
        })
    }
}

struct Worker {
    rx: Receiver<Claim>,
    link: Link,
    down: Arc<AtomicBool>,
    /// Claims accepted while the database was away, not yet written: (key, until).
    backlog: Vec<(String, i64)>,
}

impl Worker {
    fn run(&mut self) {
        let mut retry: Option<(Instant, Duration)> = None;
        let mut pruned: Option<Instant> = None;
        loop {
            let first = match retry {
                Some((at, _)) => match self.rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(claim) => Some(claim),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match self.rx.recv() {
                    Ok(claim) => Some(claim),
                    Err(_) => return,
                },
            };
            let mut batch: Vec<Claim> = first.into_iter().collect();
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(claim) => batch.push(claim),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            if retry.is_some_and(|(at, _)| Instant::now() < at) {
                self.defer(batch, None);
                continue;
            }
            let prune = pruned.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
            match self.write(&mut batch, prune) {
                Ok(()) => {
                    retry = None;
                    self.down.store(false, Ordering::Release);
                    if prune {
                        pruned = Some(Instant::now());
                    }
                }
                Err(e) => {
                    let backoff = retry.map_or(RETRY_FIRST, |(_, b)| (b * 2).min(RETRY_MAX));
                    retry = Some((Instant::now() + backoff, backoff));
                    self.down.store(true, Ordering::Release);
                    self.defer(batch, Some(&e));
                }
            }
        }
    }

    /// Writes the backlog and the batch in one transaction and answers the batch.
    fn write(&mut self, batch: &mut [Claim], prune: bool) -> Result<(), StoreError> {
        let now = Utc::now().timestamp();
        self.backlog.retain(|(_, until)| *until >= now);
        let mut claims: Vec<(String, i64)> = self.backlog.clone();
        claims.extend(batch.iter().map(|c| (c.key.clone(), c.until)));
        let fresh = self.link.run(|b| claim_all(b, &claims, now, prune))?;
        let (late, current) = fresh.split_at(self.backlog.len());
        if !late.is_empty() {
            let clashes = late.iter().filter(|fresh| !**fresh).count();
            tracing::info!(written = late.len(), "JWT replay ledger: the claims made while it was away are now shared");
            if clashes > 0 {
                tracing::warn!(clashes, "tokens were used on more than one replica while the replay ledger was away");
            }
            self.backlog.clear();
        }
        for (claim, fresh) in batch.iter_mut().zip(current) {
            if let Some(reply) = claim.reply.take() {
                let _ = reply.send(Ok(*fresh));
            }
        }
        Ok(())
    }

    /// Keeps the claims for a later write and tells whoever waits that the ledger is away.
    fn defer(&mut self, batch: Vec<Claim>, error: Option<&StoreError>) {
        for claim in batch {
            if let Some(reply) = claim.reply {
                let reason = error.map_or("retrying shortly".to_string(), ToString::to_string);
                let _ = reply.send(Err(StoreError::Unavailable(reason)));
            }
            if self.backlog.len() < MAX_BACKLOG {
                self.backlog.push((claim.key, claim.until));
            }
        }
    }
}

/// Claims every key in one durable transaction; for each, whether it was fresh. Keys are
/// written in sorted order, so two replicas' transactions never wait on each other in a cycle.
fn claim_all(b: &mut dyn Backend, claims: &[(String, i64)], now: i64, prune: bool) -> Result<Vec<bool>, StoreError> {
    let mut order: Vec<usize> = (0..claims.len()).collect();
    order.sort_by(|&x, &y| claims[x].0.cmp(&claims[y].0));
    let now_text = V::Text(ts(instant(now)));
    let mut fresh = vec![false; claims.len()];
    b.transaction(Tx::Write { durable: true }, &mut |tx| {
        if prune {
            tx.exec("DELETE FROM used_jwt_ids WHERE expires_at < ?", std::slice::from_ref(&now_text))?;
        }
        for &i in &order {
            let (key, until) = &claims[i];
            // A row left by an expired token (not yet pruned) is taken over, not a replay.
            let changed = tx.exec(
                "INSERT INTO used_jwt_ids (token_key, expires_at) VALUES (?, ?)
                 ON CONFLICT (token_key) DO UPDATE SET expires_at = excluded.expires_at
                 WHERE used_jwt_ids.expires_at < ?",
                &[V::Text(key.clone()), V::Text(ts(instant(*until))), now_text.clone()],
            )?;
            fresh[i] = changed == 1;
        }
        Ok(())
    })?;
    Ok(fresh)
}

/// Unix seconds as a time, within the years the fixed-width timestamps can write.
fn instant(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs.clamp(0, 253_402_300_799), 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (tempfile::TempDir, Link) {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::parse(dir.path().join("replay.sqlite").to_str().unwrap()).unwrap();
        (dir, Link::new(target, true))
    }

    #[test]
    fn a_key_is_fresh_once_until_it_expires() {
        let (_dir, mut link) = ledger();
        let now = 1_800_000_000;
        let claims = vec![("k1".to_string(), now + 300), ("k2".to_string(), now + 300), ("k1".to_string(), now + 300)];
        let fresh = link.run(|b| claim_all(b, &claims, now, true)).unwrap();
        assert_eq!(fresh, vec![true, true, false], "the second k1 in the same batch is a replay");
        let again = link.run(|b| claim_all(b, &claims[..1], now + 10, false)).unwrap();
        assert_eq!(again, vec![false]);
        let expired = link.run(|b| claim_all(b, &claims[..1], now + 301, false)).unwrap();
        assert_eq!(expired, vec![true], "an expired row no longer blocks the key");
    }
}
