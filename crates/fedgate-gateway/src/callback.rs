//! Dialback callbacks as the receiving server (XEP-0220 §2.2): concurrent verifications for the
//! same domain pair — (receiving domain, originating domain), on one side — share one
//! connection to the originating domain's authoritative server, each sending its own
//! `<db:verify>` and waiting for the answer with its id.
//!
//! What is shared, and why that is sound: only the connection (TCP, the stream header, STARTTLS
//! when required) and its stream's addressing, which are the same for every request of the pair.
//! Every request's key is still sent and judged on its own: dialback keys are per stream
//! (`HMAC(secret, receiving originating stream-id)`), so one key's verdict says nothing about
//! another's. An answer is taken only when its `id` (our stream id, random and unique per
//! stream) is one we asked about and its `from`/`to` are the pair's; anything else is ignored.
//! Results are shared only between requests that ask the identical question (same pair, id and
//! key); a second, different key for an id in flight is not sent (its answer could not be told
//! apart) and fails at once — the per-stream rule of one verification per domain at a time
//! ([`fedgate_model::enforce::dialback_request`]) means this does not happen in practice.
//!
//! How many requests there are is the slots' business ([`crate::admission::DialbackSlots`]:
//! at most 4 per originating domain in flight); a connection also has at most [`OUTSTANDING`]
//! (4) `<db:verify>` unanswered, counting those of requests whose streams closed meanwhile (their
//! slots are free again, their question is still out), so closing and reopening streams cannot
//! pile more on the authoritative server; a request past 64 queued on a connection fails. A connection stays open [`LINGER`] after its last answer for the
//! next request of the pair (waiters handed a slot then). When a connection that has answered
//! one ends (an authoritative server that closes after an answer), the requests left are sent
//! again on a new connection; otherwise it fails every request still open when it
//! breaks, an answer takes longer than [`crate::outbound::VERIFY_TIMEOUT`], or the
//! gateway shuts down. It is a task of its own: a request whose stream closed only stops
//! waiting for its answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedgate_xmpp::negotiation::{self, DialbackType};
use fedgate_xmpp::ns;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use crate::conn::Conn;
use crate::outbound::{VERIFY_TIMEOUT, expect_element, open_verification};
use crate::resolve::Target;
use crate::state::Shared;

/// How long a verification connection waits, idle, for another request of its pair.
pub const LINGER: Duration = Duration::from_secs(1);
/// `<db:verify>` a connection has sent and not had answered, at most: the per-domain slots, so
/// requests whose streams closed (their slots given back, their `<db:verify>` still out) cannot
/// pile up more on the authoritative server; later requests wait for answers.
pub const OUTSTANDING: usize = crate::admission::VERIFICATIONS_PER_DOMAIN as usize;
/// Requests a connection may have queued before it takes them; past it a request fails at once.
const JOBS: usize = 64;

/// (internal side, receiving domain, originating domain).
type Pair = (bool, String, String);
type Answer = Result<bool, String>;

struct Job {
    id: String,
    key: String,
    reply: oneshot::Sender<Answer>,
}

/// The open verification connections, by pair: a request finds its pair's here (under the lock,
/// so a connection that retires, also under it, never loses one).
#[derive(Default)]
pub struct Callbacks {
    open: Mutex<HashMap<Pair, mpsc::Sender<Job>>>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("open", &self.open())
            .finish()
    }
}

impl Callbacks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Pair, mpsc::Sender<Job>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Verification connections open (or being opened) now.
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    /// Remove `me`'s entry (not a newer connection's for the same pair).
    fn forget(open: &mut HashMap<Pair, mpsc::Sender<Job>>, pair: &Pair, me: &mpsc::Sender<Job>) {
        if open.get(pair).is_some_and(|s| s.same_channel(me)) {
            open.remove(pair);
        }
    }
}

/// Verify `key` for the stream `id` from `originating` to `receiving` on the pair's connection,
/// opened to `targets` if there is none.
pub async fn verify(
    shared: &Arc<Shared>,
    targets: &[Target],
    receiving: &str,
    originating: &str,
    id: &str,
    key: &str,
    internal: bool,
) -> Answer {
    let pair: Pair = (internal, receiving.to_owned(), originating.to_owned());
    let (reply, answer) = oneshot::channel();
    let job = Job {
        id: id.to_owned(),
        key: key.to_owned(),
        reply,
    };
    // The registry's lock is never held across an await.
    let queued = {
        let mut open = shared.callbacks.lock();
        let job = match open.get(&pair) {
            Some(jobs) => match jobs.try_send(job) {
                Ok(()) => None,
                // Never a second connection for the pair while one is registered.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err("the verification connection is busy".to_owned());
                }
                Err(mpsc::error::TrySendError::Closed(job)) => Some(job),
            },
            None => Some(job),
        };
        match job {
            None => true,
            Some(job) => {
                let (tx, rx) = mpsc::channel(JOBS);
                let sent = tx.try_send(job).is_ok();
                if sent {
                    open.insert(pair.clone(), tx.clone());
                    let (shared, targets) = (shared.clone(), targets.to_vec());
                    tokio::spawn(async move { run(shared, pair, targets, rx, tx).await });
                }
                sent
            }
        }
    };
    if !queued {
        return Err("verification connection unavailable".to_owned());
    }
    answer_of(answer).await
}

