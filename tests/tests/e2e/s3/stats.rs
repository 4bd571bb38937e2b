//! `cairn stats --cost` on moto, with data packs in two storage classes.

use std::collections::BTreeMap;

use cairn_test_support::s3::moto;
use serde_json::Value;

use super::*;

/// Packs in STANDARD and DEEP_ARCHIVE: `stats --cost` reports per class
/// the bytes moto lists, prices them, and charges early deletion only for
/// the source whose packs are in the archive class; nothing is retrieved.
#[test]
fn s3_moto_stats_cost_reports_bytes_per_storage_class_as_listed() {
    let Some(m) = moto() else { return };
    let (f, prefix) = s3_fixture(
        &m,
        "stats-cost",
        &[
            profile("hot", &m.endpoint, ""),
            profile("cold", &m.endpoint, "storage-class = \"DEEP_ARCHIVE\""),
        ],
    );
    f.init_repo(&[]);
    let hot = f.path("hot");
    write(&hot.join("db.dump"), Rng::new(80).bytes(2_000_000));
    let cold = f.path("cold");
    write(&cold.join("audit.log"), Rng::new(81).bytes(3_000_000));
    f.backup(&["--host", "db", &s(&hot)]);
    f.cairn()
        .env("CAIRN_REPOSITORY", "cold")
        .args(["backup", "--host", "audit", &s(&cold)])
        .json();

    let r = f.cairn().args(["stats", "--cost"]).json();
    let mut listed: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (key, (class, size)) in moto_listing(&m, &prefix) {
        if key.starts_with(&format!("{prefix}/data/")) || key.starts_with(&format!("{prefix}/tree/")) {
            let e = listed.entry(class).or_default();
            e.0 += 1;
            e.1 += size;
        }
    }
    assert_eq!(listed.len(), 2, "{listed:#?}");
    let classes = r["cost"]["classes"].as_array().expect("classes");
    let reported: BTreeMap<String, (u64, u64)> = classes
        .iter()
        .map(|c| {
            (
                str_at(c, "/class").to_string(),
                (u64_at(c, "/objects"), u64_at(c, "/bytes")),
            )
        })
        .collect();
    assert_eq!(reported, listed, "{r:#}");
    let deep = classes.iter().find(|c| c["class"] == "DEEP_ARCHIVE").unwrap();
    assert_eq!(u64_at(deep, "/minimum_days"), 180);
    let total: f64 = classes.iter().map(|c| c["monthly_usd"].as_f64().unwrap()).sum();
    assert!((r["cost"]["monthly_usd"].as_f64().unwrap() - total).abs() < 1e-12);
    assert!(total > 0.0);

    let source = |host: &str| -> Value {
        r["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["host"] == host)
            .cloned()
            .unwrap_or_else(|| panic!("no {host}: {r:#}"))
    };
    let audit = source("audit");
    let db = source("db");
    // Fresh DEEP_ARCHIVE packs: forgetting them now costs their 180 days.
    assert!(audit["cost"]["early_deletion_usd"].as_f64().unwrap() > 0.0, "{audit:#}");
    assert_eq!(db["cost"]["early_deletion_usd"].as_f64(), Some(0.0), "{db:#}");
    let audit_classes: Vec<&str> = audit["cost"]["by_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| str_at(c, "/class"))
        .collect();
    assert!(audit_classes.contains(&"DEEP_ARCHIVE"), "{audit:#}");
    // Nothing was asked back from the archive class.
    for (key, (class, _)) in moto_listing(&m, &format!("{prefix}/data/")) {
        let (now, restore) = moto_head(&m, &key);
        // HEAD names no class for STANDARD, as on AWS.
        assert_eq!(now.unwrap_or_else(|| "STANDARD".into()), class, "{key}");
        assert_eq!(restore, None, "a retrieval of {key} was requested");
    }
}
