//! `cairn mount`: serve the snapshots until Ctrl-C or an unmount.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::{filter, Ctx};
use crate::args::MountArgs;
use crate::output;

pub fn run(ctx: &Ctx, a: MountArgs) -> Result<u8> {
    let repo = ctx.open()?;
    // Every SIGINT or SIGTERM asks for an unmount; unlike a backup's, a
    // second one does not kill the process, which would leave a dead mount
    // behind while something still has it open.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let opts = cairn_engine::MountOptions {
        filter: filter(&a.filter),
        allow_other: a.allow_other,
        cache_bytes: a.read_cache.saturating_mul(1 << 20),
        ..Default::default()
    };
    let mounted = cairn_engine::mount(repo, &a.mountpoint, opts)?;
    let at = a.mountpoint.display();
    if ctx.json {
        output::json(&serde_json::json!({"mountpoint": a.mountpoint, "snapshots": mounted.snapshots()}))?;
    } else {
        ctx.say(format!(
            "{} snapshot(s) mounted read-only at {at}; Ctrl-C or `umount {at}` ends it",
            mounted.snapshots()
        ));
    }
    loop {
        if mounted.has_ended() {
            break;
        }
        if stop.swap(false, Ordering::SeqCst) {
            if mounted.try_unmount()? {
                break;
            }
            eprintln!("{at} is busy (a shell or program has something in it open): close it, then press Ctrl-C again");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    mounted.wait()?;
    ctx.say(format!("unmounted {at}"));
    Ok(0)
}
