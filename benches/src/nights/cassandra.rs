//! Cassandra model: two nodes, a handful of tables, size-tiered SSTables.
//!
//! The set of SSTables alive on a given night is a pure function of
//! (seed, size, night): night 1 creates a size-tiered spread per table, and
//! every later night flushes a few small SSTables and sometimes compacts a
//! bucket of similar-sized ones into one. A compacted SSTable's payload is
//! the concatenation of its inputs' compressed chunks (minus a few purged
//! ones), so deduplication can find them again.
//!
//! SSTables live (as immutable files) in `<out>/live/node<k>/data/<ks>/<table>-<uuid>/`;
//! each night's snapshot folder
//! `<root>/node<k>/data/<ks>/<table>-<uuid>/snapshots/<tag>/` holds hard links
//! to them, as `nodetool snapshot` does, so unchanged SSTables keep their inode
//! from night to night while their path changes with the tag.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::rng::{hash_bytes, mix, Rng};
use super::text;
use super::util::{
    create_dir_all, format_timestamp, night_epoch, night_tag, remove_dir_all_if_exists, write_atomic, Context, Crc32,
    Error, Result,
};

pub const NODES: u32 = 2;
/// Uncompressed chunk length (Cassandra's `chunk_length_in_kb: 64`).
pub const CHUNK: usize = 64 * 1024;
/// Average on-disk bytes of one compressed chunk (plus its CRC), measured on
/// this generator's rows; used only to turn a byte budget into chunk counts.
pub const EST_CHUNK_BYTES: f64 = 49_300.0;
/// Other components (index, filter, summary, statistics, ...) relative to
/// Data.db, used for the same budget.
const EST_OVERHEAD: f64 = 0.083;

const TAG_INIT: u64 = 0xC0_0001;
const TAG_NIGHT: u64 = 0xC0_0002;
const TAG_SEG: u64 = 0xC0_0003;
const TAG_UUID: u64 = 0xC0_0004;

/// A table: where it lives, its share of the Cassandra bytes, and the shape
/// of its rows.
pub struct TableDef {
    pub keyspace: &'static str,
    pub name: &'static str,
    pub weight: f64,
    /// Rows per partition (range).
    rows: (u64, u64),
    /// Opaque binary column length (range): serialized blobs, tokens, ...
    blob: (u64, u64),
    /// Free-text words per row (range).
    words: (u64, u64),
    schema: &'static str,
}

pub const TABLES: &[TableDef] = &[
    TableDef {
        keyspace: "shop",
        name: "orders",
        weight: 0.22,
        rows: (1, 4),
        blob: (8, 40),
        words: (0, 8),
        schema: "order_id uuid, created_at timestamp, status text, country text, total_cents bigint, customer text, note text, payload blob, PRIMARY KEY (order_id, created_at)",
    },
    TableDef {
        keyspace: "shop",
        name: "order_items",
        weight: 0.18,
        rows: (1, 8),
        blob: (8, 32),
        words: (0, 4),
        schema: "order_id uuid, line int, sku text, qty int, price_cents bigint, title text, attrs blob, PRIMARY KEY (order_id, line)",
    },
    TableDef {
        keyspace: "shop",
        name: "carts",
        weight: 0.06,
        rows: (1, 3),
        blob: (16, 64),
        words: (0, 3),
        schema: "cart_id uuid, updated_at timestamp, items blob, PRIMARY KEY (cart_id)",
    },
    TableDef {
        keyspace: "telemetry",
        name: "events",
        weight: 0.25,
        rows: (4, 24),
        blob: (4, 32),
        words: (0, 2),
        schema: "device_id uuid, ts timestamp, kind text, value double, tags text, body blob, PRIMARY KEY (device_id, ts)",
    },
    TableDef {
        keyspace: "telemetry",
        name: "metrics_by_day",
        weight: 0.12,
        rows: (8, 32),
        blob: (6, 24),
        words: (0, 1),
        schema: "metric text, day date, ts timestamp, value double, sketch blob, PRIMARY KEY ((metric, day), ts)",
    },
    TableDef {
        keyspace: "users",
        name: "profiles",
        weight: 0.10,
        rows: (1, 1),
        blob: (16, 96),
        words: (2, 14),
        schema: "user_id uuid, email text, name text, city text, bio text, avatar blob, PRIMARY KEY (user_id)",
    },
    TableDef {
        keyspace: "users",
        name: "sessions",
        weight: 0.07,
        rows: (1, 6),
        blob: (16, 48),
        words: (0, 2),
        schema: "user_id uuid, session_id timeuuid, ip text, user_agent text, token blob, PRIMARY KEY (user_id, session_id)",
    },
];

