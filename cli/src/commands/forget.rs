use anyhow::{bail, Result};
use cairn_engine::{
    filter_snapshots, find_snapshots, forget_snapshots, plan_forget, plan_retention, ForgetGroup, ForgetOutcome,
    ForgetPlan, ForgetSnapshot, GroupBy, KeepRules,
};

use super::{filter, Ctx};
use crate::args::ForgetArgs;
use crate::output::{self, local_time};
use crate::retention::KeepSpec;

fn rules(a: &ForgetArgs) -> Result<KeepRules> {
    KeepSpec {
        counts: [
            a.keep_last,
            a.keep_hourly,
            a.keep_daily,
            a.keep_weekly,
            a.keep_monthly,
            a.keep_yearly,
        ],
        within: [
            a.keep_within.as_deref(),
            a.keep_within_hourly.as_deref(),
            a.keep_within_daily.as_deref(),
            a.keep_within_weekly.as_deref(),
            a.keep_within_monthly.as_deref(),
            a.keep_within_yearly.as_deref(),
        ],
        tags: &a.keep_tag,
    }
    .rules("forget")
}

pub fn run(ctx: &Ctx, a: ForgetArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let rules = rules(&a)?;
    let group_by = GroupBy::parse(&a.group_by).map_err(anyhow::Error::msg)?;
    let mut shown: Option<serde_json::Value> = None;
    let ids = if a.policy {
        if !rules.is_empty() || !a.snapshots.is_empty() {
            bail!("--policy applies the configuration's retention table; give no keep rules or snapshots with it");
        }
        let table = crate::retention::table(&ctx.config.retention)?;
        if table.is_empty() {
            bail!("--policy needs a retention table: [[retention]] rules in cairn.toml");
        }
        let plan = plan_retention(&filter_snapshots(&repo, &filter(&a.filter))?, &table, group_by);
        shown = print_plan(ctx, &plan)?;
        plan.to_remove()
    } else if a.snapshots.is_empty() {
        if rules.is_empty() {
            bail!("no keep rule given, so nothing would be kept: give --keep-* rules, or the snapshots to remove");
        }
        let plan = plan_forget(&filter_snapshots(&repo, &filter(&a.filter))?, group_by, &rules);
        shown = print_plan(ctx, &plan)?;
        plan.to_remove()
    } else {
        if !rules.is_empty() {
            bail!("give snapshots to remove or keep rules, not both");
        }
        let ids: Vec<_> = find_snapshots(&repo, &a.snapshots, &filter(&a.filter))?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if ctx.json {
            let v: Vec<String> = ids.iter().map(|i| i.to_hex()).collect();
            shown = Some(serde_json::json!({"dry_run": a.dry_run, "remove": v}));
        }
        ids
    };
    // With --prune, one JSON document holds both: {"forget": ..., "prune": ...}.
    if a.dry_run {
        if let Some(v) = &shown {
            output::json(v)?;
        }
        ctx.say(format!(
            "would remove {} snapshot(s) (dry run: nothing was removed)",
            ids.len()
        ));
        return Ok(0);
    }
    let outcome = forget_snapshots(&repo, &ids)?;
    let n = outcome.removed.len();
    say_retained(ctx, &outcome);
    let shown = shown.map(|v| with_retained(v, &outcome));
    if a.prune {
        ctx.say(format!("removed {n} snapshot(s); pruning"));
        let opts = super::prune::options(ctx, &a.prune_settings, false);
        return super::prune::prune_and_report(ctx, &repo, &opts, shown);
    }
    if let Some(v) = &shown {
        output::json(v)?;
    }
    ctx.say(format!(
        "removed {n} snapshot(s); the data only they referenced stays in the repository until a prune"
    ));
    Ok(0)
}

/// Names the snapshots the storage refused to delete (Object Lock retention).
fn say_retained(ctx: &Ctx, o: &ForgetOutcome) {
    if o.retained.is_empty() {
        return;
    }
    let last = o.retained.iter().map(|r| r.until.as_str()).max().unwrap_or("?");
    ctx.say(format!(
        "kept {} snapshot(s) under Object Lock retention (until {last} at the latest): the storage refuses to delete \
         them before their date; forget them again after it",
        o.retained.len()
    ));
    for r in &o.retained {
        ctx.say(format!("  {} retained until {}", r.id.short(), r.until));
    }
}

