use std::os::unix::ffi::OsStrExt;

use anyhow::Result;
use cairn_engine::{filter_snapshots, find_snapshot, NameMatcher, NodeKind, SourceKind};

use super::{filter, Ctx};
use crate::args::{DiffArgs, FilterArgs, FindArgs, LsArgs};
use crate::output::{self, bytes, local_time};

pub fn snapshots(ctx: &Ctx, f: FilterArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let list = filter_snapshots(&repo, &filter(&f))?;
    if ctx.json {
        let v: Vec<_> = list
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": id.to_hex(), "short_id": id.short(), "time": output::rfc3339(s.time_ns), "host": s.host, "user": s.user,
                    "tags": s.tags, "paths": s.paths, "source": s.source.label(),
                    // Secrets in it are masked (README "Secrets").
                    "command": match &s.source { SourceKind::Command { argv, .. } => Some(argv), _ => None },
                    "tree": s.tree.to_hex(),
                    "parent": s.parent.map(|p| p.to_hex()), "rewritten_from": s.rewritten_from.map(|p| p.to_hex()),
                    "program_version": s.program_version, "summary": s.summary,
                    "details": s.details, "chunk_sizes": s.chunk_sizes,
                    "copied_from": s.copied_from.map(|c| serde_json::json!({
                        "repository": c.repository.to_hex(), "snapshot": c.snapshot.to_hex(),
                    })),
                })
            })
            .collect();
        output::json(&v)?;
        return Ok(0);
    }
    // The column appears once some snapshot is a rewritten copy.
    let rewritten = list.iter().any(|(_, s)| s.rewritten_from.is_some());
    // And once some snapshot is a copy from another repository.
    let copied = list.iter().any(|(_, s)| s.copied_from.is_some());
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|(id, s)| {
            let size = s.summary.bytes_new + s.summary.bytes_changed + s.summary.bytes_unchanged;
            let mut row = vec![
                id.short(),
                local_time(s.time_ns),
                s.host.clone(),
                s.tags.join(","),
                s.source.label().into(),
                bytes(size),
                s.paths.join(" "),
            ];
            if rewritten {
                row.push(s.rewritten_from.map(|p| p.short()).unwrap_or_default());
            }
            if copied {
                row.push(
                    s.copied_from
                        .map(|c| format!("{} in {}", c.snapshot.short(), &c.repository.to_hex()[..8]))
                        .unwrap_or_default(),
                );
            }
            row
        })
        .collect();
    let mut header = vec!["ID", "Time", "Host", "Tags", "Source", "Size", "Paths"];
    if rewritten {
        header.push("Rewritten from");
    }
    if copied {
        header.push("Copied from");
    }
    output::table(&header, &rows)?;
    output::outln(&format!("{} snapshot(s)", list.len()))?;
    command_lines(&list)?;
    Ok(0)
}

/// Under the table, each command snapshot's command line (secrets in it
/// masked, README "Secrets") and how it exited: too long for a column.
fn command_lines(list: &[(cairn_engine::SnapshotId, cairn_engine::Snapshot)]) -> Result<()> {
    let mut first = true;
    for (id, s) in list {
        let SourceKind::Command { argv, .. } = &s.source else {
            continue;
        };
        if first {
            output::outln("commands:")?;
            first = false;
        }
        let status = match &s.details {
            cairn_engine::SourceDetails::Command(c) => format!("exit {}", c.exit_code),
            _ => "exit status not recorded".into(),
        };
        output::outln(&format!("  {}  {status}  {}", id.short(), argv.join(" ")))?;
    }
    Ok(())
}

fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    }
}