/// One compressed chunk of some payload stream: `seg` identifies the stream
/// (the SSTable that first flushed it), `idx` the chunk within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRef {
    pub seg: u64,
    pub idx: u32,
}

#[derive(Clone, Debug)]
pub struct SsTable {
    pub gen: u64,
    pub created_night: u32,
    pub blocks: Vec<BlockRef>,
}

#[derive(Clone, Debug)]
pub struct TableState {
    pub next_gen: u64,
    pub sstables: Vec<SsTable>,
}

/// What one (node, table) looks like on a night.
pub struct TablePlan {
    pub node: u32,
    pub table: usize,
    pub uuid: String,
    pub state: TableState,
    /// SSTables flushed / compactions run on that night.
    pub flushed: u32,
    pub compactions: u32,
}

impl TablePlan {
    pub fn def(&self) -> &'static TableDef {
        &TABLES[self.table]
    }

    /// `node<k>/data/<ks>/<table>-<uuid>` (relative).
    pub fn rel_dir(&self) -> PathBuf {
        let d = self.def();
        PathBuf::from(format!("node{}", self.node))
            .join("data")
            .join(d.keyspace)
            .join(format!("{}-{}", d.name, self.uuid))
    }
}

/// Table ids are cluster-wide in Cassandra, so both nodes share them.
pub fn table_uuid(seed: u64, table: usize) -> String {
    let mut rng = Rng::derive(&[seed, TAG_UUID, table as u64]);
    let mut s = String::with_capacity(32);
    text::push_hex(&mut rng, &mut s, 32);
    s
}

fn total_chunks(cass_bytes: u64, table: usize) -> u64 {
    let per = cass_bytes as f64 * TABLES[table].weight / f64::from(NODES);
    ((per / (EST_CHUNK_BYTES * (1.0 + EST_OVERHEAD))).round() as u64).max(16)
}

fn fresh(seed: u64, node: u32, table: usize, gen: u64, chunks: u64, night: u32) -> SsTable {
    let seg = mix(&[seed, TAG_SEG, u64::from(node), table as u64, gen]);
    SsTable {
        gen,
        created_night: night,
        blocks: (0..chunks.max(1) as u32).map(|idx| BlockRef { seg, idx }).collect(),
    }
}

/// Night 1: a size-tiered spread of SSTables (a few big, many small).
fn initial(seed: u64, node: u32, table: usize, total: u64) -> TableState {
    const FRACTIONS: [f64; 13] = [
        0.34, 0.18, 0.12, 0.08, 0.06, 0.05, 0.04, 0.03, 0.03, 0.02, 0.02, 0.015, 0.015,
    ];
    let mut rng = Rng::derive(&[seed, TAG_INIT, u64::from(node), table as u64]);
    let mut gen = rng.range(200, 4000);
    let mut sstables = Vec::new();
    for f in FRACTIONS {
        let jitter = 0.8 + 0.4 * rng.unit();
        let chunks = (f * jitter * total as f64).round() as u64;
        sstables.push(fresh(seed, node, table, gen, chunks, 1));
        gen += rng.range(1, 25);
    }
    TableState {
        next_gen: gen,
        sstables,
    }
}

