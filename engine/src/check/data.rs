//! `check --read-data`: every byte of every stored pack, retrieving archived
//! packs when asked to. A damaged pack is recorded with the blobs found
//! damaged in it (or as a whole when its header cannot be read), so the tree
//! phase names the files that need them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::{CheckError, CheckOptions, CheckReport, Damage, StoredPack};
use crate::id::{BlobId, ObjectId, PackId};
use crate::index::{IndexBlob, IndexPack};
use crate::pack;
use crate::repository::Repository;
use crate::retrieve::{self, DriveOptions, PackRef};

/// Reads every stored pack, retrieving archived ones when asked to.
pub(super) fn read_data(
    repo: &Repository,
    stored: &HashMap<PackId, StoredPack>,
    in_index: &HashMap<PackId, IndexPack>,
    opts: &CheckOptions,
    damage: &mut Damage,
    r: &mut CheckReport,
) -> Result<(), CheckError> {
    let found = Mutex::new(Vec::new());
    let bytes_read = AtomicU64::new(0);
    let mut packs: Vec<PackRef> = stored
        .iter()
        .map(|(id, s)| PackRef {
            kind: s.kind,
            id: *id,
            size: s.size,
        })
        .collect();
    packs.sort_by_key(|a| a.id);
    // One pack buffer per reading thread, taken back after each pack: a
    // fresh 16 MiB allocation per pack cost page faults, and glibc kept
    // the freed ones in its per-thread arenas (peak RSS 74–95 MiB from run
    // to run).
    let buffers = Mutex::new(Vec::<Vec<u8>>::new());
    // One reading thread more than there are cores: a thread waiting for
    // its pack from disk leaves its core to the others' verifying. Packs
    // are written and restored around the page cache, so a check usually
    // reads them cold: 1.40-1.53 s with two threads, 1.32-1.39 s with three
    // (nights' repository, caches dropped; warm, no difference).
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cpus + 1).build().ok();
    let read = |idx: &[usize]| -> Result<Vec<usize>, CheckError> {
        let archived = Mutex::new(Vec::new());
        let each = |&i: &usize| {
            let p = &packs[i];
            let indexed = in_index.get(&p.id).map(|x| x.blobs.as_slice());
            let mut buf = buffers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .unwrap_or_default();
            let outcome = read_pack(repo, p, indexed, &mut buf, &bytes_read, opts.progress.as_deref());
            // A pack far larger than this repository writes (a foreign or
            // damaged one) does not keep its memory until the check ends.
            if buf.capacity() > 2 * repo.config().pack_size as usize {
                buf = Vec::new();
            }
            buffers.lock().unwrap_or_else(|p| p.into_inner()).push(buf);
            match outcome {
                Ok(()) => {}
                Err(PackReadError::Archived) => archived.lock().unwrap_or_else(|p| p.into_inner()).push(i),
                Err(PackReadError::Damaged { detail, blobs }) => {
                    found
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((p.kind, p.id, detail, blobs));
                }
            }
        };
        match &pool {
            Some(pool) => pool.install(|| idx.par_iter().for_each(each)),
            None => idx.par_iter().for_each(each),
        }
        Ok(archived.into_inner().unwrap_or_else(|p| p.into_inner()))
    };
    let unread = match &opts.retrieval {
        // Archived packs are retrieved as a restore would (each once), then
        // read; or the check stops and says a retrieval is pending.
        Some(ro) => {
            let drive = DriveOptions {
                retrieval: ro,
                ask_first: false,
                hook: opts.on_retrieval.as_deref(),
            };
            let done = retrieve::drive(repo, &packs, &drive, read)?;
            r.retrieval = done.report;
            done.pending.len()
        }
        None => read(&(0..packs.len()).collect::<Vec<_>>())?.len(),
    };
    let mut found = found.into_inner().unwrap_or_else(|p| p.into_inner());
    found.sort_by_key(|a| a.1);
    for (kind, id, detail, blobs) in found {
        match blobs {
            // Only these blobs are damaged: the others still read fine.
            Some(blobs) => {
                let i = damage.add(format!("{kind} {id}"), detail);
                for b in blobs {
                    damage.blobs.entry(b).or_insert(i);
                }
            }
            None => damage.pack(kind, id, detail),
        }
    }
    r.archived_unread = unread;
    if unread > 0 {
        r.warnings.push(format!(
            "{unread} pack(s) are in archive storage and were not read yet; their content is unverified{}",
            if r.retrieval.is_some() {
                ": their retrieval is requested; run the same check again once it is done"
            } else {
                ""
            }
        ));
    }
    r.bytes_read = bytes_read.load(Ordering::Relaxed);
    Ok(())
}

enum PackReadError {
    /// In an archive storage class: unread, not damaged.
    Archived,
    /// Damaged: what is wrong, and the blobs affected (`None`: the whole
    /// pack, e.g. when its header cannot be read or disagrees with the index).
    Damaged { detail: String, blobs: Option<Vec<BlobId>> },
}

fn whole(detail: String) -> PackReadError {
    PackReadError::Damaged { detail, blobs: None }
}

