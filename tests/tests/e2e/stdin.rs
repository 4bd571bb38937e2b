//! Streams: `backup --stdin` and `backup --stdin-from-command`.

use crate::util::*;

/// A few MB of SQL text, deterministic but not trivially repetitive.
fn sql_dump(rows: usize) -> Vec<u8> {
    let mut rng = Rng::new(7);
    let mut out = String::from("BEGIN;\nCREATE TABLE accounts (id INT PRIMARY KEY, name STRING, balance DECIMAL);\n");
    for i in 0..rows {
        let r = rng.next_u64();
        out.push_str(&format!(
            "INSERT INTO accounts VALUES ({i}, 'user-{:016x}', {}.{:02});\n",
            r,
            r % 1_000_000,
            r % 100
        ));
    }
    out.push_str("COMMIT;\n");
    out.into_bytes()
}

#[test]
fn stdin_backup_round_trips_through_dump() {
    let f = Fixture::init();
    let input = sql_dump(45_000);
    assert!(input.len() > 3_000_000, "a few MB: {}", input.len());

    let r = f
        .cairn()
        .args(["backup", "--json", "--stdin", "--stdin-filename", "crdb.sql"])
        .stdin(input.clone())
        .ok();
    let out = r.json();
    assert_eq!(strings_at(&out, "/paths"), vec!["/crdb.sql".to_string()]);

    let dumped = f.dump("latest", "/crdb.sql");
    assert_eq!(dumped.len(), input.len());
    assert_eq!(
        blake3::hash(&dumped),
        blake3::hash(&input),
        "dump returns the exact input"
    );

    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(str_at(&snaps[0], "/source"), "stdin");

    // The same stream again is deduplicated: nothing new is stored.
    let again = f
        .cairn()
        .args(["backup", "--json", "--stdin", "--stdin-filename", "crdb.sql"])
        .stdin(input.clone())
        .ok()
        .json();
    assert_eq!(u64_at(&again, "/summary/data_blobs_added"), 0, "{again:#}");
}

#[test]
fn command_output_backup_round_trips_through_dump() {
    let f = Fixture::init();
    f.cairn()
        .args([
            "backup",
            "--stdin-from-command",
            "--stdin-filename",
            "out.txt",
            "--",
            "sh",
            "-c",
            "seq 1 100000",
        ])
        .ok();
    let expected: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    let dumped = f.dump("latest", "/out.txt");
    assert_eq!(dumped.len(), expected.len());
    assert!(dumped == expected.as_bytes(), "dump equals the output of seq");
    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(str_at(&snaps[0], "/source"), "command");
}

#[test]
fn failing_command_returns_its_status_and_saves_no_snapshot() {
    let f = Fixture::init();
    f.cairn()
        .args(["backup", "--stdin", "--stdin-filename", "first.txt"])
        .stdin("the one good snapshot\n")
        .ok();
    let before = f.snapshots().len();
    assert_eq!(before, 1);

    let r = f
        .cairn()
        .args([
            "backup",
            "--stdin-from-command",
            "--stdin-filename",
            "out.txt",
            "--",
            "sh",
            "-c",
            "echo partial; exit 7",
        ])
        .code(7);
    assert_no_panic(&r);
    assert_eq!(f.snapshots().len(), before, "no snapshot is saved for a failed command");
    assert_eq!(f.dump("latest", "/first.txt"), b"the one good snapshot\n");

    // A command that cannot even start is a failure too, and saves nothing.
    f.cairn()
        .args([
            "backup",
            "--stdin-from-command",
            "--",
            "/nonexistent/cairn-test-command",
        ])
        .fails();
    assert_eq!(f.snapshots().len(), before);
}
