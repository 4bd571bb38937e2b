use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};
use cairn_engine::{KdfParams, Repository};

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
            let lines = repo.recovery_sheet_lines();
            let text = format!(
                "CAIRN RECOVERY SHEET\nRepository: {}\nCreated:    {}\n\nThis sheet IS the repository's master key. Anyone holding it can read every backup.\nKeep it in a safe. To regain access: cairn key recover (type the five lines).\n\n{}\n",
                repo.config().id_hex(),
                local_time(cairn_engine::now_ns()),
                lines.join("\n")
            );
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
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("Type or paste the five lines of the recovery sheet (L1 ... L5), then Ctrl-D:");
            }
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    let backend = ctx.backend(&t)?;
    let repo = Repository::open_with_recovery_sheet(backend, &text)?;
    let pw = password::new_password()?;
    let name = repo.add_key(&pw, KdfParams::default())?;
    report(ctx, "access restored; new key", &name)?;
    Ok(0)
}
