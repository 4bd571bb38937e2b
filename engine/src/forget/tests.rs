//! The keep rules against restic's documented behaviour: buckets in the local
//! time zone, ISO weeks, leap years and month ends, equal times, the newest
//! snapshot of each bucket, and the oldest kept while counts are left.

use jiff::tz::{self, TimeZone};
use jiff::Timestamp;

use super::policy::{apply, Candidate};
use super::table::{self, RetentionRule, RuleMatch};
use super::*;
use crate::testing::test_snapshot;

fn ns(t: &str) -> i64 {
    t.parse::<Timestamp>().unwrap().as_nanosecond() as i64
}

const NOW: &str = "2030-01-01T00:00:00Z";

/// The times `rules` keep among `times` (UTC unless `tz`), newest first.
fn kept_in(times: &[&str], tags: &[&[&str]], rules: &KeepRules, zone: &TimeZone) -> Vec<String> {
    let owned: Vec<Vec<String>> = (0..times.len())
        .map(|i| {
            tags.get(i)
                .map(|t| t.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default()
        })
        .collect();
    let list: Vec<Candidate<'_>> = times
        .iter()
        .zip(&owned)
        .map(|(t, tags)| Candidate { time_ns: ns(t), tags })
        .collect();
    apply(&list, rules, zone, ns(NOW))
        .into_iter()
        .filter(|v| v.keep)
        .map(|v| times[v.position].to_string())
        .collect()
}

/// `times` without tags, for [`apply`].
fn untagged<'a>(times: &[&str]) -> Vec<Candidate<'a>> {
    times
        .iter()
        .map(|t| Candidate {
            time_ns: ns(t),
            tags: &[],
        })
        .collect()
}

fn kept(times: &[&str], rules: &KeepRules) -> Vec<String> {
    kept_in(times, &[], rules, &TimeZone::UTC)
}

fn d(s: &str) -> RetentionDuration {
    RetentionDuration::parse(s).unwrap()
}

#[test]
fn keep_last_keeps_the_newest_whatever_the_input_order() {
    let times = [
        "2024-01-03T00:00:00Z",
        "2024-01-01T00:00:00Z",
        "2024-01-04T00:00:00Z",
        "2024-01-02T00:00:00Z",
    ];
    let rules = KeepRules {
        last: 2,
        ..Default::default()
    };
    assert_eq!(kept(&times, &rules), ["2024-01-04T00:00:00Z", "2024-01-03T00:00:00Z"]);
}

#[test]
fn keep_daily_keeps_the_newest_snapshot_of_each_day() {
    let times = [
        "2024-01-01T10:00:00Z",
        "2024-01-01T20:00:00Z",
        "2024-01-02T09:00:00Z",
        "2024-01-03T08:00:00Z",
        "2024-01-03T23:00:00Z",
    ];
    let rules = KeepRules {
        daily: 2,
        ..Default::default()
    };
    assert_eq!(kept(&times, &rules), ["2024-01-03T23:00:00Z", "2024-01-02T09:00:00Z"]);
}

#[test]
fn the_oldest_snapshot_is_kept_while_a_rule_has_counts_left() {
    let times = [
        "2024-01-01T10:00:00Z",
        "2024-01-01T20:00:00Z",
        "2024-01-02T09:00:00Z",
        "2024-01-03T23:00:00Z",
    ];
    let rules = KeepRules {
        daily: 5,
        ..Default::default()
    };
    let list = untagged(&times);
    let verdicts = apply(&list, &rules, &TimeZone::UTC, ns(NOW));
    assert!(verdicts.iter().all(|v| v.keep), "{verdicts:?}");
    let oldest = verdicts.last().unwrap();
    assert_eq!(times[oldest.position], "2024-01-01T10:00:00Z");
    assert_eq!(oldest.matches, ["oldest daily snapshot"]);
}

#[test]
fn weeks_are_iso_weeks_across_the_new_year() {
    // 31 Dec 2020 (Thursday) and 1 Jan 2021 (Friday) are both in ISO week
    // 2020-W53; 4 Jan 2021 starts 2021-W01.
    let times = ["2020-12-31T12:00:00Z", "2021-01-01T12:00:00Z", "2021-01-04T12:00:00Z"];
    let rules = KeepRules {
        weekly: 2,
        ..Default::default()
    };
    assert_eq!(kept(&times, &rules), ["2021-01-04T12:00:00Z", "2021-01-01T12:00:00Z"]);
}

#[test]
fn months_end_where_the_calendar_says_in_a_leap_year() {
    let times = [
        "2024-01-31T23:00:00Z",
        "2024-02-01T00:30:00Z",
        "2024-02-29T12:00:00Z",
        "2024-03-01T00:00:00Z",
    ];
    let rules = KeepRules {
        monthly: 2,
        ..Default::default()
    };
    assert_eq!(kept(&times, &rules), ["2024-03-01T00:00:00Z", "2024-02-29T12:00:00Z"]);
    let yearly = KeepRules {
        yearly: 1,
        ..Default::default()
    };
    assert_eq!(kept(&times, &yearly), ["2024-03-01T00:00:00Z"]);
}

#[test]
fn day_boundaries_are_in_the_local_time_zone() {
    let times = ["2024-05-01T20:00:00Z", "2024-05-01T21:00:00Z", "2024-05-01T22:30:00Z"];
    let rules = KeepRules {
        daily: 2,
        ..Default::default()
    };
    // In UTC all three are 1 May: the newest, and the oldest while a count is left.
    assert_eq!(
        kept_in(&times, &[], &rules, &TimeZone::UTC),
        ["2024-05-01T22:30:00Z", "2024-05-01T20:00:00Z"]
    );
    // At UTC+2 the newest is already 2 May, the other two are 1 May.
    let plus_two = TimeZone::fixed(tz::offset(2));
    assert_eq!(
        kept_in(&times, &[], &rules, &plus_two),
        ["2024-05-01T22:30:00Z", "2024-05-01T21:00:00Z"]
    );
}

#[test]
fn of_snapshots_with_equal_times_the_first_given_counts() {
    let times = ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"];
    let list = untagged(&times);
    let rules = KeepRules {
        last: 1,
        ..Default::default()
    };
    let v = apply(&list, &rules, &TimeZone::UTC, ns(NOW));
    assert_eq!((v[0].position, v[0].keep), (0, true));
    assert_eq!((v[1].position, v[1].keep), (1, false));
}

#[test]
fn keep_within_counts_back_from_the_newest_snapshot_not_from_now() {
    let times = [
        "2024-01-10T12:00:00Z",
        "2024-01-09T13:00:00Z",
        "2024-01-09T12:00:00Z",
        "2024-01-09T11:00:00Z",
    ];
    let rules = KeepRules {
        within: d("1d"),
        ..Default::default()
    };
    // Strictly newer than the newest minus one day.
    assert_eq!(kept(&times, &rules), ["2024-01-10T12:00:00Z", "2024-01-09T13:00:00Z"]);
}

#[test]
fn a_snapshot_in_the_future_does_not_move_the_newest() {
    let times = ["2031-06-01T00:00:00Z", "2029-12-31T00:00:00Z", "2029-12-20T00:00:00Z"];
    let rules = KeepRules {
        within: d("2d"),
        ..Default::default()
    };
    // The newest not in the future is 31 Dec 2029; 20 Dec is outside 2 days of it.
    assert_eq!(kept(&times, &rules), ["2031-06-01T00:00:00Z", "2029-12-31T00:00:00Z"]);
}

#[test]
fn keep_within_daily_keeps_one_a_day_inside_the_window() {
    let times = [
        "2024-01-04T20:00:00Z",
        "2024-01-04T08:00:00Z",
        "2024-01-03T20:00:00Z",
        "2024-01-03T08:00:00Z",
        "2024-01-01T20:00:00Z",
    ];
    let rules = KeepRules {
        within_daily: d("2d"),
        ..Default::default()
    };
    assert_eq!(kept(&times, &rules), ["2024-01-04T20:00:00Z", "2024-01-03T20:00:00Z"]);
}

#[test]
fn keep_tag_needs_every_tag_of_one_list() {
    let times = ["2024-01-03T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"];
    let tags: [&[&str]; 3] = [&["a"], &["a", "b"], &["b", "c"]];
    let rules = KeepRules {
        tags: vec![vec!["a".into(), "b".into()], vec!["c".into()]],
        ..Default::default()
    };
    assert_eq!(
        kept_in(&times, &tags, &rules, &TimeZone::UTC),
        ["2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"]
    );
}

#[test]
fn unlimited_keeps_one_per_bucket_forever() {
    let times = [
        "2020-01-01T00:00:00Z",
        "2020-01-01T06:00:00Z",
        "2022-07-01T00:00:00Z",
        "2024-02-29T00:00:00Z",
    ];
    let rules = KeepRules {
        daily: -1,
        ..Default::default()
    };
    assert_eq!(
        kept(&times, &rules),
        [
            "2024-02-29T00:00:00Z",
            "2022-07-01T00:00:00Z",
            "2020-01-01T06:00:00Z",
            "2020-01-01T00:00:00Z"
        ],
        "one per day, and the oldest as counts are never used up"
    );
}

#[test]
fn reasons_name_every_rule_that_wants_a_snapshot() {
    let times = ["2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"];
    let list = untagged(&times);
    let rules = KeepRules {
        last: 1,
        daily: 1,
        within: d("1y"),
        ..Default::default()
    };
    let v = apply(&list, &rules, &TimeZone::UTC, ns(NOW));
    assert_eq!(v[0].matches, ["within 1y", "last snapshot", "daily snapshot"]);
    assert_eq!(v[1].matches, ["within 1y"]);
}

#[test]
fn plan_groups_by_host_and_paths_and_lists_keep_and_remove() {
    let snap = |host: &str, path: &str, t: &str| Snapshot {
        time_ns: ns(t),
        host: host.into(),
        paths: vec![path.into()],
        ..test_snapshot()
    };
    let id = |n: u8| SnapshotId::from_bytes([n; 32]);
    let snapshots = vec![
        (id(1), snap("a", "/x", "2024-01-01T00:00:00Z")),
        (id(2), snap("a", "/x", "2024-01-02T00:00:00Z")),
        (id(3), snap("b", "/x", "2024-01-01T00:00:00Z")),
        (id(4), snap("a", "/y", "2024-01-01T00:00:00Z")),
    ];
    let rules = KeepRules {
        last: 1,
        ..Default::default()
    };
    let plan = plan_forget_at(&snapshots, GroupBy::default(), &rules, &TimeZone::UTC, ns(NOW));
    assert_eq!(plan.groups.len(), 3);
    assert_eq!(plan.to_remove(), [id(1)]);
    let one = plan_forget_at(&snapshots, GroupBy::parse("").unwrap(), &rules, &TimeZone::UTC, ns(NOW));
    assert_eq!(one.groups.len(), 1);
    assert_eq!(one.groups[0].keep.len(), 1);
    assert!(GroupBy::parse("host,colour").is_err());
}

/// The platform's retention table: audit logs 5 years, databases 90 days
/// (one a day), media a year, application logs 30 days.
#[test]
fn the_retention_table_lets_the_first_matching_rule_decide() {
    let rule = |name: &str, tag: &str, age: &str, daily: i32| RetentionRule {
        name: name.into(),
        matcher: {
            let mut m = RuleMatch::default();
            m.tag = Some(tag.into());
            m
        },
        max_age: Some(d(age)),
        keep: KeepRules {
            daily,
            ..Default::default()
        },
    };
    let table = [
        rule("audit", "audit", "5y", 0),
        rule("db", "db", "90d", 90),
        rule("media", "media", "365d", 0),
        rule("logs", "logs", "30d", 0),
    ];
    let snapshots: Vec<(SnapshotId, Snapshot)> = [
        ("audit", "2025-06-01T00:00:00Z"),
        ("audit", "2024-12-01T00:00:00Z"),
        ("db", "2029-12-31T22:00:00Z"),
        ("db", "2029-12-31T10:00:00Z"),
        ("db", "2029-10-01T00:00:00Z"),
        ("media", "2029-02-01T00:00:00Z"),
        ("media", "2028-12-01T00:00:00Z"),
        ("logs", "2029-12-15T00:00:00Z"),
        ("logs", "2029-11-15T00:00:00Z"),
        ("audit,logs", "2029-11-15T00:00:00Z"),
        ("", "2000-01-01T00:00:00Z"),
    ]
    .iter()
    .enumerate()
    .map(|(n, (tags, t))| {
        let s = Snapshot {
            time_ns: ns(t),
            tags: tags.split(',').filter(|t| !t.is_empty()).map(String::from).collect(),
            ..test_snapshot()
        };
        (SnapshotId::from_bytes([n as u8; 32]), s)
    })
    .collect();
    let plan = table::plan_retention_at(&snapshots, &table, GroupBy::default(), &TimeZone::UTC, ns(NOW));
    let kept = |rule: &str| -> Vec<u8> {
        let g = plan.groups.iter().find(|g| g.rule.as_deref() == Some(rule)).unwrap();
        g.keep.iter().map(|s| s.id.as_bytes()[0]).collect()
    };
    let removed: Vec<u8> = plan.to_remove().iter().map(|id| id.as_bytes()[0]).collect();
    assert_eq!(kept("audit"), [9, 0], "the audit+logs snapshot is audit's: 5 years");
    assert_eq!(kept("db"), [2], "one a day, and nothing older than 90 days");
    assert_eq!(kept("media"), [5]);
    assert_eq!(kept("logs"), [7]);
    assert_eq!(kept("none"), [10], "matched by no rule: kept");
    let mut removed = removed;
    removed.sort();
    assert_eq!(removed, [1, 3, 4, 6, 8]);
    let none = plan.groups.iter().find(|g| g.rule.as_deref() == Some("none")).unwrap();
    assert_eq!(none.reasons[0].matches, ["no retention rule matches: kept"]);
    let db = plan.groups.iter().find(|g| g.rule.as_deref() == Some("db")).unwrap();
    assert_eq!(db.reasons[0].matches, ["daily snapshot", "younger than 90d"]);
}