/// Size-tiered bucketing: similar sizes (within 0.5x..1.5x of the bucket's
/// average) go together; returns the smallest bucket with at least 4 members.
fn stcs_bucket(sstables: &[SsTable]) -> Option<Vec<u64>> {
    let mut by_size: Vec<(usize, u64)> = sstables.iter().map(|s| (s.blocks.len(), s.gen)).collect();
    by_size.sort_unstable();
    let mut buckets: Vec<Vec<(usize, u64)>> = Vec::new();
    for item in by_size {
        if let Some(b) = buckets.last_mut() {
            let avg = b.iter().map(|x| x.0 as f64).sum::<f64>() / b.len() as f64;
            let s = item.0 as f64;
            if s >= 0.5 * avg && s <= 1.5 * avg {
                b.push(item);
                continue;
            }
        }
        buckets.push(vec![item]);
    }
    buckets
        .into_iter()
        .find(|b| b.len() >= 4)
        .map(|b| b.into_iter().take(32).map(|x| x.1).collect())
}

/// One night of activity: flushes, then maybe one compaction.
fn step(state: &mut TableState, seed: u64, node: u32, table: usize, total: u64, night: u32) -> (u32, u32) {
    let mut rng = Rng::derive(&[seed, TAG_NIGHT, u64::from(node), table as u64, u64::from(night)]);
    let flushes = rng.range(1, 3) as u32;
    for _ in 0..flushes {
        let frac = 0.004 + 0.008 * rng.unit();
        let chunks = (frac * total as f64).round() as u64;
        let gen = state.next_gen;
        state.next_gen += 1;
        state.sstables.push(fresh(seed, node, table, gen, chunks, night));
    }
    let mut compactions = 0;
    if rng.chance(0.7) {
        if let Some(mut gens) = stcs_bucket(&state.sstables) {
            gens.sort_unstable();
            let mut blocks = Vec::new();
            for g in &gens {
                if let Some(s) = state.sstables.iter().find(|s| s.gen == *g) {
                    // Purged tombstones / overwritten cells: drop a few chunks.
                    blocks.extend(s.blocks.iter().copied().filter(|_| !rng.chance(0.03)));
                }
            }
            if blocks.is_empty() {
                blocks.push(BlockRef {
                    seg: mix(&[seed, TAG_SEG, u64::from(node), table as u64, state.next_gen]),
                    idx: 0,
                });
            }
            state.sstables.retain(|s| !gens.contains(&s.gen));
            let gen = state.next_gen;
            state.next_gen += 1;
            state.sstables.push(SsTable {
                gen,
                created_night: night,
                blocks,
            });
            compactions = 1;
        }
    }
    (flushes, compactions)
}

/// The Cassandra state of every (node, table) on `night`.
pub fn plan(seed: u64, cass_bytes: u64, night: u32) -> Vec<TablePlan> {
    let mut plans = Vec::new();
    for node in 1..=NODES {
        for table in 0..TABLES.len() {
            let total = total_chunks(cass_bytes, table);
            let mut state = initial(seed, node, table, total);
            let (mut flushed, mut compactions) = (state.sstables.len() as u32, 0);
            for n in 2..=night {
                (flushed, compactions) = step(&mut state, seed, node, table, total, n);
            }
            plans.push(TablePlan {
                node,
                table,
                uuid: table_uuid(seed, table),
                state,
                flushed,
                compactions,
            });
        }
    }
    plans
}

// ---------------------------------------------------------------------------
// Content.

/// One uncompressed 64 KiB chunk and the partitions that start in it.
struct RawChunk {
    data: Vec<u8>,
    /// (offset in chunk, partition key)
    partitions: Vec<(u32, [u8; 16])>,
}

