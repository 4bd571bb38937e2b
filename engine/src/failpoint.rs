//! Named points at which a test can have the process killed, to prove with
//! real processes that a crash there loses nothing: with the environment
//! variable `CAIRN_FAILPOINT=<name>`, reaching `<name>` sends SIGKILL to
//! the process itself (no destructor, no flush, no lock release — as a
//! power cut or the OOM killer would). Unset, a point costs one lookup of
//! an environment variable, on paths that run a few times per command.

/// Dies here if `CAIRN_FAILPOINT` names this point.
pub(crate) fn hit(name: &str) {
    if std::env::var_os("CAIRN_FAILPOINT").is_some_and(|v| v == name) {
        tracing::error!("failpoint {name}: killing the process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
