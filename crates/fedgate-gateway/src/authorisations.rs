//! PublicUnverified authorisation changes (a local user's outbound subscribe / subscribed /
//! unsubscribe / unsubscribed): made durable in the store, then visible in the snapshot.
//!
//! The data plane reads authorisations from the [`Snapshot`](crate::state::Snapshot) only; the
//! store is written here and nowhere else on the stanza path. Changes are group-committed: the
//! first change to arrive starts a commit task, which writes every change waiting at that moment
//! in one transaction, applies them to the snapshot, answers their senders and repeats while
//! more arrived meanwhile. The stanza that makes a change waits for its commit before the gateway
//! forwards it; no other stanza waits.
//!
//! Why nothing acknowledged is lost: the change is committed before its stanza leaves the
//! gateway, so neither the partner nor the local user's server can have seen the subscription go
//! through while a crash would still lose it. "Committed" means durable across an OS crash or
//! power loss, not only across the gateway's death: SQLite writes these commits with
//! `synchronous=FULL` (the WAL fsynced before `set_authorisations` returns; the store's other
//! writes keep `NORMAL`, whose last commits an OS crash may lose), PostgreSQL with the server's
//! `synchronous_commit` (`on` by default, the WAL flushed before the commit returns; fedgate
//! does not change it, and a server configured with it `off` gives that up). The cost on SQLite
//! is one fsync per batch (docs/benchmarks.md). (A stanza whose commit has not finished is lost
//! with the gateway, as any stanza in flight is; its server has no delivery receipt for it.) The
//! queue is bounded by the streams: each waits for its own change before it reads on.
//!
//! A change the store refuses is not in the snapshot, and its stanza is not forwarded: the route
//! decision said beforehand what becomes of it then
//! ([`fedgate_model::route::Commit::if_not_committed`]: answered with `<resource-constraint/>`,
//! retry later), and [`crate::access::forward`] carries that out and logs it.
//!
//! Tested by killing the gateway process (SIGKILL) right after a subscribe was forwarded
//! (`crates/fedgate/tests/authorisation_kill.rs`): that shows the commit happened before the
//! forward; it cannot show the fsync (the killed process's writes stay in the page cache).
//!
//! Changes made by other nodes sharing a PostgreSQL store arrive as announcements
//! ([`fedgate_store::Store::watch`]); [`Writer::reload`] then replaces the snapshot's
//! authorisations with the store's, never in the middle of one of this node's commits.

use std::sync::{Arc, Mutex};

use fedgate_model::UserJid;
use fedgate_model::access::AuthorisationChange;
use fedgate_store::Store;
use tokio::sync::oneshot;

use crate::state::Shared;

/// One change: (local user, remote user, what changes).
pub type Change = (UserJid, UserJid, AuthorisationChange);

#[derive(Default)]
struct Queue {
    waiting: Vec<(Change, oneshot::Sender<Result<(), String>>)>,
    committing: bool,
}

/// See the module documentation.
pub struct Writer {
    store: Arc<dyn Store>,
    queue: Mutex<Queue>,
    /// Held from a batch's commit until it is in the snapshot, and by a reload from its read
    /// until its result is: a reload that read before our commit cannot land after it.
    applying: tokio::sync::Mutex<()>,
}

impl Writer {
    pub fn new(store: Arc<dyn Store>) -> Writer {
        Writer {
            store,
            queue: Mutex::default(),
            applying: tokio::sync::Mutex::new(()),
        }
    }

    /// Replace the snapshot's authorisations with what the store holds (another node changed
    /// them); how many there are now.
    pub async fn reload(shared: &Shared) -> Result<usize, fedgate_store::StoreError> {
        let this = &shared.authorisations;
        let _applying = this.applying.lock().await;
        let store = this.store.clone();
        let list = tokio::task::spawn_blocking(move || store.authorisations(None))
            .await
            .map_err(|e| fedgate_store::StoreError::Database {
                path: "store".into(),
                reason: format!("the reading task failed: {e}"),
            })??;
        let count = list.len();
        let fresh = fedgate_model::snapshot::Authorisations::new(
            list.into_iter().map(|a| (a.local_user, a.remote_user)),
        );
        shared.update_snapshot(|s| s.with_authorisations(fresh));
        Ok(count)
    }

    /// Make `change` durable, then visible in `shared`'s snapshot. Ok once both happened; the
    /// store's error when it did not commit it (the snapshot is unchanged; not logged here: the
    /// caller logs it with its stanza).
    pub async fn record(shared: &Arc<Shared>, change: Change) -> Result<(), String> {
        let (done, answer) = oneshot::channel();
        let start = {
            let mut q = shared
                .authorisations
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            q.waiting.push((change, done));
            !std::mem::replace(&mut q.committing, true)
        };
        if start {
            // A task of its own: a stream that goes away meanwhile does not stop the commit
            // of the others' changes.
            let shared = shared.clone();
            tokio::spawn(async move { shared.authorisations.commit_all(&shared).await });
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the commit task ended without an answer".to_owned()))
    }

    async fn commit_all(&self, shared: &Shared) {
        loop {
            let _applying = self.applying.lock().await;
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.waiting.is_empty() {
                    q.committing = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            let rows: Vec<(UserJid, UserJid, bool)> = batch
                .iter()
                .map(|((l, r, c), _)| (l.clone(), r.clone(), *c == AuthorisationChange::Authorise))
                .collect();
            let store = self.store.clone();
            let committed =
                match tokio::task::spawn_blocking(move || store.set_authorisations(&rows)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(err)) => Err(format!(
                        "the store did not commit a batch of {} authorisation changes: {err}",
                        batch.len()
                    )),
                    Err(err) => Err(format!(
                        "the task committing a batch of {} authorisation changes failed: {err}",
                        batch.len()
                    )),
                };
            if committed.is_ok() {
                shared.update_snapshot(|s| {
                    s.with_authorisations(
                        s.authorisations
                            .with_changes(batch.iter().map(|((l, r, c), _)| (l, r, *c))),
                    )
                });
            }
            for (_, done) in batch {
                let _ = done.send(committed.clone());
            }
        }
    }
}
