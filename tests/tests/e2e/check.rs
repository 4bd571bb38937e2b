//! `check` and `check --read-data`, on a good and on a damaged repository.

use std::fs;

use crate::util::*;

#[test]
fn check_passes_on_a_good_repository() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, true);
    f.backup(&[&s(&src)]);
    f.cairn().args(["backup", "--stdin"]).stdin("stream\n").ok();

    f.cairn().arg("check").ok();
    let j = f.cairn().args(["check", "--read-data"]).json();
    assert_eq!(j["ok"], serde_json::Value::Bool(true), "{j:#}");
    assert!(
        u64_at(&j, "/report/bytes_read") > BIG_FILE_SIZE as u64 / 2,
        "it read the data: {j:#}"
    );
    assert_eq!(u64_at(&j, "/report/snapshots"), 2);
}

#[test]
fn check_read_data_finds_a_flipped_byte_and_names_the_pack() {
    let f = Fixture::init();
    let src = f.path("src");
    sample_tree(&src, true);
    f.backup(&[&s(&src)]);
    f.cairn().args(["check", "--read-data"]).ok();

    // The largest data pack holds big.bin; flip one byte in its middle.
    let pack = files_under(&f.repo.join("data"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("a data pack");
    let name = pack.file_name().unwrap().to_string_lossy().into_owned();
    let mut bytes = fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    // Packs may be stored read-only.
    chmod(&pack, 0o644);
    fs::write(&pack, &bytes).unwrap();

    let r = f.cairn().args(["check", "--read-data"]).fails();
    assert_eq!(r.code(), Some(1), "{r}");
    assert!(r.stderr().contains(&name), "the damaged pack {name} is named\n{r}");
    let r = f.cairn().args(["check", "--read-data", "--json"]).fails();
    let j = r.json();
    assert_eq!(j["ok"], serde_json::Value::Bool(false), "{j:#}");
    assert!(j.to_string().contains(&name), "{j:#}");

    // Reading the damaged file never returns wrong bytes silently.
    let big = src.join("data/big.bin");
    let r = f.cairn().args(["dump", "latest", &s(&big)]).run();
    assert_no_panic(&r);
    if r.code() == Some(0) {
        assert_eq!(
            blake3::hash(&r.stdout).to_hex().to_string(),
            hash_file(&big),
            "dump succeeded, so it must be exact"
        );
    }
}