async fn answer_of(answer: oneshot::Receiver<Answer>) -> Answer {
    answer
        .await
        .unwrap_or_else(|_| Err("the verification connection ended".to_owned()))
}

/// Requests sent and not yet answered, by id: the key and who waits for its verdict.
type Pending = HashMap<String, (String, Vec<oneshot::Sender<Answer>>, Instant)>;

/// The verification connection of `pair`: [`connection`], and a new one for the requests left
/// whenever a connection that had answered at least one ends (an authoritative server that
/// closes after an answer); when one ends without answering, every request left fails.
async fn run(
    shared: Arc<Shared>,
    pair: Pair,
    targets: Vec<Target>,
    mut jobs: mpsc::Receiver<Job>,
    me: mpsc::Sender<Job>,
) {
    let mut carried = Vec::new();
    loop {
        match connection(&shared, &pair, &targets, &mut jobs, &me, carried).await {
            Ok(()) => return,
            // It answered at least one request: progress, so this ends.
            Err(Ended { left, again, .. }) if again => carried = left,
            Err(Ended { why, left, .. }) => {
                let (receiving, originating) = (pair.1.as_str(), pair.2.as_str());
                debug!(receiving, originating, error = %why, "verification connection failed");
                return fail_all(&shared, &pair, &me, &mut jobs, left, &why);
            }
        }
    }
}

/// How a verification connection ended other than idle.
struct Ended {
    why: String,
    /// The requests sent and not answered (or not sent yet).
    left: Vec<Job>,
    /// It had answered before: the requests left may be sent again on a new connection.
    again: bool,
}

/// One verification connection: opened, `<db:verify>` for the `carried` requests and each one
/// that comes, answers handed to their requests, until idle for [`LINGER`] (Ok: it left the
/// registry) or ended.
async fn connection(
    shared: &Arc<Shared>,
    pair: &Pair,
    targets: &[Target],
    jobs: &mut mpsc::Receiver<Job>,
    me: &mpsc::Sender<Job>,
    carried: Vec<Job>,
) -> Result<(), Ended> {
    let (internal, receiving, originating) = (pair.0, pair.1.as_str(), pair.2.as_str());
    let opened = tokio::time::timeout(
        VERIFY_TIMEOUT,
        open_verification(shared, targets, receiving, originating, internal),
    )
    .await
    .unwrap_or_else(|_| Err("verification timed out".to_owned()));
    let mut conn = match opened {
        Ok(conn) => conn,
        Err(why) => {
            return Err(Ended {
                why,
                left: carried,
                again: false,
            });
        }
    };
    let mut pending = Pending::new();
    let mut served = false;
    let mut shutdown = shared.shutdown.clone();
    let mut carried = carried.into_iter();
    let ended: (String, bool) = loop {
        if let Some(job) = carried.next() {
            if let Err(why) = send(&mut conn, pair, &mut pending, job).await {
                break (why, false);
            }
            continue;
        }
        if pending.is_empty() {
            let next = match tokio::time::timeout(LINGER, jobs.recv()).await {
                Ok(Some(job)) => Some(job),
                // Idle: retire, unless a request came in meanwhile.
                _ => match retire(shared, pair, me, jobs) {
                    Some(job) => Some(job),
                    None => {
                        conn.close().await;
                        return Ok(());
                    }
                },
            };
            if let Some(job) = next
                && let Err(why) = send(&mut conn, pair, &mut pending, job).await
            {
                break (why, served);
            }
            continue;
        }
        let oldest = pending.values().map(|(_, _, at)| *at).min();
        let deadline = oldest.unwrap_or_else(Instant::now) + VERIFY_TIMEOUT;
        tokio::select! {
            Some(job) = jobs.recv(), if pending.len() < OUTSTANDING => {
                if let Err(why) = send(&mut conn, pair, &mut pending, job).await {
                    break (why, served);
                }
            }
            e = expect_element(&mut conn) => match e {
                Ok(e) => served |= answered(pair, &mut pending, &e),
                Err(f) => break (f.to_string(), served),
            },
            _ = tokio::time::sleep_until(deadline) => break ("verification timed out".to_owned(), false),
            _ = shutdown.changed() => break ("the gateway is shutting down".to_owned(), false),
        }
    };
    let (why, again) = ended;
    let mut left: Vec<Job> = carried.collect();
    for (id, (key, waiters, _)) in pending {
        left.extend(waiters.into_iter().map(|reply| Job {
            id: id.clone(),
            key: key.clone(),
            reply,
        }));
    }
    Err(Ended { why, left, again })
}

