//! What restore leaves out unless asked: set-id bits and device nodes
//! (`--preserve-special`, root only), extended attributes (`--no-xattrs`).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::util::*;

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn set_id_bits_are_dropped_unless_preserve_special() {
    let f = Fixture::init();
    let src = f.path("src");
    write(&src.join("suid-tool"), "#!/bin/sh\n");
    chmod(&src.join("suid-tool"), 0o4755);
    write(&src.join("sgid-tool"), "#!/bin/sh\n");
    chmod(&src.join("sgid-tool"), 0o2711);
    write(&src.join("plain"), "plain\n");
    chmod(&src.join("plain"), 0o640);
    fs::create_dir_all(src.join("shared")).unwrap();
    chmod(&src.join("shared"), 0o3775);
    assert_eq!(
        mode_of(&src.join("suid-tool")),
        0o4755,
        "this file system keeps set-uid bits"
    );
    f.backup(&[&s(&src)]);

    let target = f.path("default");
    f.cairn().args(["restore", "latest", "--target", &s(&target)]).ok();
    let got = |rel: &str| mode_of(&under(&target, &src.join(rel)));
    assert_eq!(got("suid-tool"), 0o755);
    assert_eq!(got("sgid-tool"), 0o711);
    assert_eq!(got("plain"), 0o640);
    assert_eq!(got("shared"), 0o1775, "the sticky bit stays, set-gid goes");

    let kept = f.path("preserved");
    let r = f
        .cairn()
        .args(["restore", "latest", "--preserve-special", "--target", &s(&kept)])
        .run();
    if is_root() {
        assert_eq!(r.code(), Some(0), "{r}");
        assert_same_tree(&manifest(&src), &manifest(&under(&kept, &src)));
    } else {
        assert_ne!(
            r.code(),
            Some(0),
            "--preserve-special is refused to a non-root user\n{r}"
        );
        assert!(r.stderr().contains("root"), "{r}");
        assert!(!kept.exists(), "a refused restore writes nothing");
    }
}

#[test]
fn device_nodes_are_left_out_unless_preserve_special() {
    let f = Fixture::init();
    let dev = Path::new("/dev/null");
    let rdev = fs::metadata(dev).unwrap().rdev();
    let src = f.path("src");
    write(&src.join("file"), "beside the device\n");
    f.backup(&[&s(&src), "/dev/null"]);

    let target = f.path("default");
    let r = f
        .cairn()
        .args(["restore", "latest", "--json", "--target", &s(&target)])
        .ok();
    let restored = under(&target, dev);
    assert!(fs::symlink_metadata(&restored).is_err(), "no device node by default");
    assert!(
        r.stderr().contains("not restored: device node, use --preserve-special"),
        "{r}"
    );
    let warnings = strings_at(&r.json(), "/summary/warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&s(&restored)) && w.contains("device node")),
        "{warnings:?}"
    );
    assert_eq!(
        fs::read(under(&target, &src.join("file"))).unwrap(),
        b"beside the device\n"
    );

    if !is_root() {
        eprintln!("NOT RUN: creating a device node with --preserve-special needs root; only the default was tested");
        return;
    }
    let kept = f.path("preserved");
    f.cairn()
        .args(["restore", "latest", "--preserve-special", "--target", &s(&kept)])
        .ok();
    let m = fs::symlink_metadata(under(&kept, dev)).unwrap();
    assert!(m.file_type().is_char_device(), "{m:?}");
    assert_eq!(m.rdev(), rdev);
}

#[test]
fn no_xattrs_leaves_extended_attributes_out() {
    let f = Fixture::init();
    let src = f.path("src");
    let file = src.join("tagged");
    write(&file, "tagged\n");
    if let Err(e) = xattr::set(&file, "user.cairn.test", b"kept") {
        panic!("this file system takes no user extended attributes ({e}); the test cannot run here");
    }
    f.backup(&[&s(&src)]);

    let with = f.path("with");
    f.cairn().args(["restore", "latest", "--target", &s(&with)]).ok();
    assert_eq!(
        xattr::get(under(&with, &file), "user.cairn.test").unwrap(),
        Some(b"kept".to_vec())
    );

    let without = f.path("without");
    f.cairn()
        .args(["restore", "latest", "--no-xattrs", "--target", &s(&without)])
        .ok();
    let restored = under(&without, &file);
    assert_eq!(fs::read(&restored).unwrap(), b"tagged\n");
    assert_eq!(xattr::get(&restored, "user.cairn.test").unwrap(), None);
}
