//! `[internal_dns]`: the gateway keeps the internal side's DNS file (what `fedgate internal-dns`
//! prints) in step with the partner list. Whenever the partners in the snapshot give another
//! text, the file is replaced atomically (a temporary file in the same directory, renamed over
//! it) and the reload command runs, bounded by `reload_timeout`, with no shell. All of it runs in
//! its own task: a slow disk or a hanging command never holds up a stream. The outcome is logged
//! and shown in `/status` and `/metrics`; a failed attempt is retried after [`RETRY_AFTER`] (or
//! at once when the list changes again). The section is read from the current configuration at
//! every round, so a SIGHUP that adds, changes or removes `[internal_dns]` applies within a
//! round: a changed section is written at once, a removed one is no longer kept in step (the
//! file is left as it is).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedgate_model::DomainPattern;
use fedgate_model::internal_dns::render;
use tracing::{info, warn};

use crate::config::InternalDnsConfig;
use crate::state::Shared;

/// How long after a failed attempt the same text is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What keeping the file in step has done so far, for `/status` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InternalDnsStatus {
    pub file: String,
    /// The store revision of the partner list the file was last written from.
    pub revision: Option<u64>,
    /// Successful rewrites (file written and reload command succeeded).
    pub rewrites: u64,
    /// Failed attempts (writing the file, or the reload command).
    pub failures: u64,
    /// Whether the last attempt succeeded (the file matches the list).
    pub ok: bool,
    /// Why the last attempt failed, while it is the last one.
    pub last_error: Option<String>,
}

/// Whether `text` must be written now: it differs from what was last written and, if the same
/// text failed lately, [`RETRY_AFTER`] has passed.
pub fn due(
    text: &str,
    written: Option<&str>,
    failed: Option<(&str, Instant)>,
    now: Instant,
) -> bool {
    if written == Some(text) {
        return false;
    }
    match failed {
        Some((t, at)) if t == text => now.duration_since(at) >= RETRY_AFTER,
        _ => true,
    }
}

/// Runs until the gateway stops (the task is aborted with the others).
pub async fn keep_in_step(shared: Arc<Shared>) {
    // The section the state below belongs to, what was last written and the last failure.
    let mut section: Option<InternalDnsConfig> = None;
    let mut written: Option<String> = None;
    let mut failed: Option<(String, Instant)> = None;
    let mut tick = tokio::time::interval(crate::runtime::REFRESH_INTERVAL);
    loop {
        tick.tick().await;
        let configured = shared.config().internal_dns.clone();
        if configured != section {
            if section.is_some() {
                info!(
                    configured = configured.is_some(),
                    "[internal_dns] changed by a reload"
                );
            }
            written = None;
            failed = None;
            match &configured {
                Some(c) => shared.set_internal_dns_status(InternalDnsStatus {
                    file: c.file.display().to_string(),
                    ..Default::default()
                }),
                None => shared.clear_internal_dns_status(),
            }
            section = configured.clone();
        }
        let Some(cfg) = configured else {
            continue;
        };
        let snapshot = shared.snapshot();
        let patterns: Vec<DomainPattern> = snapshot
            .index
            .partners()
            .flat_map(|p| p.patterns())
            .collect();
        let text = render(cfg.format, &patterns, cfg.target);
        let last_failed = failed.as_ref().map(|(t, at)| (t.as_str(), *at));
        if !due(&text, written.as_deref(), last_failed, Instant::now()) {
            continue;
        }
        let result = apply(&cfg, &text).await;
        let mut status = shared.internal_dns_status();
        match result {
            Ok(()) => {
                info!(file = %cfg.file.display(), revision = snapshot.revision, domains = patterns.len(), "internal DNS file rewritten");
                status.rewrites += 1;
                status.ok = true;
                status.revision = Some(snapshot.revision);
                status.last_error = None;
                written = Some(text);
                failed = None;
            }
            Err(e) => {
                warn!(file = %cfg.file.display(), revision = snapshot.revision, error = %e, "keeping the internal DNS file in step failed; retrying in 30 s or at the next change");
                status.failures += 1;
                status.ok = false;
                status.last_error = Some(e);
                failed = Some((text, Instant::now()));
            }
        }
        shared.set_internal_dns_status(status);
    }
}

/// Write the file, then run the reload command.
async fn apply(cfg: &InternalDnsConfig, text: &str) -> Result<(), String> {
    let file = cfg.file.clone();
    let body = text.to_owned();
    tokio::task::spawn_blocking(move || write_atomically(&file, &body))
        .await
        .map_err(|e| format!("the write task failed: {e}"))?
        .map_err(|e| format!("writing {}: {e}", cfg.file.display()))?;
    match cfg.reload_command.split_first() {
        None => Ok(()),
        Some((program, args)) => reload(program, args, cfg.reload_timeout).await,
    }
}

/// Replace `path` by `text` so that a reader sees the old file or the new one, never a part.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let tmp = path.with_file_name(format!(".{}.fedgate-tmp", name.to_string_lossy()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Run the reload command (no shell, no input, output discarded); killed past `timeout`.
async fn reload(program: &str, args: &[String], timeout: Duration) -> Result<(), String> {
    let shown = std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("the reload command '{shown}' could not start: {e}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "the reload command '{shown}' did not finish within {} s and was killed",
                timeout.as_secs()
            ))
        }
        Ok(Err(e)) => Err(format!("the reload command '{shown}' failed: {e}")),
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("the reload command '{shown}' exited with {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_per_text_and_a_failure_retried_later_or_on_change() {
        let now = Instant::now();
        assert!(due("a", None, None, now), "the first text is written");
        assert!(
            !due("a", Some("a"), None, now),
            "the same text is not rewritten"
        );
        assert!(due("b", Some("a"), None, now), "a changed list is written");
        let failed_at = now;
        assert!(!due(
            "b",
            Some("a"),
            Some(("b", failed_at)),
            now + Duration::from_secs(1)
        ));
        assert!(due(
            "b",
            Some("a"),
            Some(("b", failed_at)),
            now + RETRY_AFTER
        ));
        assert!(
            due(
                "c",
                Some("a"),
                Some(("b", failed_at)),
                now + Duration::from_secs(1)
            ),
            "another change is tried at once"
        );
    }

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partners.conf");
        write_atomically(&path, "one\n").unwrap();
        write_atomically(&path, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["partners.conf"]);
        let missing = dir.path().join("no-such-dir").join("partners.conf");
        assert!(write_atomically(&missing, "x").is_err());
    }

    #[tokio::test]
    async fn a_reload_command_that_fails_or_hangs_is_reported_and_bounded() {
        assert_eq!(reload("true", &[], Duration::from_secs(5)).await, Ok(()));
        let e = reload("false", &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.contains("'false' exited with"), "{e}");
        let e = reload("/nonexistent/reload", &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.contains("could not start"), "{e}");
        let started = Instant::now();
        let e = reload("sleep", &["30".into()], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.contains("did not finish within 1 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
