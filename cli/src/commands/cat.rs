use std::io::Write;

use anyhow::{Context, Result};
use cairn_engine::{CatObject, CatRequest};

use super::Ctx;
use crate::args::{CatArgs, CatKind};
use crate::output;

pub fn run(ctx: &Ctx, a: CatArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let id = || {
        a.id.as_deref()
            .with_context(|| format!("`cairn cat {}` needs an id", a.kind.name()))
    };
    let what = match a.kind {
        CatKind::Config => CatRequest::Config,
        CatKind::Key => CatRequest::Key(id()?),
        CatKind::Snapshot => CatRequest::Snapshot(id()?),
        CatKind::Index => CatRequest::Index(id()?),
        CatKind::Pack => CatRequest::Pack(id()?),
        CatKind::Tree => CatRequest::Tree(id()?),
        CatKind::Blob => CatRequest::Blob(id()?),
    };
    match cairn_engine::cat(&repo, what)? {
        CatObject::Config(c) => output::json(&c)?,
        CatObject::Key(k) => output::json(&k)?,
        CatObject::Snapshot(s) => output::json(&s)?,
        CatObject::Index(i) => output::json(&i)?,
        CatObject::Pack(p) => output::json(&p)?,
        CatObject::Tree(t) => output::json(&t)?,
        CatObject::Blob(data) => {
            let mut o = output::Stdout;
            o.write_all(&data)?;
            o.flush()?;
        }
    }
    Ok(0)
}
