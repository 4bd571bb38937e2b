//! The held lock: a background thread refreshes it, the holder checks it
//! before each destructive step, and dropping it removes it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{human, remove_lock, Lock, LockError, LockOptions};
use crate::backend::{BackendError, ObjectKind};
use crate::repository::Repository;
use crate::time::now_ns;

/// The exclusive maintenance lock, held until dropped or
/// [released](MaintenanceLock::release).
///
/// A thread writes a refreshed lock object every
/// [`LockOptions::refresh_every`] (a new object, then the previous one is
/// removed). If a refresh fails, or the object has vanished (someone ran
/// `cairn unlock --remove-all`, or judged it stale), the lock is lost: it is
/// not written again, and [`ensure_held`](MaintenanceLock::ensure_held)
/// fails from then on. Dropping it stops the thread and removes the object;
/// errors there are only logged, [`release`](MaintenanceLock::release)
/// returns them.
#[derive(Debug)]
pub struct MaintenanceLock {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    repo: Repository,
    stale_after: Duration,
    refresh_every: Duration,
    /// Held for a whole refresh, so `ensure_held` never looks at an object
    /// that a refresh is replacing.
    state: Mutex<State>,
    stop: Mutex<bool>,
    wake: Condvar,
}

#[derive(Debug)]
struct State {
    /// The current lock object.
    name: String,
    lock: Lock,
    /// Why the lock was lost, once it was.
    lost: Option<String>,
    /// Objects of ours a refresh could not remove: removed on release.
    leftovers: Vec<String>,
}

/// A poisoned mutex still holds consistent data here: every update of the
/// state is a handful of assignments after the storage call.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MaintenanceLock {
    /// Starts refreshing the lock just written as `name`.
    pub(super) fn start(repo: &Repository, name: String, lock: Lock, opts: &LockOptions) -> Result<Self, LockError> {
        let shared = Arc::new(Shared {
            repo: repo.clone(),
            stale_after: opts.stale_after,
            refresh_every: opts.refresh_every,
            state: Mutex::new(State {
                name: name.clone(),
                lock,
                lost: None,
                leftovers: Vec::new(),
            }),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        match std::thread::Builder::new()
            .name("cairn-lock-refresh".into())
            .spawn(move || s.refresh_loop())
        {
            Ok(t) => Ok(MaintenanceLock {
                shared,
                thread: Some(t),
            }),
            Err(e) => {
                // Without refreshes the lock would go stale under us.
                remove_lock(repo, &name)?;
                Err(LockError::Thread(e))
            }
        }
    }

    /// The current lock object's name (it changes with every refresh).
    pub fn name(&self) -> String {
        locked(&self.shared.state).name.clone()
    }

    /// The lock as last written.
    pub fn lock(&self) -> Lock {
        locked(&self.shared.state).lock.clone()
    }

    /// Succeeds when the lock is still ours: no refresh failed, the last
    /// refresh is within the stale period (so nobody may have broken it),
    /// and the object is still in the repository (one `stat`). Call it
    /// before each destructive step; on [`LockError::Lost`], stop.
    pub fn ensure_held(&self) -> Result<(), LockError> {
        let mut st = locked(&self.shared.state);
        if st.lost.is_none() {
            let age = now_ns().saturating_sub(st.lock.refreshed_ns);
            if u64::try_from(age).is_ok_and(|a| Duration::from_nanos(a) > self.shared.stale_after) {
                st.lost = Some(format!(
                    "it was not refreshed for longer than {}, so another process may have removed it as stale",
                    human(self.shared.stale_after)
                ));
            } else if self.shared.repo.backend().stat(ObjectKind::Lock, &st.name)?.is_none() {
                st.lost = Some(vanished());
            }
        }
        match &st.lost {
            None => Ok(()),
            Some(why) => Err(LockError::Lost {
                name: st.name.clone(),
                why: why.clone(),
            }),
        }
    }

    /// Stops refreshing and removes the lock object. Fails when removing
    /// fails, or with [`LockError::Lost`] when the lock had been lost
    /// meanwhile (the repository was then not exclusively held throughout).
    pub fn release(mut self) -> Result<(), LockError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), LockError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        *locked(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if thread.join().is_err() {
            tracing::warn!("the lock refresh thread panicked");
        }
        let mut st = locked(&self.shared.state);
        let names: Vec<String> = std::iter::once(st.name.clone()).chain(st.leftovers.drain(..)).collect();
        for n in &names {
            remove_lock(&self.shared.repo, n)?;
        }
        match &st.lost {
            None => Ok(()),
            Some(why) => Err(LockError::Lost {
                name: st.name.clone(),
                why: why.clone(),
            }),
        }
    }
}

impl Drop for MaintenanceLock {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("releasing the maintenance lock: {e}");
        }
    }
}

fn vanished() -> String {
    "its object was removed by someone else (`cairn unlock --remove-all`, or a process that judged it stale)".into()
}

impl Shared {
    fn refresh_loop(&self) {
        loop {
            let stop = locked(&self.stop);
            let (stop, _) = self
                .wake
                .wait_timeout_while(stop, self.refresh_every, |stop| !*stop)
                .unwrap_or_else(|p| p.into_inner());
            if *stop {
                return;
            }
            drop(stop);
            if !self.refresh() {
                return;
            }
        }
    }

    /// Replaces the lock object by one with a new `refreshed_ns`; false when
    /// the lock is lost (then it is never written again).
    fn refresh(&self) -> bool {
        let mut st = locked(&self.state);
        let backend = self.repo.backend();
        // Writing a new object for a lock someone removed would undo their
        // `unlock`: look first.
        match backend.stat(ObjectKind::Lock, &st.name) {
            Ok(Some(_)) => {}
            Ok(None) => return st.lose(vanished()),
            Err(e) => return st.lose(format!("checking it failed: {e}")),
        }
        let mut next = st.lock.clone();
        next.refreshed_ns = now_ns();
        let new_name = match self.repo.save_file(&next) {
            Ok((id, _)) => id.to_hex(),
            Err(e) => return st.lose(format!("refreshing it failed: {e}")),
        };
        let old = std::mem::replace(&mut st.name, new_name);
        st.lock = next;
        match backend.remove(ObjectKind::Lock, &old) {
            Ok(()) => {
                tracing::debug!("refreshed the maintenance lock: {} replaces {old}", st.name);
                true
            }
            // Removed between our look and our write: someone broke it, and
            // the new object must not stand in for it.
            Err(BackendError::NotFound { .. }) => {
                if let Err(e) = remove_lock(&self.repo, &st.name) {
                    tracing::warn!("removing the lock object {}: {e}", st.name);
                }
                st.lose(vanished())
            }
            Err(e) => {
                st.leftovers.push(old);
                st.lose(format!("removing the previous lock object failed: {e}"))
            }
        }
    }
}

impl State {
    /// Records the loss; returns false (stop refreshing) for the caller.
    fn lose(&mut self, why: String) -> bool {
        tracing::warn!("lost the maintenance lock {}: {why}", self.name);
        self.lost = Some(why);
        false
    }
}