fn put_vint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_vint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Semi-structured rows in a Cassandra-like binary row format.
fn gen_chunk(table: usize, b: BlockRef) -> RawChunk {
    let def = &TABLES[table];
    let mut rng = Rng::derive(&[b.seg, u64::from(b.idx)]);
    let mut data = Vec::with_capacity(CHUNK + 4096);
    let mut partitions = Vec::new();
    // Write timestamps in microseconds, around the segment's flush.
    let mut ts = 1_790_000_000_000_000_u64 + (b.seg >> 40) * 1_000 + u64::from(b.idx) * 7_000_000;
    let mut s = String::new();
    while data.len() < CHUNK {
        let mut key = [0_u8; 16];
        rng.fill(&mut key);
        partitions.push((data.len() as u32, key));
        data.extend_from_slice(&16_u16.to_be_bytes());
        data.extend_from_slice(&key);
        data.extend_from_slice(&0x7FFF_FFFF_u32.to_be_bytes());
        data.extend_from_slice(&0x8000_0000_0000_0000_u64.to_be_bytes());
        let rows = rng.range(def.rows.0, def.rows.1);
        for r in 0..rows {
            ts += rng.range(1_000, 90_000_000);
            let start = data.len();
            data.push(0x24); // flags: has timestamp, has all columns
            data.extend_from_slice(&(ts / 1000).to_be_bytes()); // clustering
            data.extend_from_slice(&[0, 0]); // row size placeholder
            data.extend_from_slice(&ts.to_be_bytes());
            put_str(&mut data, rng.pick(text::STATUSES));
            put_str(&mut data, rng.pick(text::COUNTRIES));
            data.extend_from_slice(&text::cents(&mut rng).to_be_bytes());
            s.clear();
            match table % 3 {
                0 => {
                    let first = rng.pick(text::FIRST_NAMES);
                    let last = rng.pick(text::LAST_NAMES);
                    s.push_str(&text::email(&mut rng, first, last));
                }
                1 => {
                    s.push_str("SKU-");
                    text::push_hex(&mut rng, &mut s, 6);
                }
                _ => s.push_str(rng.pick(text::EVENT_TYPES)),
            }
            put_str(&mut data, &s);
            s.clear();
            text::push_words(&mut rng, &mut s, def.words.0, def.words.1);
            put_str(&mut data, &s);
            // A trace/correlation id: hex text, which LZ4 cannot shorten but
            // an entropy coder can.
            s.clear();
            text::push_hex(&mut rng, &mut s, 16);
            put_str(&mut data, &s);
            // Small counters (skewed values), then the opaque blob.
            let n = rng.range(1, 6);
            put_vint(&mut data, n);
            for _ in 0..n {
                data.push((rng.below(40) * rng.below(5)) as u8);
            }
            let blob = rng.range(def.blob.0, def.blob.1) as usize;
            put_vint(&mut data, blob as u64);
            rng.extend(&mut data, blob);
            let size = (data.len() - start).min(0xFFFF) as u16;
            data[start + 9..start + 11].copy_from_slice(&size.to_be_bytes());
            if r + 1 == rows {
                data.push(0x01); // end of partition
            }
        }
    }
    data.truncate(CHUNK);
    RawChunk { data, partitions }
}

/// Cassandra's LZ4Compressor chunk: 4-byte little-endian uncompressed length,
/// then the raw LZ4 block.
fn compress_chunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 2 + 16);
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&lz4_flex::block::compress(raw));
    out
}

pub const COMPONENTS: &[&str] = &[
    "Data.db",
    "Index.db",
    "Summary.db",
    "Filter.db",
    "Statistics.db",
    "CompressionInfo.db",
    "Digest.crc32",
    "TOC.txt",
];

pub fn component_name(gen: u64, component: &str) -> String {
    format!("nb-{gen}-big-{component}")
}