/// Reads and verifies one pack, in `buf` (whatever it held is replaced).
fn read_pack(
    repo: &Repository,
    pack: &PackRef,
    indexed: Option<&[IndexBlob]>,
    buf: &mut Vec<u8>,
    read: &AtomicU64,
    progress: Option<&AtomicU64>,
) -> Result<(), PackReadError> {
    let (id, kind) = (pack.id, pack.kind);
    let name = id.to_hex();
    let bytes = match repo.backend().read_into(kind, &name, buf) {
        Ok(()) => buf.as_mut_slice(),
        Err(crate::backend::BackendError::Archived { .. }) => return Err(PackReadError::Archived),
        Err(e) => return Err(whole(format!("cannot be read: {e}"))),
    };
    read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    if let Some(p) = progress {
        p.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    let name_ok = ObjectId::of_bytes(bytes) == ObjectId::from(id);
    let entries = pack::read_whole(repo.keys(), &name, bytes).map_err(|e| whole(e.to_string()))?;
    if let Some(ix) = indexed {
        let mut a: Vec<_> = ix.iter().map(|b| (b.id, b.offset, b.length)).collect();
        let mut h: Vec<_> = entries.iter().map(|e| (e.id, e.offset, e.length)).collect();
        a.sort();
        h.sort();
        if a != h {
            return Err(whole("header and index disagree".into()));
        }
    }
    // Blobs are decrypted where they lie (the pack buffer is not needed
    // afterwards, and a raw blob then costs no copy), unless a header lists
    // blobs that overlap: decrypting one would then spoil the other.
    let mut spans: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| (u64::from(e.offset), u64::from(e.length)))
        .collect();
    spans.sort_unstable();
    let disjoint = spans.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0);
    let mut bad = Vec::new();
    let mut first = None;
    for e in &entries {
        let sealed = &mut bytes[e.offset as usize..(e.offset + e.length) as usize];
        let opened = if disjoint {
            repo.open_blob_in_place(e.blob_type, &e.id, &id, sealed)
        } else {
            repo.open_blob(e.blob_type, &e.id, &id, sealed)
                .map(std::borrow::Cow::Owned)
        };
        let ok = match opened {
            Ok(plain) => plain.len() == e.raw_length as usize && repo.keys().blob_id(&plain) == e.id,
            Err(err) => {
                first.get_or_insert_with(|| err.to_string());
                false
            }
        };
        if !ok {
            first.get_or_insert_with(|| format!("blob {} does not match its id", e.id.short()));
            bad.push(e.id);
        }
    }
    match (bad.is_empty(), name_ok) {
        (true, true) => Ok(()),
        (true, false) => Err(PackReadError::Damaged {
            detail: "content does not match its name (damaged outside its blobs)".into(),
            blobs: Some(Vec::new()),
        }),
        (false, _) => Err(PackReadError::Damaged {
            detail: format!(
                "damaged: {} of its {} blob(s) do not authenticate or match their id (first: {})",
                bad.len(),
                entries.len(),
                first.unwrap_or_default()
            ),
            blobs: Some(bad),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{self, Aad, BlobType};
    use crate::repository::pack_kind;
    use crate::testing::{memory_repo, noise};

    fn stored(repo: &Repository, overlap: bool) -> PackRef {
        let mut packer = pack::Packer::new(BlobType::Data, 1 << 20);
        for (i, len) in [(1u64, 5000), (2, 7000)] {
            let plain = noise(len, i);
            let id = repo.keys().blob_id(&plain);
            let sealed = blob::seal(repo.keys(), Aad::Blob(BlobType::Data, &id), &plain, repo.compression()).unwrap();
            packer.add(id, &sealed, plain.len()).unwrap();
        }
        if overlap {
            packer.list_last_again();
        }
        let p = packer.finish(repo.keys()).unwrap();
        let kind = pack_kind(BlobType::Data);
        repo.backend().write(kind, &p.id.to_hex(), &p.bytes).unwrap();
        PackRef {
            kind,
            id: p.id,
            size: p.bytes.len() as u64,
        }
    }

    /// Blobs are decrypted in place, except where the header lists the same
    /// bytes twice: both entries must still authenticate.
    #[test]
    fn blobs_listed_twice_still_authenticate() {
        let repo = memory_repo();
        let read = AtomicU64::new(0);
        // One buffer for every pack, as the check's threads keep theirs,
        // holding more bytes than any pack at first.
        let mut buf = vec![0x5A; 1 << 20];
        for overlap in [false, true] {
            let p = stored(&repo, overlap);
            assert!(
                read_pack(&repo, &p, None, &mut buf, &read, None).is_ok(),
                "overlap {overlap}"
            );
        }
        // A flipped byte inside a blob is still found.
        let p = stored(&repo, false);
        let kind = pack_kind(BlobType::Data);
        let mut bytes = repo.backend().read(kind, &p.id.to_hex()).unwrap();
        bytes[100] ^= 1;
        repo.backend().remove(kind, &p.id.to_hex()).unwrap();
        repo.backend().write(kind, &p.id.to_hex(), &bytes).unwrap();
        match read_pack(&repo, &p, None, &mut buf, &read, None) {
            Err(PackReadError::Damaged { blobs: Some(b), .. }) => assert_eq!(b.len(), 1),
            Ok(()) => panic!("a flipped byte went unnoticed"),
            Err(_) => panic!("expected exactly one damaged blob"),
        }
    }
}
