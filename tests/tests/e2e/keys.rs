//! `key list|add|remove|passwd`.

use serde_json::Value;

use crate::util::*;

fn keys(c: &mut Cairn) -> Vec<Value> {
    c.args(["key", "list"]).json().as_array().unwrap().clone()
}

fn current(keys: &[Value]) -> String {
    let cur: Vec<_> = keys.iter().filter(|k| k["current"] == Value::Bool(true)).collect();
    assert_eq!(cur.len(), 1, "exactly one key is in use: {keys:#?}");
    str_at(cur[0], "/id").to_string()
}

/// `key add` with `password`; returns the new key's id.
fn add_key(f: &Fixture, password: &str) -> String {
    let added = f
        .cairn()
        .args(["key", "add"])
        .env("CAIRN_NEW_PASSWORD_FILE", f.password_file_for(password))
        .json();
    str_at(&added, "/key").to_string()
}

#[test]
fn key_add_then_the_new_password_opens() {
    let f = Fixture::init();
    f.backup(&["--stdin", "--stdin-filename", "x"]);
    let original = current(&keys(&mut f.cairn()));

    let second = "second password, for the colleague";
    let added_id = add_key(&f, second);
    assert_ne!(added_id, original);

    let with_new = keys(&mut f.with_password(second));
    assert_eq!(with_new.len(), 2, "{with_new:#?}");
    assert_eq!(current(&with_new), added_id, "the new password opens the new key");
    assert_eq!(
        current(&keys(&mut f.cairn())),
        original,
        "the old password still opens the old key"
    );
    let ids: Vec<String> = with_new.iter().map(|k| str_at(k, "/id").to_string()).collect();
    assert!(ids.contains(&original) && ids.contains(&added_id), "{ids:?}");

    // Both see the same data.
    assert_eq!(
        f.with_password(second)
            .arg("snapshots")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn removing_the_key_in_use_is_refused_and_another_can_be_removed() {
    let f = Fixture::init();
    let second = "another password entirely";
    f.cairn()
        .args(["key", "add"])
        .env("CAIRN_NEW_PASSWORD_FILE", f.password_file_for(second))
        .ok();
    let ks = keys(&mut f.cairn());
    let in_use = current(&ks);
    let other = ks
        .iter()
        .map(|k| str_at(k, "/id").to_string())
        .find(|id| *id != in_use)
        .unwrap();

    let r = f.cairn().args(["key", "remove", &in_use[..8]]).fails();
    assert!(r.stderr().contains("in use"), "{r}");
    assert_eq!(keys(&mut f.cairn()).len(), 2, "nothing was removed");

    f.cairn().args(["key", "remove", &other[..8]]).ok();
    let ks = keys(&mut f.cairn());
    assert_eq!(ks.len(), 1);
    assert_eq!(current(&ks), in_use);
    f.with_password(second).arg("snapshots").code(12);
}

#[test]
fn key_passwd_changes_the_password() {
    let f = Fixture::init();
    f.cairn()
        .args(["backup", "--stdin", "--stdin-filename", "data.txt"])
        .stdin("kept across password changes\n")
        .ok();
    let old_id = current(&keys(&mut f.cairn()));

    let new = "the new password after passwd";
    let r = f
        .cairn()
        .args(["key", "passwd"])
        .env("CAIRN_NEW_PASSWORD_FILE", f.password_file_for(new))
        .json();
    let new_id = str_at(&r, "/key").to_string();
    assert_ne!(new_id, old_id);

    let r = f.cairn().arg("snapshots").code(12);
    assert!(r.stderr().contains("wrong password"), "{r}");
    let ks = keys(&mut f.with_password(new));
    assert_eq!(ks.len(), 1, "the old key is gone: {ks:#?}");
    assert_eq!(current(&ks), new_id);
    assert_eq!(
        f.with_password(new).args(["dump", "latest", "/data.txt"]).ok().stdout,
        b"kept across password changes\n"
    );
}

#[test]
fn empty_new_password_is_refused() {
    let f = Fixture::init();
    let r = f
        .cairn()
        .args(["key", "add"])
        .env("CAIRN_NEW_PASSWORD_FILE", f.password_file_for(""))
        .run();
    assert_no_panic(&r);
    assert_ne!(
        r.code(),
        Some(0),
        "an empty password must not be accepted as a key\n{r}"
    );
    assert_eq!(keys(&mut f.cairn()).len(), 1);
}

/// Regression: `init` used to accept Argon2 settings that every later
/// command then refused as a damaged key, so the repository could never be
/// opened. The same bounds apply when writing as when reading.
#[test]
fn init_refuses_argon2_settings_that_open_would_refuse() {
    let f = Fixture::empty();
    let r = f
        .cairn()
        .args(["init", "--kdf-memory-kib", "64", "--kdf-iterations", "65"])
        .fails();
    assert_eq!(r.code(), Some(1), "{r}");
    assert!(
        r.stderr().contains("invalid option") && r.stderr().contains("65 passes"),
        "{r}"
    );
    assert!(!f.repo.join("config").exists(), "nothing is created");
    assert!(!f.repo.join("keys").exists(), "nothing is created");

    f.cairn()
        .args(["init", "--kdf-memory-kib", "64", "--kdf-iterations", "64"])
        .ok();
    f.cairn().arg("snapshots").ok();
}

/// Regression: `restore`, `key remove` and `cat` each resolved id prefixes
/// their own way (one case-sensitive, one not). Now one resolver serves them
/// all: any case, a unique prefix, and the same words when it is not.
#[test]
fn id_prefixes_mean_the_same_to_every_command() {
    let f = Fixture::init();
    f.backup(&["--stdin", "--stdin-filename", "x"]);
    let snap = str_at(&f.snapshots()[0], "/id").to_string();
    let upper = snap[..10].to_ascii_uppercase();
    let target = f.path("out");
    f.cairn().args(["restore", &upper, "--target"]).arg(&target).ok();
    assert!(target.join("x").is_file());
    let cat = f.cairn().args(["cat", "snapshot", &upper]).json();
    assert_eq!(str_at(&cat, "/id"), snap);

    let added_id = add_key(&f, "second password");
    let prefix = added_id[..12].to_ascii_uppercase();
    let cat = f.cairn().args(["cat", "key", &prefix]).json();
    assert_eq!(str_at(&cat, "/id"), added_id);
    f.cairn().args(["key", "remove", &prefix]).ok();
    assert_eq!(keys(&mut f.cairn()).len(), 1);

    for args in [["cat", "key", "zz"], ["key", "remove", "zz"]] {
        let r = f.cairn().args(args).fails();
        assert!(r.stderr().contains("no key matches `zz`"), "{r}");
    }
    let r = f.cairn().args(["restore", "zz", "--target"]).arg(&target).fails();
    assert!(r.stderr().contains("no snapshot matches `zz`"), "{r}");
}
