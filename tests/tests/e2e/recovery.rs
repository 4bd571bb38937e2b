//! The recovery sheet: `key export-recovery` and `key recover`.

use std::os::unix::fs::PermissionsExt;

use crate::util::*;

/// The L1..L5 lines of a sheet, in order.
fn sheet_lines(sheet: &str) -> Vec<String> {
    let lines: Vec<String> = sheet
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            b.len() > 2 && b[0] == b'L' && (b'1'..=b'5').contains(&b[1]) && b[2] == b' '
        })
        .map(str::to_string)
        .collect();
    let labels: Vec<&str> = lines.iter().map(|l| &l[..2]).collect();
    assert_eq!(
        labels,
        ["L1", "L2", "L3", "L4", "L5"],
        "five lines L1..L5 in order:\n{sheet}"
    );
    lines
}

const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The documented per-line check: the first 10 bits of
/// BLAKE3("cairn recovery line" || line number || the 12 characters), as two
/// Crockford base32 characters.
fn line_check(n: u8, chars: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"cairn recovery line");
    h.update(&[n]);
    h.update(chars.as_bytes());
    let d = h.finalize();
    let b = d.as_bytes();
    let hi = b[0] >> 3;
    let lo = ((b[0] & 0b111) << 2) | (b[1] >> 6);
    [CROCKFORD[hi as usize] as char, CROCKFORD[lo as usize] as char]
        .iter()
        .collect()
}

/// Line 3 with one of its 12 key characters changed. The replacement is
/// picked so that the line's check characters no longer match (a random
/// change escapes a 10-bit check once in 1024 tries; the test must not).
fn typo_on_line_3(line: &str) -> String {
    // "L3 XXXX-XXXX-XXXX  CC"
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.len(), 3, "unexpected line layout: {line}");
    let chars: String = parts[1].chars().filter(|c| *c != '-').collect();
    assert_eq!(chars.len(), 12, "{line}");
    for &c in CROCKFORD {
        let c = c as char;
        if chars.starts_with(c) {
            continue;
        }
        let changed: String = std::iter::once(c).chain(chars.chars().skip(1)).collect();
        if line_check(3, &changed) != parts[2] {
            let bad = format!("{}{}", c, &parts[1][1..]);
            return format!("L3 {bad}  {}", parts[2]);
        }
    }
    unreachable!("some replacement changes the check");
}

#[test]
fn recovery_sheet_restores_access_after_the_password_is_lost() {
    let f = Fixture::init();
    f.cairn()
        .args(["backup", "--stdin", "--stdin-filename", "precious.txt"])
        .stdin("irreplaceable data\n")
        .ok();

    let sheet = f.cairn().args(["key", "export-recovery"]).ok().stdout();
    let lines = sheet_lines(&sheet);
    for l in &lines {
        // "L1 ABCD-EFGH-JKMN  7Q"
        assert_eq!(l.split_whitespace().count(), 3, "{l}");
    }

    // The same sheet written to a file is private (0600) and identical.
    let out = f.path("sheet.txt");
    f.cairn().args(["key", "export-recovery", "--output", &s(&out)]).ok();
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the sheet file is private: {mode:o}");
    assert_eq!(sheet_lines(&std::fs::read_to_string(&out).unwrap()), lines);

    // Forget the password: change it to a random one nobody keeps.
    let forgotten = Rng::new(clock_seed()).password();
    let forgotten_file = f.password_file_for(&forgotten);
    f.cairn()
        .args(["key", "passwd"])
        .env("CAIRN_NEW_PASSWORD_FILE", &forgotten_file)
        .ok();
    std::fs::remove_file(&forgotten_file).unwrap();
    f.cairn().arg("snapshots").code(12);

    // Recover with only the five lines, typed on stdin (lower case is fine).
    let typed = lines.join("\n").to_lowercase() + "\n";
    let recovered = "recovered password";
    let r = f
        .bare()
        .env("CAIRN_REPOSITORY", &f.repo)
        .env("CAIRN_NEW_PASSWORD_FILE", f.password_file_for(recovered))
        .args(["key", "recover"])
        .stdin(typed)
        .ok();
    assert_no_panic(&r);
    let snaps = f.with_password(recovered).arg("snapshots").json();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(
        f.with_password(recovered)
            .args(["dump", "latest", "/precious.txt"])
            .ok()
            .stdout,
        b"irreplaceable data\n"
    );
}

#[test]
fn a_typo_on_line_3_is_rejected_naming_l3() {
    let f = Fixture::init();
    let sheet = f.cairn().args(["key", "export-recovery"]).ok().stdout();
    let mut lines = sheet_lines(&sheet);
    lines[2] = typo_on_line_3(&lines[2]);

    let r = f
        .bare()
        .env("CAIRN_REPOSITORY", &f.repo)
        .env("CAIRN_NEW_PASSWORD_FILE", f.password_file_for("should never be added"))
        .args(["key", "recover"])
        .stdin(lines.join("\n") + "\n")
        .fails();
    assert!(r.stderr().contains("L3"), "the message names line L3\n{r}");
    for other in ["L1", "L2", "L4", "L5"] {
        assert!(!r.stderr().contains(other), "only L3 is blamed\n{r}");
    }
    let keys = f.cairn().args(["key", "list"]).json();
    assert_eq!(keys.as_array().unwrap().len(), 1, "no key was added");
    f.with_password("should never be added").arg("snapshots").code(12);

    // With --sheet FILE, the same.
    let file = f.path("bad-sheet.txt");
    write(&file, lines.join("\n"));
    let r = f
        .bare()
        .env("CAIRN_REPOSITORY", &f.repo)
        .env("CAIRN_NEW_PASSWORD_FILE", f.password_file_for("should never be added"))
        .args(["key", "recover", "--sheet", &s(&file)])
        .fails();
    assert!(r.stderr().contains("L3"), "{r}");
}
