//! Failures a user meets first: wrong password, no repository, no password;
//! and where passwords may come from.

use crate::util::*;

#[test]
fn wrong_password_exits_12_without_echoing_it() {
    let f = Fixture::init();
    let wrong = "Wr0ng-Pa55word-zq81";
    let r = f.with_password(wrong).arg("snapshots").code(12);
    let err = r.stderr();
    assert!(err.to_lowercase().contains("wrong password"), "{r}");
    assert!(
        !err.contains(wrong) && !r.stdout().contains(wrong),
        "the password is never printed\n{r}"
    );
    assert!(!err.contains(PASSWORD), "nor the right one\n{r}");

    // The same from a command and from the environment variable.
    let r = f
        .bare()
        .env("CAIRN_REPOSITORY", &f.repo)
        .env("CAIRN_PASSWORD", wrong)
        .args(["backup", "--stdin"])
        .stdin("x")
        .code(12);
    assert!(!r.stderr().contains(wrong), "{r}");
    assert!(f.snapshots().is_empty());
}

#[test]
fn a_folder_that_is_not_a_repository_exits_10_and_suggests_init() {
    let f = Fixture::empty();
    let plain = f.path("just-a-folder");
    std::fs::create_dir_all(&plain).unwrap();
    write(&plain.join("file.txt"), "not a repository\n");
    for location in [plain.clone(), f.path("does-not-exist")] {
        let r = f
            .bare()
            .env("CAIRN_PASSWORD_FILE", &f.password_file)
            .args(["-r", &s(&location), "snapshots"])
            .code(10);
        assert!(r.stderr().contains("cairn init"), "{r}");
    }
    assert!(!f.path("does-not-exist").exists(), "opening does not create the folder");
}

#[test]
fn missing_password_without_a_terminal_names_the_variables() {
    let f = Fixture::init();
    // stdin is /dev/null: there is no terminal to prompt on.
    let r = f.bare().env("CAIRN_REPOSITORY", &f.repo).arg("snapshots").fails();
    assert!(r.stderr().contains("CAIRN_PASSWORD_FILE"), "{r}");
    let r = f
        .bare()
        .env("CAIRN_REPOSITORY", &f.repo)
        .args(["backup", "--stdin"])
        .stdin("x")
        .fails();
    assert!(r.stderr().contains("CAIRN_PASSWORD_FILE"), "{r}");
}

#[test]
fn password_from_command_and_from_file() {
    let f = Fixture::init();
    f.backup(&["--stdin", "--stdin-filename", "a.txt"]);

    // CAIRN_PASSWORD_COMMAND: the first line the command prints.
    let cmd = format!("cat '{}'", s(&f.password_file));
    let r = f
        .bare()
        .env("CAIRN_REPOSITORY", &f.repo)
        .env("CAIRN_PASSWORD_COMMAND", &cmd)
        .args(["snapshots", "--json"])
        .ok();
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = f
        .bare()
        .env("CAIRN_REPOSITORY", &f.repo)
        .env(
            "CAIRN_PASSWORD_COMMAND",
            format!("printf '%s\\nignored second line\\n' '{PASSWORD}'"),
        )
        .arg("snapshots")
        .ok();
    assert!(r.stdout().contains("1 snapshot"), "{r}");

    // A failing command is an error (not a wrong password), and does not
    // print the command line, which may hold secrets.
    let r = f
        .bare()
        .env("CAIRN_REPOSITORY", &f.repo)
        .env(
            "CAIRN_PASSWORD_COMMAND",
            "echo sekrit-token-in-cmdline >/dev/null; exit 3",
        )
        .arg("snapshots")
        .fails();
    assert_ne!(r.code(), Some(12), "{r}");
    assert!(!r.stderr().contains("sekrit-token-in-cmdline"), "{r}");

    // CAIRN_PASSWORD_FILE: the first line, with \n or \r\n.
    let crlf = f.path("pw-crlf");
    std::fs::write(&crlf, format!("{PASSWORD}\r\nsecond line\r\n")).unwrap();
    f.bare()
        .env("CAIRN_REPOSITORY", &f.repo)
        .env("CAIRN_PASSWORD_FILE", &crlf)
        .arg("snapshots")
        .ok();

    // There is no flag to pass a password on the command line.
    let r = f
        .bare()
        .env("CAIRN_REPOSITORY", &f.repo)
        .args(["snapshots", "--password", PASSWORD])
        .fails();
    assert_eq!(r.code(), Some(2), "a usage error\n{r}");
}

#[test]
fn init_refuses_an_existing_repository() {
    let f = Fixture::init();
    f.cairn()
        .args(["backup", "--stdin", "--stdin-filename", "x"])
        .stdin("data\n")
        .ok();
    let keys_before = std::fs::read_dir(f.repo.join("keys")).unwrap().count();
    for pw in [PASSWORD, "a different password"] {
        let r = f
            .with_password(pw)
            .args(["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
            .fails();
        assert!(r.stderr().contains("already"), "{r}");
    }
    assert_eq!(std::fs::read_dir(f.repo.join("keys")).unwrap().count(), keys_before);
    assert_eq!(f.dump("latest", "/x"), b"data\n");
    f.with_password("a different password").arg("snapshots").code(12);
}
