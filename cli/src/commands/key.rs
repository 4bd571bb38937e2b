use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};
use cairn_engine::{KdfParams, Repository};
use zeroize::Zeroizing;

use super::Ctx;
use crate::args::{KeyAction, KeyArgs};
use crate::output::{self, local_time};
use crate::password;

pub fn run(ctx: &Ctx, a: KeyArgs) -> Result<u8> {
    if let KeyAction::Recover { sheet } = &a.action {
        return recover(ctx, sheet.as_deref());
    }
    let repo = ctx.open()?;
    match a.action {
        KeyAction::List => {
            let keys = repo.list_keys()?;
            if ctx.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|(n, k)| serde_json::json!({"id": n, "current": Some(n.as_str()) == repo.key_name(), "user": k.user, "host": k.host, "created": output::rfc3339(k.created_ns), "kdf": k.kdf}))
                    .collect();
                output::json(&v)?;
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|(n, k)| {
                        let cur = if Some(n.as_str()) == repo.key_name() { "*" } else { "" };
                        vec![
                            cur.into(),
                            n[..8].to_string(),
                            k.user.clone(),
                            k.host.clone(),
                            local_time(k.created_ns),
                            format!("{} MiB, {} passes", k.kdf.memory_kib / 1024, k.kdf.iterations),
                        ]
                    })
                    .collect();
                output::table(&["", "ID", "User", "Host", "Created", "Argon2id"], &rows)?;
            }
        }
        KeyAction::Add => {
            let pw = password::new_password()?;
            let name = repo.add_key(&pw, repo.current_kdf()?)?;
            report(ctx, "added key", &name)?;
        }
        KeyAction::Remove { id } => {
            let name = repo.find_key(&id)?;
            repo.remove_key(&name)?;
            report(ctx, "removed key", &name)?;
        }
        KeyAction::Passwd => {
            let pw = password::new_password()?;
            let mut repo = repo;
            let name = repo.change_password(&pw)?;
            report(ctx, "changed password; new key", &name)?;
        }
        KeyAction::ExportRecovery { output: path } => {
            let header = format!(
                "CAIRN RECOVERY SHEET\nRepository: {}\nCreated:    {}\n\nThis sheet IS the repository's master key. Anyone holding it can read every backup.\nKeep it in a safe. To regain access: cairn key recover (type the five lines).\n\n",
                repo.config().id_hex(),
                local_time(cairn_engine::now_ns()),
            );
            // The sheet is the key: built in one wiped-on-drop buffer that
            // never grows (growing would leave copies in freed memory).
            let lines = repo.recovery_sheet_lines();
            let mut text = Zeroizing::new(String::with_capacity(
                header.len() + lines.iter().map(|l| l.len() + 1).sum::<usize>(),
            ));
            text.push_str(&header);
            for l in &lines {
                text.push_str(l);
                text.push('\n');
            }
            match path {
                Some(p) => {
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&p)
                        .with_context(|| format!("creating {}", p.display()))?;
                    f.write_all(text.as_bytes())?;
                    f.sync_all()?;
                    ctx.say(format!(
                        "recovery sheet written to {} (mode 0600): print it, store it in a safe, then delete the file",
                        p.display()
                    ));
                }
                None => output::out(&text)?,
            }
        }
        KeyAction::Recover { .. } => unreachable!("handled above"),
    }
    Ok(0)
}

fn report(ctx: &Ctx, what: &str, name: &str) -> Result<()> {
    if ctx.json {
        output::json(&serde_json::json!({"action": what, "key": name}))
    } else {
        ctx.say(format!("{what} {}", &name[..8.min(name.len())]));
        Ok(())
    }
}

fn recover(ctx: &Ctx, sheet: Option<&std::path::Path>) -> Result<u8> {
    let t = ctx.target()?;
    let text = match sheet {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
            read_sheet(f).with_context(|| format!("reading {}", p.display()))?
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("Type or paste the five lines of the recovery sheet (L1 ... L5), then Ctrl-D:");
            }
            read_sheet(std::io::stdin().lock()).context("reading the recovery sheet")?
        }
    };
    let backend = ctx.backend(&t)?;
    let repo = Repository::open_with_recovery_sheet(backend, &text)?;
    let pw = password::new_password()?;
    let name = repo.add_key(&pw, KdfParams::default())?;
    report(ctx, "access restored; new key", &name)?;
    Ok(0)
}

/// Most bytes of recovery sheet text read: the sheet is a few hundred.
const SHEET_MAX: usize = 64 * 1024;

/// Reads a recovery sheet's text into one wiped-on-drop buffer that never
/// grows (growing would leave copies of the key in freed memory).
fn read_sheet(r: impl Read) -> Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::with_capacity(SHEET_MAX + 1));
    r.take(SHEET_MAX as u64).read_to_string(&mut text)?;
    Ok(text)
}