fn mode_string(k: NodeKind, mode: u32) -> String {
    let mut s = String::new();
    s.push(kind_char(k));
    // setuid, setgid and sticky replace the x of user, group and other.
    let specials = [(0o4000, 's', 'S'), (0o2000, 's', 'S'), (0o1000, 't', 'T')];
    for (i, shift) in [6, 3, 0].into_iter().enumerate() {
        let b = (mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        let (bit, with_x, without_x) = specials[i];
        s.push(match (mode & bit != 0, b & 1 != 0) {
            (true, true) => with_x,
            (true, false) => without_x,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

pub fn ls(ctx: &Ctx, a: LsArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let (id, snap) = find_snapshot(&repo, &a.snapshot, &filter(&a.filter))?;
    let index = repo.load_index()?;
    let start = a.path.clone().unwrap_or_else(|| "/".into());
    let mut entries = Vec::new();
    let mut out = output::Stdout;
    let mut write_err: Option<std::io::Error> = None;
    cairn_engine::walk_snapshot(&repo, &index, &snap, &start, !a.no_recursive, &mut |p, n| {
        if ctx.json {
            entries.push(serde_json::json!({
                "path": p.to_string_lossy(), "name": n.name_lossy(), "type": n.kind.name(),
                "size": n.size, "mode": n.mode, "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group,
                "mtime": output::rfc3339(n.mtime_ns), "inode": n.inode, "links": n.nlink,
                "target": n.symlink_target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
            }));
        } else if write_err.is_none() {
            use std::io::Write;
            let r = if a.long {
                writeln!(
                    out,
                    "{} {:>8} {:>8} {:>12} {} {}",
                    mode_string(n.kind, n.mode),
                    n.user,
                    n.group,
                    n.size,
                    local_time(n.mtime_ns),
                    p.display()
                )
            } else {
                out.write_all(p.as_os_str().as_bytes())
                    .and_then(|_| out.write_all(b"\n"))
            };
            if let Err(e) = r {
                write_err = Some(e);
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    std::io::Write::flush(&mut out)?;
    if ctx.json {
        output::json(&serde_json::json!({"snapshot": id.to_hex(), "entries": entries}))?;
    }
    Ok(0)
}

pub fn diff(ctx: &Ctx, a: DiffArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let none = Default::default();
    let (ia, sa) = find_snapshot(&repo, &a.first, &none)?;
    let (ib, sb) = find_snapshot(&repo, &a.second, &none)?;
    let index = repo.load_index()?;
    let changes = cairn_engine::diff(&repo, &index, &sa, &sb)?;
    if ctx.json {
        output::json(&serde_json::json!({"first": ia.to_hex(), "second": ib.to_hex(), "changes": changes}))?;
    } else {
        for c in &changes {
            output::outln(&format!(
                "{}    {}{}",
                c.change.marker(),
                c.path,
                if c.dir { "/" } else { "" }
            ))?;
        }
        ctx.say(format!(
            "{} change(s) between {} and {}",
            changes.len(),
            ia.short(),
            ib.short()
        ));
    }
    Ok(0)
}

pub fn find(ctx: &Ctx, a: FindArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let matcher = NameMatcher::new(&a.pattern)?;
    let index = repo.load_index()?;
    let snapshots = filter_snapshots(&repo, &filter(&a.filter))?;
    let hits = cairn_engine::find(&repo, &index, &snapshots, &matcher)?;
    if ctx.json {
        let v: Vec<_> = hits
            .iter()
            .map(|h| serde_json::json!({"snapshot": h.snapshot.to_hex(), "time": output::rfc3339(h.time_ns), "path": h.path, "size": h.size, "type": h.kind.name()}))
            .collect();
        output::json(&v)?;
    } else {
        let rows: Vec<Vec<String>> = hits
            .iter()
            .map(|h| vec![h.snapshot.short(), local_time(h.time_ns), bytes(h.size), h.path.clone()])
            .collect();
        output::table(&["Snapshot", "Time", "Size", "Path"], &rows)?;
    }
    if hits.is_empty() {
        ctx.say(format!("no file matches `{}`", a.pattern));
    }
    Ok(0)
}
