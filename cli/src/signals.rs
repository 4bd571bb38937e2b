//! SIGINT and SIGTERM during a backup: the first sets a flag the engine
//! checks between files, chunks, blobs and packs, so the backup stops
//! cleanly (no snapshot, no temporary file, stored packs indexed) and the
//! command exits 130 (SIGINT) or 143 (SIGTERM), as a shell reports a
//! process killed by that signal. A second signal ends the process at once
//! with the same code. Only commands that call [`install`] change how they
//! react to signals; every other command dies of them as usual.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Which signal arrived first (0: none), once [`install`] ran.
static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Exit status of a command stopped by `signal`: 128 + its number.
fn status(signal: i32) -> i32 {
    128 + signal
}

/// Catches SIGINT and SIGTERM from now on; returns the flag the first of
/// them sets (for [`cairn_engine::BackupOptions::cancel`]).
pub fn install() -> std::io::Result<Arc<AtomicBool>> {
    let cancel = Arc::new(AtomicBool::new(false));
    let received = RECEIVED.get_or_init(|| Arc::new(AtomicUsize::new(0))).clone();
    for sig in [SIGINT, SIGTERM] {
        // Actions run in the order registered. The first signal finds
        // `cancel` clear, so the shutdown does nothing; it then sets `cancel`
        // and records its number. A second one finds `cancel` set and exits
        // at once (so `received` keeps the first signal's number).
        signal_hook::flag::register_conditional_shutdown(sig, status(sig), cancel.clone())?;
        signal_hook::flag::register(sig, cancel.clone())?;
        signal_hook::flag::register_usize(sig, received.clone(), sig as usize)?;
    }
    Ok(cancel)
}

/// The exit code of a command the engine reports as interrupted: 130 after
/// SIGINT, 143 after SIGTERM (130 when no signal was seen: a cancellation
/// has no other source today).
pub fn exit_code() -> u8 {
    let sig = RECEIVED.get().map_or(0, |r| r.load(Ordering::Relaxed));
    let sig = if sig == 0 { SIGINT } else { sig as i32 };
    u8::try_from(status(sig)).unwrap_or(130)
}