/// The JSON plan with the snapshots kept for retention added: a `retained`
/// list (id, until) in each group that has some, or in the object of
/// `forget ID...`. Unchanged when none were.
fn with_retained(mut v: serde_json::Value, o: &ForgetOutcome) -> serde_json::Value {
    if o.retained.is_empty() {
        return v;
    }
    let entry = |r: &cairn_engine::RetainedSnapshot| serde_json::json!({"id": r.id.to_hex(), "until": r.until});
    match &mut v {
        serde_json::Value::Array(groups) => {
            for g in groups.iter_mut() {
                let ids: Vec<String> = g["remove"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|s| s["id"].as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let here: Vec<_> = o
                    .retained
                    .iter()
                    .filter(|r| ids.contains(&r.id.to_hex()))
                    .map(entry)
                    .collect();
                if let (false, Some(obj)) = (here.is_empty(), g.as_object_mut()) {
                    obj.insert("retained".into(), here.into());
                }
            }
        }
        serde_json::Value::Object(obj) => {
            obj.insert(
                "retained".into(),
                o.retained.iter().map(entry).collect::<Vec<_>>().into(),
            );
        }
        _ => {}
    }
    v
}

/// Prints the plan for people, or returns it as JSON (restic's `forget
/// --json` shape: a list with one entry per group) for the caller to print.
fn print_plan(ctx: &Ctx, plan: &ForgetPlan) -> Result<Option<serde_json::Value>> {
    if ctx.json {
        let v: Vec<_> = plan.groups.iter().map(group_json).collect();
        return Ok(Some(serde_json::Value::Array(v)));
    }
    for g in &plan.groups {
        let key = &g.group_key;
        let mut what = Vec::new();
        if let Some(h) = &key.host {
            what.push(format!("host {h}"));
        }
        if let Some(p) = &key.paths {
            what.push(format!("paths [{}]", p.join(", ")));
        }
        if let Some(t) = &key.tags {
            what.push(format!("tags [{}]", t.join(", ")));
        }
        ctx.say(format!(
            "snapshots of {}:",
            if what.is_empty() { "all".into() } else { what.join(", ") }
        ));
        let rows: Vec<Vec<String>> = g
            .keep
            .iter()
            .zip(&g.reasons)
            .map(|(s, r)| row(s, "keep", &r.matches.join(", ")))
            .chain(g.remove.iter().map(|s| row(s, "remove", "")))
            .collect();
        if !ctx.quiet {
            output::table(&["ID", "Time", "Host", "Tags", "", "Reasons"], &rows)?;
        }
        ctx.say(format!("{} kept, {} to remove", g.keep.len(), g.remove.len()));
    }
    Ok(None)
}

fn row(s: &ForgetSnapshot, what: &str, why: &str) -> Vec<String> {
    vec![
        s.id.short(),
        local_time(s.time_ns),
        s.host.clone(),
        s.tags.join(","),
        what.into(),
        why.into(),
    ]
}

fn group_json(g: &ForgetGroup) -> serde_json::Value {
    let snap = |s: &ForgetSnapshot| serde_json::json!({"id": s.id.to_hex(), "short_id": s.id.short(), "time": s.time, "host": s.host, "tags": s.tags, "paths": s.paths});
    let mut v = serde_json::json!({
        "group_key": g.group_key,
        "keep": g.keep.iter().map(snap).collect::<Vec<_>>(),
        "remove": g.remove.iter().map(snap).collect::<Vec<_>>(),
        "reasons": g.keep.iter().zip(&g.reasons).map(|(s, r)| serde_json::json!({"snapshot": snap(s), "matches": r.matches})).collect::<Vec<_>>(),
    });
    if let (Some(rule), Some(o)) = (&g.rule, v.as_object_mut()) {
        o.insert("rule".into(), rule.clone().into());
    }
    v
}