/// Writes all components of one SSTable into `dir` (TOC.txt last, so its
/// presence marks a complete SSTable). Returns the bytes written.
fn write_sstable(dir: &Path, table: usize, sst: &SsTable, crc: &Crc32) -> Result<u64> {
    let path = |c: &str| dir.join(component_name(sst.gen, c));
    let mut written = 0_u64;

    // Data.db: compressed chunks, each followed by its CRC32.
    let data_path = path("Data.db");
    let tmp = super::util::tmp_path(&data_path);
    let mut offsets = Vec::with_capacity(sst.blocks.len());
    let mut index_entries: Vec<([u8; 16], u64)> = Vec::new();
    let mut digest = 0_u32;
    let mut pos = 0_u64;
    {
        let f = fs::File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        for (i, b) in sst.blocks.iter().enumerate() {
            let raw = gen_chunk(table, *b);
            let base = (i * CHUNK) as u64;
            index_entries.extend(raw.partitions.iter().map(|(off, k)| (*k, base + u64::from(*off))));
            let chunk = compress_chunk(&raw.data);
            let c = crc.update(0, &chunk).to_be_bytes();
            offsets.push(pos);
            w.write_all(&chunk)?;
            w.write_all(&c)?;
            digest = crc.update(crc.update(digest, &chunk), &c);
            pos += (chunk.len() + 4) as u64;
        }
        w.flush().ctx(|| format!("write {}", tmp.display()))?;
    }
    fs::rename(&tmp, &data_path).ctx(|| format!("rename {}", data_path.display()))?;
    written += pos;
    let data_len = (sst.blocks.len() * CHUNK) as u64;

    // Index.db: every partition key with its position.
    let mut index = Vec::with_capacity(index_entries.len() * 22);
    let mut index_pos = Vec::with_capacity(index_entries.len());
    for (k, p) in &index_entries {
        index_pos.push(index.len() as u64);
        index.extend_from_slice(&16_u16.to_be_bytes());
        index.extend_from_slice(k);
        put_vint(&mut index, *p);
        put_vint(&mut index, 0);
    }

    // Summary.db: every 128th index entry.
    let sampled: Vec<usize> = (0..index_entries.len()).step_by(128).collect();
    let mut summary = Vec::new();
    summary.extend_from_slice(&128_i32.to_be_bytes());
    summary.extend_from_slice(&(sampled.len() as i32).to_be_bytes());
    summary.extend_from_slice(&((sampled.len() * 28) as i64).to_be_bytes());
    summary.extend_from_slice(&128_i32.to_be_bytes());
    summary.extend_from_slice(&(sampled.len() as i32).to_be_bytes());
    for (n, _) in sampled.iter().enumerate() {
        summary.extend_from_slice(&((n * 24) as i32).to_le_bytes());
    }
    for &i in &sampled {
        summary.extend_from_slice(&index_entries[i].0);
        summary.extend_from_slice(&index_pos[i].to_le_bytes());
    }
    for e in [index_entries.first(), index_entries.last()].into_iter().flatten() {
        summary.extend_from_slice(&16_i32.to_be_bytes());
        summary.extend_from_slice(&e.0);
    }

    // Filter.db: a bloom filter over the partition keys (~10 bits/key, 7 hashes).
    let words = (index_entries.len() * 10).div_ceil(64).max(1);
    let mut bits = vec![0_u64; words];
    let nbits = (words * 64) as u64;
    for (k, _) in &index_entries {
        let h1 = hash_bytes(k);
        let h2 = h1.rotate_left(32) | 1;
        for i in 0..7_u64 {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % nbits;
            bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }
    let mut filter = Vec::with_capacity(8 + words * 8);
    filter.extend_from_slice(&7_i32.to_be_bytes());
    filter.extend_from_slice(&(words as i32).to_be_bytes());
    for w in bits {
        filter.extend_from_slice(&w.to_be_bytes());
    }

    // Statistics.db: partitioner, histograms, a cardinality sketch, ranges.
    let mut stats = Vec::new();
    put_str(&mut stats, "org.apache.cassandra.dht.Murmur3Partitioner");
    stats.extend_from_slice(&0.01_f64.to_be_bytes());
    let mut hist = [0_u64; 150];
    let mut hll = vec![0_u8; 2048];
    for (i, (k, p)) in index_entries.iter().enumerate() {
        let next = index_entries.get(i + 1).map_or(data_len, |e| e.1);
        let size = next.saturating_sub(*p).max(1);
        hist[(64 - size.leading_zeros() as usize).min(149)] += 1;
        let h = hash_bytes(k);
        let reg = (h & 2047) as usize;
        hll[reg] = hll[reg].max((h >> 11).trailing_zeros() as u8 + 1);
    }
    for h in hist {
        stats.extend_from_slice(&h.to_be_bytes());
    }
    stats.extend_from_slice(&hll);
    stats.extend_from_slice(&(index_entries.len() as u64).to_be_bytes());
    stats.extend_from_slice(&(pos as f64 / data_len.max(1) as f64).to_be_bytes());
    put_str(
        &mut stats,
        &format!(
            "sstable gen {} table {}.{}",
            sst.gen, TABLES[table].keyspace, TABLES[table].name
        ),
    );
    for e in [index_entries.first(), index_entries.last()].into_iter().flatten() {
        stats.extend_from_slice(&e.0);
    }

    // CompressionInfo.db
    let mut cinfo = Vec::with_capacity(40 + offsets.len() * 8);
    cinfo.extend_from_slice(&13_u16.to_be_bytes());
    cinfo.extend_from_slice(b"LZ4Compressor");
    cinfo.extend_from_slice(&0_i32.to_be_bytes());
    cinfo.extend_from_slice(&(CHUNK as i32).to_be_bytes());
    cinfo.extend_from_slice(&i32::MAX.to_be_bytes());
    cinfo.extend_from_slice(&data_len.to_be_bytes());
    cinfo.extend_from_slice(&(offsets.len() as i32).to_be_bytes());
    for o in &offsets {
        cinfo.extend_from_slice(&o.to_be_bytes());
    }

    let toc: String = COMPONENTS.iter().map(|c| format!("{c}\n")).collect();
    let digest = digest.to_string();
    let files: [(&str, &[u8]); 7] = [
        ("Index.db", &index),
        ("Summary.db", &summary),
        ("Filter.db", &filter),
        ("Statistics.db", &stats),
        ("CompressionInfo.db", &cinfo),
        ("Digest.crc32", digest.as_bytes()),
        ("TOC.txt", toc.as_bytes()),
    ];
    for (c, bytes) in files {
        write_atomic(&path(c), bytes)?;
        written += bytes.len() as u64;
    }
    Ok(written)
}

/// Parses `nb-<gen>-big-<component>` (also with a `.tmp` suffix).
fn parse_gen(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("nb-")?;
    let (gen, _) = rest.split_once("-big-")?;
    gen.parse().ok()
}

/// Summary of one materialised night.
#[derive(Debug, Default)]
pub struct CassStats {
    pub sstables: usize,
    pub created: usize,
    pub flushed: u32,
    pub compactions: u32,
    pub generated_bytes: u64,
    pub snapshot_bytes: u64,
}

/// Brings `<out>/live` to `night` (generating missing SSTables, deleting
/// compacted ones) and writes that night's snapshot folders under `root`,
/// replacing any earlier snapshot tags there.
pub fn materialise(
    out: &Path,
    root: &Path,
    seed: u64,
    cass_bytes: u64,
    night: u32,
    threads: usize,
) -> Result<CassStats> {
    let plans = plan(seed, cass_bytes, night);
    let live = out.join("live");
    let mut stats = CassStats::default();
    let mut jobs: Vec<(PathBuf, usize, &SsTable)> = Vec::new();

    for p in &plans {
        let dir = live.join(p.rel_dir());
        create_dir_all(&dir)?;
        let wanted: BTreeSet<u64> = p.state.sstables.iter().map(|s| s.gen).collect();
        let mut complete = BTreeSet::new();
        for entry in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match parse_gen(&name) {
                Some(g) if wanted.contains(&g) && !name.ends_with(".tmp") => {
                    if name.ends_with("-TOC.txt") {
                        complete.insert(g);
                    }
                }
                _ => fs::remove_file(entry.path()).ctx(|| format!("remove {}", entry.path().display()))?,
            }
        }
        for s in &p.state.sstables {
            if !complete.contains(&s.gen) {
                jobs.push((dir.clone(), p.table, s));
            }
        }
        stats.sstables += p.state.sstables.len();
        stats.created += p.state.sstables.iter().filter(|s| s.created_night == night).count();
        stats.flushed += p.flushed;
        stats.compactions += p.compactions;
    }

    // Generate missing SSTables in parallel, biggest first.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.2.blocks.len()));
    let next = AtomicUsize::new(0);
    let result: Mutex<Result<u64>> = Mutex::new(Ok(0));
    let crc = Crc32::new();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((dir, table, sst)) = jobs.get(i) else {
                    break;
                };
                let r = write_sstable(dir, *table, sst, &crc);
                let mut acc = match result.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                match (r, &mut *acc) {
                    (Ok(n), Ok(total)) => *total += n,
                    (Err(e), acc @ Ok(_)) => *acc = Err(e),
                    _ => {}
                }
                if acc.is_err() {
                    next.store(usize::MAX / 2, Ordering::Relaxed);
                }
            });
        }
    });
    stats.generated_bytes = result.into_inner().unwrap_or_else(|p| p.into_inner())?;

    // Snapshot folders: a fresh tag each night, hard links to the live files.
    let tag = night_tag(night);
    for p in &plans {
        let src_dir = live.join(p.rel_dir());
        let snaps = root.join(p.rel_dir()).join("snapshots");
        remove_dir_all_if_exists(&snaps)?;
        let snap = snaps.join(&tag);
        create_dir_all(&snap)?;
        let mut data_files = Vec::new();
        for s in &p.state.sstables {
            for c in COMPONENTS {
                let name = component_name(s.gen, c);
                let from = src_dir.join(&name);
                let to = snap.join(&name);
                fs::hard_link(&from, &to).ctx(|| format!("hard link {} -> {}", to.display(), from.display()))?;
                stats.snapshot_bytes += fs::metadata(&to)?.len();
            }
            data_files.push(component_name(s.gen, "Data.db"));
        }
        let created = format_timestamp(night_epoch(night)).replace(' ', "T");
        let manifest = format!(
            "{{\n  \"files\" : [ {} ],\n  \"created_at\" : \"{created}Z\",\n  \"expires_at\" : null,\n  \"ephemeral\" : false\n}}\n",
            data_files.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ")
        );
        write_atomic(&snap.join("manifest.json"), manifest.as_bytes())?;
        let d = p.def();
        let schema = format!(
            "CREATE TABLE IF NOT EXISTS {}.{} (\n    {}\n) WITH ID = {}\n    AND compaction = {{'class': 'org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy', 'max_threshold': '32', 'min_threshold': '4'}}\n    AND compression = {{'chunk_length_in_kb': '64', 'class': 'org.apache.cassandra.io.compress.LZ4Compressor'}};\n",
            d.keyspace,
            d.name,
            d.schema,
            dashed_uuid(&p.uuid)
        );
        write_atomic(&snap.join("schema.cql"), schema.as_bytes())?;
    }
    if stats.sstables == 0 {
        return Err(Error::msg("no SSTables planned"));
    }
    Ok(stats)
}

