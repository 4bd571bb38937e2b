//! End-to-end tests: each drives the `cairn` binary in its own temporary
//! folders, with its own environment, and checks what a user would see.
//!
//! The binary is found (and built if needed) by `util::cairn_bin`; set
//! CAIRN_BIN to test another build.

#![allow(clippy::unwrap_used)]

mod util;

mod backup;
mod browse;
mod cassandra;
mod check;
mod check_subset;
mod config;
mod config_check;
mod copy;
mod crash;
mod disk;
mod drill;
mod errors;
mod forget;
mod forget_restic;
mod git;
mod import_restic;
mod keys;
mod lock;
mod misc;
mod mount;
mod prune;
mod recovery;
mod redis;
mod repair;
mod restore;
mod restore_damage;
mod restore_many;
mod restore_special;
mod rewrite;
mod run;
mod s3;
mod secrets;
mod sql;
mod stats;
mod status;
mod stdin;
mod tag;
mod writers;
