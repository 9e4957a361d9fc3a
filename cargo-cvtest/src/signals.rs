//! Ctrl-C and SIGTERM: the first one asks the run to stop (no new tests, running containers
//! killed, partial summary); a second one exits at once — the containers die with us (their
//! init watches a pipe only we hold), and the next run sweeps their cgroups.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::exit_codes;

#[derive(Debug, Clone)]
pub(crate) struct SignalWatch {
    seen: Arc<AtomicBool>,
    which: Arc<AtomicUsize>,
}

impl SignalWatch {
    /// Installs the handlers (SIGINT, SIGTERM, SIGHUP).
    pub(crate) fn install() -> std::io::Result<SignalWatch> {
        let seen = Arc::new(AtomicBool::new(false));
        let which = Arc::new(AtomicUsize::new(0));
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // Order matters: the conditional exit checks the flag before this signal sets it, so
            // only a second signal exits.
            signal_hook::flag::register_conditional_shutdown(
                sig,
                exit_codes::INTERRUPTED_BASE + sig,
                seen.clone(),
            )?;
            signal_hook::flag::register(sig, seen.clone())?;
            signal_hook::flag::register_usize(sig, which.clone(), sig as usize)?;
        }
        Ok(SignalWatch { seen, which })
    }

    /// The signal that arrived, if any.
    pub(crate) fn received(&self) -> Option<i32> {
        if self.seen.load(Ordering::SeqCst) {
            Some(self.which.load(Ordering::SeqCst) as i32).filter(|&s| s != 0).or(Some(libc::SIGINT))
        } else {
            None
        }
    }
}
