//! cairn.toml: profiles, and unknown keys.

use crate::util::*;

fn profile(f: &Fixture, extra: &str) -> String {
    format!(
        "[repositories.primary]\nlocation = \"{}\"\npassword-file = \"{}\"\n{extra}",
        s(&f.repo),
        s(&f.password_file)
    )
}

#[test]
fn a_profile_in_cairn_toml_names_the_repository_and_its_password() {
    let f = Fixture::init();
    f.cairn()
        .args(["backup", "--stdin", "--stdin-filename", "p.txt"])
        .stdin("via profile\n")
        .ok();

    let cfg = f.path("conf/cairn.toml");
    write(&cfg, profile(&f, ""));
    // No CAIRN_* variable at all: -r names the profile.
    let snaps = f
        .bare()
        .args(["--config", &s(&cfg), "-r", "primary", "snapshots", "--json"])
        .ok()
        .json();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(
        f.bare()
            .args(["--config", &s(&cfg), "-r", "primary", "dump", "latest", "/p.txt"])
            .ok()
            .stdout,
        b"via profile\n"
    );
    // CAIRN_REPOSITORY may name the profile too.
    f.bare()
        .env("CAIRN_REPOSITORY", "primary")
        .args(["--config", &s(&cfg), "snapshots"])
        .ok();

    // The user's own cairn.toml is read by default.
    write(&f.user_config(), profile(&f, ""));
    f.bare().args(["-r", "primary", "snapshots"]).ok();
    // And its default repository is used without -r.
    write(
        &f.user_config(),
        format!("repository = \"primary\"\n{}", profile(&f, "")),
    );
    let r = f.bare().arg("snapshots").ok();
    assert!(r.stdout().contains("1 snapshot"), "{r}");
}

#[test]
fn an_unknown_key_in_cairn_toml_is_an_error_naming_it() {
    let f = Fixture::init();
    let cfg = f.path("cairn.toml");

    write(&cfg, profile(&f, "pasword-fiel = \"/typo\"\n"));
    let r = f
        .bare()
        .args(["--config", &s(&cfg), "-r", "primary", "snapshots"])
        .fails();
    assert!(r.stderr().contains("pasword-fiel"), "{r}");

    write(&cfg, format!("colour = true\n{}", profile(&f, "")));
    let r = f
        .bare()
        .args(["--config", &s(&cfg), "-r", "primary", "snapshots"])
        .fails();
    assert!(r.stderr().contains("colour"), "{r}");

    write(
        &cfg,
        format!(
            "{}\n[backup]\nexclude = [\"*.tmp\"]\nexclude-caches = true\n",
            profile(&f, "")
        ),
    );
    let r = f
        .bare()
        .args(["--config", &s(&cfg), "-r", "primary", "snapshots"])
        .fails();
    assert!(r.stderr().contains("exclude-caches"), "{r}");

    // A named config file that does not exist is an error too.
    let r = f
        .bare()
        .args(["--config", &s(&f.path("missing.toml")), "-r", "primary", "snapshots"])
        .fails();
    assert!(r.stderr().contains("missing.toml"), "{r}");
}
