//! Progress bars, drawn from the engine's counters by a separate thread,
//! only when standard error is a terminal.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Whether bars should be drawn at all.
pub fn enabled(quiet: bool, json: bool) -> bool {
    !quiet && !json && std::io::stderr().is_terminal()
}

impl Bar {
    /// A byte-progress bar; `poll` returns (bytes done, bytes total, message).
    pub fn bytes(label: &'static str, poll: impl Fn() -> (u64, u64, String) + Send + 'static) -> Self {
        Self::drawn(
            label,
            "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            poll,
        )
    }

    /// A bar counting items; `poll` returns (done, total, what they are).
    pub fn count(label: &'static str, poll: impl Fn() -> (u64, u64, String) + Send + 'static) -> Self {
        Self::drawn(label, "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}", poll)
    }

    fn drawn(
        label: &'static str,
        template: &'static str,
        poll: impl Fn() -> (u64, u64, String) + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let pb = ProgressBar::new(0);
            let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
            pb.set_style(style);
            pb.set_prefix(label);
            while !s.load(Ordering::Relaxed) {
                let (done, total, msg) = poll();
                pb.set_length(total);
                pb.set_position(done);
                pb.set_message(msg);
                std::thread::sleep(Duration::from_millis(100));
            }
            pb.finish_and_clear();
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
