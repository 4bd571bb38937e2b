use std::io::Write;

use anyhow::{bail, Context, Result};
use cairn_engine::backend::ObjectKind;
use cairn_engine::index::{IndexFile, INDEX_KIND, INDEX_VERSION};
use cairn_engine::select::find_snapshot;
use cairn_engine::{BlobId, PackId};

use super::Ctx;
use crate::args::{CatArgs, CatKind};
use crate::output;

fn need(id: &Option<String>, what: &str) -> Result<String> {
    id.clone().with_context(|| format!("`cairn cat {what}` needs an id"))
}

fn find_name(ctx: &Ctx, repo: &cairn_engine::Repository, kind: ObjectKind, prefix: &str) -> Result<String> {
    let _ = ctx;
    let names: Vec<String> = repo
        .backend()
        .list(kind)?
        .into_iter()
        .map(|o| o.name)
        .filter(|n| n.starts_with(prefix))
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no {kind} starts with `{prefix}`"),
        _ => bail!(
            "`{prefix}` matches {} objects of kind {kind}; give more digits",
            names.len()
        ),
    }
}

pub fn run(ctx: &Ctx, a: CatArgs) -> Result<u8> {
    let repo = ctx.open()?;
    match a.kind {
        CatKind::Config => output::json(repo.config())?,
        CatKind::Key => {
            let name = repo.find_key(&need(&a.id, "key")?)?;
            let (_, kf) = repo
                .list_keys()?
                .into_iter()
                .find(|(n, _)| *n == name)
                .context("key vanished")?;
            output::json(
                &serde_json::json!({"id": name, "created": output::rfc3339(kf.created_ns), "host": kf.host, "user": kf.user, "kdf": kf.kdf, "salt": hex::encode(&kf.salt)}),
            )?
        }
        CatKind::Snapshot => {
            let (id, s) = find_snapshot(&repo, &need(&a.id, "snapshot")?, &Default::default())?;
            output::json(&serde_json::json!({"id": id.to_hex(), "snapshot": s}))?
        }
        CatKind::Index => {
            let name = find_name(ctx, &repo, ObjectKind::Index, &need(&a.id, "index")?)?;
            let f: IndexFile = repo.load_object(ObjectKind::Index, INDEX_KIND, INDEX_VERSION, &name)?;
            output::json(&f)?
        }
        CatKind::Pack => {
            let prefix = need(&a.id, "pack")?;
            let (kind, name) = match find_name(ctx, &repo, ObjectKind::DataPack, &prefix) {
                Ok(n) => (ObjectKind::DataPack, n),
                Err(_) => (
                    ObjectKind::TreePack,
                    find_name(ctx, &repo, ObjectKind::TreePack, &prefix)?,
                ),
            };
            let entries = repo.read_pack_header(kind, &name)?;
            let v: Vec<_> = entries
                .iter()
                .map(|e| serde_json::json!({"type": format!("{:?}", e.blob_type).to_lowercase(), "id": e.id.to_hex(), "offset": e.offset, "length": e.length, "raw_length": e.raw_length}))
                .collect();
            output::json(
                &serde_json::json!({"id": PackId::from_hex(&name)?.to_hex(), "kind": kind.to_string(), "blobs": v}),
            )?
        }
        CatKind::Blob | CatKind::Tree => {
            let id = BlobId::from_hex(&need(&a.id, "blob")?)?;
            let index = repo.load_index()?;
            if matches!(a.kind, CatKind::Tree) {
                output::json(&repo.load_tree(&index, &id)?)?
            } else {
                let data = repo.read_blob(&index, &id)?;
                std::io::stdout().lock().write_all(&data)?;
            }
        }
    }
    Ok(0)
}