fn dashed_uuid(hex: &str) -> String {
    if hex.len() != 32 {
        return hex.to_string();
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `bytes` of Data.db-like content (LZ4-compressed rows, as Cassandra writes
/// them), for micro-benchmarks that need realistic compressibility.
pub fn sample_data_db(seed: u64, bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + CHUNK);
    let mut idx = 0u32;
    while out.len() < bytes {
        let raw = gen_chunk((seed % 3) as usize, BlockRef { seg: seed, idx });
        out.extend_from_slice(&compress_chunk(&raw.data));
        idx += 1;
    }
    out.truncate(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_deterministic_and_evolves() {
        let a = plan(42, 50 << 20, 3);
        let b = plan(42, 50 << 20, 3);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            let gx: Vec<_> = x.state.sstables.iter().map(|s| (s.gen, s.blocks.clone())).collect();
            let gy: Vec<_> = y.state.sstables.iter().map(|s| (s.gen, s.blocks.clone())).collect();
            assert_eq!(gx, gy);
        }
        // Most SSTables of night 1 survive to night 2.
        let n1 = plan(42, 50 << 20, 1);
        let n2 = plan(42, 50 << 20, 2);
        let (mut kept, mut total) = (0, 0);
        for (x, y) in n1.iter().zip(&n2) {
            total += x.state.sstables.len();
            kept += x
                .state
                .sstables
                .iter()
                .filter(|s| y.state.sstables.iter().any(|t| t.gen == s.gen))
                .count();
        }
        assert!(kept * 10 >= total * 6, "kept {kept} of {total}");
        assert!(n2.iter().any(|p| p.compactions > 0));
    }

    #[test]
    fn chunks_are_deterministic_and_lz4_like() {
        let b = BlockRef { seg: 7, idx: 3 };
        let x = gen_chunk(0, b);
        let y = gen_chunk(0, b);
        assert_eq!(x.data, y.data);
        assert_eq!(x.data.len(), CHUNK);
        let c = compress_chunk(&x.data);
        assert!(c.len() < CHUNK, "compresses somewhat");
        let back = lz4_flex::block::decompress(&c[4..], CHUNK);
        assert_eq!(back.ok().as_deref(), Some(&x.data[..]));
    }

    #[test]
    fn snapshots_hard_link_unchanged_sstables_across_nights() -> Result<()> {
        use std::collections::BTreeMap;
        use std::os::unix::fs::MetadataExt;

        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        let root = out.join("src");
        let bytes = 2 << 20;
        // Data.db path (relative to the table dir) -> (inode, content hash).
        let scan = |night: u32| -> Result<BTreeMap<String, (u64, u64)>> {
            let mut m = BTreeMap::new();
            for p in plan(1, bytes, night) {
                let snap = root.join(p.rel_dir()).join("snapshots");
                let tags: Vec<_> = fs::read_dir(&snap)?.collect::<std::io::Result<_>>()?;
                assert_eq!(tags.len(), 1, "only the newest tag is kept");
                assert_eq!(tags[0].file_name().to_string_lossy(), night_tag(night));
                for e in fs::read_dir(tags[0].path())? {
                    let e = e?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.ends_with("-Data.db") {
                        let key = format!("{}/{name}", p.rel_dir().display());
                        let hash = hash_bytes(&fs::read(e.path())?);
                        m.insert(key, (e.metadata()?.ino(), hash));
                    }
                }
            }
            Ok(m)
        };
        let s1 = materialise(&out, &root, 1, bytes, 1, 2)?;
        let n1 = scan(1)?;
        let s2 = materialise(&out, &root, 1, bytes, 2, 2)?;
        let n2 = scan(2)?;
        assert_eq!(n1.len(), s1.sstables);
        assert_eq!(n2.len(), s2.sstables);
        let kept: Vec<_> = n1.keys().filter(|k| n2.contains_key(*k)).collect();
        assert!(!kept.is_empty() && s2.created > 0);
        for k in &kept {
            assert_eq!(n1[*k], n2[*k], "{k}: same inode and content");
        }
        // Back to night 1: the same content again (regenerated where needed).
        materialise(&out, &root, 1, bytes, 1, 2)?;
        let again = scan(1)?;
        let hashes = |m: &BTreeMap<String, (u64, u64)>| -> Vec<(String, u64)> {
            m.iter().map(|(k, v)| (k.clone(), v.1)).collect()
        };
        assert_eq!(hashes(&again), hashes(&n1));
        Ok(())
    }

    #[test]
    fn gen_names() {
        assert_eq!(component_name(12, "Data.db"), "nb-12-big-Data.db");
        assert_eq!(parse_gen("nb-12-big-Data.db"), Some(12));
        assert_eq!(parse_gen("nb-12-big-Data.db.tmp"), Some(12));
        assert_eq!(parse_gen("manifest.json"), None);
    }
}