/// Send one request's `<db:verify>`, or join the identical one in flight.
async fn send(conn: &mut Conn, pair: &Pair, pending: &mut Pending, job: Job) -> Result<(), String> {
    if job.reply.is_closed() {
        return Ok(()); // Its stream is gone.
    }
    if let Some((key, waiters, _)) = pending.get_mut(&job.id) {
        if *key == job.key {
            waiters.push(job.reply);
        } else {
            let _ = job.reply.send(Err(
                "another key for this stream id is being verified".to_owned()
            ));
        }
        return Ok(());
    }
    let (receiving, originating) = (pair.1.as_str(), pair.2.as_str());
    conn.send(&negotiation::db_verify_request(
        receiving,
        originating,
        &job.id,
        &job.key,
    ))
    .await
    .map_err(|e| e.to_string())?;
    pending.insert(job.id, (job.key, vec![job.reply], Instant::now()));
    Ok(())
}

/// An element from the authoritative server: the answer to a request in flight if it is a
/// `db:verify` with its id, from the originating domain to the receiving one; else ignored.
fn answered(pair: &Pair, pending: &mut Pending, e: &fedgate_xmpp::Element) -> bool {
    if !e.is("verify", ns::DIALBACK) {
        return false;
    }
    let (receiving, originating) = (pair.1.as_str(), pair.2.as_str());
    let addressed = e
        .attr("from")
        .is_some_and(|f| f.eq_ignore_ascii_case(originating))
        && e.attr("to")
            .is_some_and(|t| t.eq_ignore_ascii_case(receiving));
    let Some(id) = e.attr("id").filter(|_| addressed) else {
        return false;
    };
    let Some((_, waiters, _)) = pending.remove(id) else {
        return false;
    };
    let verdict = match negotiation::dialback_type(e) {
        Some(DialbackType::Valid) => Ok(true),
        Some(DialbackType::Invalid) => Ok(false),
        other => Err(format!("verification error: {other:?}")),
    };
    for w in waiters {
        let _ = w.send(verdict.clone());
    }
    true
}

/// Idle: leave the registry (under its lock, so no request is sent to a connection that is
/// going), unless a request is queued, which is returned to be sent.
fn retire(
    shared: &Shared,
    pair: &Pair,
    me: &mpsc::Sender<Job>,
    jobs: &mut mpsc::Receiver<Job>,
) -> Option<Job> {
    let mut open = shared.callbacks.lock();
    if let Ok(job) = jobs.try_recv() {
        return Some(job);
    }
    Callbacks::forget(&mut open, pair, me);
    None
}

/// The connection failed: every request left or queued gets `why`.
fn fail_all(
    shared: &Shared,
    pair: &Pair,
    me: &mpsc::Sender<Job>,
    jobs: &mut mpsc::Receiver<Job>,
    left: Vec<Job>,
    why: &str,
) {
    let mut open = shared.callbacks.lock();
    Callbacks::forget(&mut open, pair, me);
    drop(open);
    let queued = std::iter::from_fn(|| jobs.try_recv().ok());
    for job in left.into_iter().chain(queued) {
        let _ = job.reply.send(Err(why.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> Pair {
        (false, "corp.example".into(), "partner.example".into())
    }

    fn answer(from: &str, to: &str, id: &str, t: DialbackType) -> fedgate_xmpp::Element {
        negotiation::db_verify_response(from, to, id, &t)
    }

    #[test]
    fn an_answer_is_taken_only_for_its_id_and_pair() {
        let mut pending = Pending::new();
        let (a1, mut r1) = oneshot::channel();
        let (a2, mut r2) = oneshot::channel();
        let (b, mut rb) = oneshot::channel();
        pending.insert(
            "id-a".into(),
            ("key-a".into(), vec![a1, a2], Instant::now()),
        );
        pending.insert("id-b".into(), ("key-b".into(), vec![b], Instant::now()));
        // Another pair's answer, an id not asked about: ignored.
        let p = pair();
        answered(
            &p,
            &mut pending,
            &answer("evil.example", "corp.example", "id-a", DialbackType::Valid),
        );
        answered(
            &p,
            &mut pending,
            &answer(
                "partner.example",
                "other.example",
                "id-a",
                DialbackType::Valid,
            ),
        );
        answered(
            &p,
            &mut pending,
            &answer(
                "partner.example",
                "corp.example",
                "id-x",
                DialbackType::Valid,
            ),
        );
        assert_eq!(pending.len(), 2);
        assert!(r1.try_recv().is_err());
        // Its answer goes to both requests that asked the identical question, and no other.
        answered(
            &p,
            &mut pending,
            &answer(
                "Partner.Example",
                "corp.example",
                "id-a",
                DialbackType::Valid,
            ),
        );
        assert_eq!(r1.try_recv().ok(), Some(Ok(true)));
        assert_eq!(r2.try_recv().ok(), Some(Ok(true)));
        assert!(rb.try_recv().is_err());
        answered(
            &p,
            &mut pending,
            &answer(
                "partner.example",
                "corp.example",
                "id-b",
                DialbackType::Invalid,
            ),
        );
        assert_eq!(rb.try_recv().ok(), Some(Ok(false)));
        assert!(pending.is_empty());
    }
}
