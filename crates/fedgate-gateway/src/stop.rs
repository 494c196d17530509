//! Waits that hear a stream task's stop signals: its control channel (a live change closing the
//! stream, [`Control`]) and the gateway's shutdown. Every long wait of a stream task (a write to
//! a peer that may stop reading, room on an outbound queue, an authorisation commit, a TLS
//! handshake, a certificate check, a stream lease) goes through [`until_stopped`], so a Remove or
//! a SIGTERM is heard while it waits instead of after it.
//!
//! At shutdown the wait under way gets [`CLOSE_WRITE_TIMEOUT`] more to finish (a write in
//! progress may complete, and the stream then closes with `<system-shutdown/>`); a control
//! message drops it at once. A write dropped half-way leaves its [`Conn`](crate::conn::Conn)
//! writing nothing more ([`Conn::send_bytes`](crate::conn::Conn::send_bytes)).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

use crate::conn::CLOSE_WRITE_TIMEOUT;
use crate::state::{Control, ControlReceiver};

/// How a wait under [`until_stopped`] ended.
#[derive(Debug)]
pub enum Waited<T> {
    /// It finished before any stop signal.
    Done(T),
    /// A control message came first; the wait was dropped.
    Control(Control),
    /// Shutdown came first; the wait was given [`CLOSE_WRITE_TIMEOUT`] more and finished
    /// (`Some`) or was dropped (`None`).
    Shutdown(Option<T>),
}

/// Wait for `work` while hearing the stream's control channel and the gateway's shutdown
/// (see the module documentation). A closed control channel is not a signal.
///
/// `work` is pinned by the caller (`std::pin::pin!`): taken by value, it would be stored in
/// this future once more for every async call on the way (arguments are copied into the
/// future's state), and a stream's handling is large: an idle stream's task is as large as its
/// largest wait.
pub fn until_stopped<'a, F: Future + ?Sized>(
    work: Pin<&'a mut F>,
    ctl: &'a mut ControlReceiver,
    shutdown: &'a mut watch::Receiver<bool>,
) -> impl Future<Output = Waited<F::Output>> + 'a {
    until_stopped_within(work, ctl, shutdown, CLOSE_WRITE_TIMEOUT)
}

/// [`until_stopped`] with the time `work` gets after shutdown.
async fn until_stopped_within<F: Future + ?Sized>(
    mut work: Pin<&mut F>,
    ctl: &mut ControlReceiver,
    shutdown: &mut watch::Receiver<bool>,
    grace: Duration,
) -> Waited<F::Output> {
    // The grace's timer only once the select is over: it takes no room beside the select's
    // futures.
    let first = tokio::select! {
        out = work.as_mut() => Waited::Done(out),
        Some(c) = ctl.recv() => Waited::Control(c),
        _ = shutdown.changed() => Waited::Shutdown(None),
    };
    match first {
        Waited::Shutdown(_) => Waited::Shutdown(tokio::time::timeout(grace, work).await.ok()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::control_channel;
    use fedgate_xmpp::{StreamError, StreamErrorCondition};
    use tokio::sync::oneshot;

    fn close() -> Control {
        Control::Close(
            StreamError::new(StreamErrorCondition::PolicyViolation, "removed"),
            "partner_removed",
        )
    }

    #[tokio::test]
    async fn work_that_finishes_first_is_done() {
        let (_ctl_tx, mut ctl) = control_channel();
        let (_stop, mut shutdown) = watch::channel(false);
        let r = until_stopped(std::pin::pin!(async { 7 }), &mut ctl, &mut shutdown).await;
        assert!(matches!(r, Waited::Done(7)), "{r:?}");
    }

    #[tokio::test]
    async fn a_control_message_drops_the_wait() {
        let (ctl_tx, mut ctl) = control_channel();
        let (_stop, mut shutdown) = watch::channel(false);
        let (_never_tx, never) = oneshot::channel::<()>();
        ctl_tx.send(close()).unwrap();
        match until_stopped(std::pin::pin!(never), &mut ctl, &mut shutdown).await {
            Waited::Control(Control::Close(e, reason)) => {
                assert_eq!(e.condition, StreamErrorCondition::PolicyViolation);
                assert_eq!(reason, "partner_removed");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn at_shutdown_the_wait_may_still_finish_or_is_dropped() {
        let (_ctl_tx, mut ctl) = control_channel();
        // Shutdown before the work can finish; it finishes meanwhile (a task of this
        // current-thread runtime runs once the wait yields): its result comes with the shutdown.
        let (stop, mut shutdown) = watch::channel(false);
        stop.send(true).unwrap();
        let (tx, rx) = oneshot::channel::<u8>();
        tokio::spawn(async move {
            let _ = tx.send(1);
        });
        let r = until_stopped(std::pin::pin!(rx), &mut ctl, &mut shutdown).await;
        assert!(matches!(r, Waited::Shutdown(Some(Ok(1)))), "{r:?}");
        // Work that does not finish within the grace is dropped.
        let (stop, mut shutdown) = watch::channel(false);
        stop.send(true).unwrap();
        let (_never_tx, never) = oneshot::channel::<()>();
        let r = until_stopped_within(
            std::pin::pin!(never),
            &mut ctl,
            &mut shutdown,
            Duration::ZERO,
        )
        .await;
        assert!(matches!(r, Waited::Shutdown(None)), "{r:?}");
    }

    #[tokio::test]
    async fn a_closed_control_channel_is_no_signal() {
        let (ctl_tx, mut ctl) = control_channel();
        drop(ctl_tx);
        let (_stop, mut shutdown) = watch::channel(false);
        let (tx, rx) = oneshot::channel::<u8>();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            let _ = tx.send(3);
        });
        let r = until_stopped(std::pin::pin!(rx), &mut ctl, &mut shutdown).await;
        assert!(matches!(r, Waited::Done(Ok(3))), "{r:?}");
    }
}
