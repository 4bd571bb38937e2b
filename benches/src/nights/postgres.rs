//! PostgreSQL model: a real cluster (initdb into a temporary directory, run
//! as the `postgres` user when we are root, listening on 127.0.0.1 on a free
//! port) holds a small shop database `crdb`. Night 1 loads it; every later
//! night about 2 % of the rows change (updates, new orders and events, a few
//! expired events deleted), followed by a VACUUM as a nightly job would, and
//! `pg_dump` writes that night's plain-SQL dump.

use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::rng::Rng;
use super::text;
use super::util::{
    check_status, create_dir_all, format_timestamp, free_port, remove_dir_all_if_exists, run, tmp_path, which, Context,
    Error, Result,
};

/// Average dump bytes per "unit" (1 customer, 0.2 products, 4 orders with
/// their lines, 3 events), measured on this generator.
pub const EST_DUMP_BYTES_PER_UNIT: f64 = 1_550.0;

const TAG_ROW: u64 = 0x5C_0001;
const TAG_SHAPE: u64 = 0x5C_0002;
const TAG_NIGHT: u64 = 0x5C_0003;

const SCHEMA: &str = "
CREATE TABLE customers (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    first_name text NOT NULL,
    last_name text NOT NULL,
    city text,
    country character(2),
    created_at timestamp with time zone NOT NULL,
    loyalty_points integer NOT NULL DEFAULT 0,
    notes text
);
CREATE TABLE products (
    id bigint PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    title text NOT NULL,
    price numeric(10,2) NOT NULL,
    stock integer NOT NULL,
    attrs jsonb
);
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    status text NOT NULL,
    total numeric(12,2) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    shipping_address text
);
CREATE TABLE order_lines (
    order_id bigint NOT NULL,
    line integer NOT NULL,
    product_id bigint NOT NULL,
    qty integer NOT NULL,
    price numeric(10,2) NOT NULL,
    PRIMARY KEY (order_id, line)
);
CREATE TABLE events (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    kind text NOT NULL,
    at timestamp with time zone NOT NULL,
    payload jsonb
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX events_customer_at_idx ON events (customer_id, at);
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Customers,
    Products,
    Orders,
    Events,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Customers => "customers",
            Table::Products => "products",
            Table::Orders => "orders",
            Table::Events => "events",
        }
    }

    fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Customers => &[
                "id",
                "email",
                "first_name",
                "last_name",
                "city",
                "country",
                "created_at",
                "loyalty_points",
                "notes",
            ],
            Table::Products => &["id", "sku", "title", "price", "stock", "attrs"],
            Table::Orders => &[
                "id",
                "customer_id",
                "status",
                "total",
                "created_at",
                "updated_at",
                "shipping_address",
            ],
            Table::Events => &["id", "customer_id", "kind", "at", "payload"],
        }
    }
}

/// Sizes of the database on some night.
#[derive(Clone, Debug)]
struct State {
    customers: u64,
    products: u64,
    orders: u64,
    events_lo: u64,
    events_hi: u64,
}

fn ts(secs: i64) -> String {
    format!("{}+00", format_timestamp(secs))
}

/// COPY text format: escape the few characters that need it.
fn field(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn row(out: &mut String, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        field(out, f);
    }
    out.push('\n');
}

const BASE: i64 = 1_700_000_000;

fn gen_row(seed: u64, t: Table, id: u64, version: u32, st: &State, out: &mut String) {
    let mut shape = Rng::derive(&[seed, TAG_SHAPE, t as u64, id]);
    let mut v = Rng::derive(&[seed, TAG_ROW, t as u64, id, u64::from(version)]);
    let night_secs = super::util::night_epoch(version);
    match t {
        Table::Customers => {
            let first = shape.pick(text::FIRST_NAMES);
            let last = shape.pick(text::LAST_NAMES);
            let mut notes = String::new();
            text::push_words(&mut v, &mut notes, 0, 16);
            row(
                out,
                &[
                    id.to_string(),
                    text::email(&mut shape, first, last),
                    first.to_string(),
                    last.to_string(),
                    v.pick(text::CITIES).to_string(),
                    shape.pick(text::COUNTRIES).to_string(),
                    ts(BASE + shape.below(90_000_000) as i64),
                    v.below(50_000).to_string(),
                    notes,
                ],
            );
        }
        Table::Products => {
            let mut sku = String::from("SKU-");
            text::push_hex(&mut shape, &mut sku, 8);
            let mut title = String::new();
            text::push_words(&mut shape, &mut title, 2, 7);
            let attrs = format!(
                "{{\"colour\": \"{}\", \"size\": \"{}\", \"weight_g\": {}, \"warehouse\": \"{}\"}}",
                shape.pick(&["blue", "red", "green", "black", "white"]),
                shape.pick(&["S", "M", "L", "XL"]),
                50 + shape.below(5000),
                v.pick(&["north", "south", "east", "west"]),
            );
            row(
                out,
                &[
                    id.to_string(),
                    sku,
                    title,
                    text::money(text::cents(&mut v)),
                    v.below(1000).to_string(),
                    attrs,
                ],
            );
        }
        Table::Orders => {
            let created = BASE + (id as i64) * 97 % 93_000_000;
            let mut addr = format!("{} Main Street, ", 1 + shape.below(300));
            addr.push_str(shape.pick(text::CITIES));
            let status = if version <= 1 {
                shape.pick(text::STATUSES)
            } else {
                v.pick(text::STATUSES)
            };
            row(
                out,
                &[
                    id.to_string(),
                    (1 + shape.below(st.customers.max(1))).to_string(),
                    status.to_string(),
                    text::money(text::cents(&mut shape) * (1 + shape.below(4))),
                    ts(created),
                    ts(if version <= 1 {
                        created + 3600
                    } else {
                        night_secs - v.below(80_000) as i64
                    }),
                    addr,
                ],
            );
        }
        Table::Events => {
            let mut session = String::new();
            text::push_hex(&mut shape, &mut session, 32);
            let mut q = String::new();
            text::push_words(&mut shape, &mut q, 1, 4);
            let payload = format!(
                "{{\"ip\": \"{}\", \"ua\": \"{}\", \"path\": \"/p/{}\", \"query\": \"{}\", \"session\": \"{}\", \"latency_ms\": {}}}",
                text::ipv4(&mut shape),
                shape.pick(text::USER_AGENTS),
                shape.below(st.products.max(1)),
                q,
                session,
                shape.below(2000)
            );
            row(
                out,
                &[
                    id.to_string(),
                    (1 + shape.below(st.customers.max(1))).to_string(),
                    shape.pick(text::EVENT_TYPES).to_string(),
                    ts(BASE + 90_000_000 + (id as i64) * 13 % 3_000_000),
                    payload,
                ],
            );
        }
    }
}

/// Order lines of one order (fixed once the order exists).
fn gen_lines(seed: u64, order: u64, st: &State, out: &mut String) {
    let mut shape = Rng::derive(&[seed, TAG_SHAPE, 99, order]);
    for line in 1..=shape.range(1, 4) {
        row(
            out,
            &[
                order.to_string(),
                line.to_string(),
                (1 + shape.below(st.products.max(1))).to_string(),
                shape.range(1, 5).to_string(),
                text::money(text::cents(&mut shape)),
            ],
        );
    }
}

fn copy_in(
    w: &mut impl Write,
    table: &str,
    columns: &[&str],
    rows: impl Iterator<Item = String>,
) -> std::io::Result<()> {
    writeln!(w, "COPY {table} ({}) FROM stdin;", columns.join(", "))?;
    for r in rows {
        w.write_all(r.as_bytes())?;
    }
    w.write_all(b"\\.\n")
}

fn rows_of<'a>(
    seed: u64,
    t: Table,
    ids: impl Iterator<Item = u64> + 'a,
    version: u32,
    st: &'a State,
) -> impl Iterator<Item = String> + 'a {
    let mut buf = String::new();
    ids.map(move |id| {
        buf.clear();
        gen_row(seed, t, id, version, st, &mut buf);
        buf.clone()
    })
}

/// Rewrites the given rows of `t` to their content at `version`.
fn update(w: &mut impl Write, seed: u64, t: Table, ids: &[u64], version: u32, st: &State) -> std::io::Result<()> {
    let name = t.name();
    let cols = t.columns();
    writeln!(w, "CREATE TEMP TABLE upd_{name} (LIKE {name});")?;
    copy_in(
        w,
        &format!("upd_{name}"),
        cols,
        rows_of(seed, t, ids.iter().copied(), version, st),
    )?;
    let sets: Vec<String> = cols[1..].iter().map(|c| format!("{c} = u.{c}")).collect();
    writeln!(
        w,
        "UPDATE {name} SET {} FROM upd_{name} u WHERE {name}.id = u.id;",
        sets.join(", ")
    )?;
    writeln!(w, "DROP TABLE upd_{name};")
}

struct Cluster {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
}

fn find_bindir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("CAIRN_PG_BINDIR") {
        return Ok(PathBuf::from(d));
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(rd) = fs::read_dir("/usr/lib/postgresql") {
        for e in rd.flatten() {
            let bin = e.path().join("bin");
            let ver = e.file_name().to_string_lossy().parse::<u32>().unwrap_or(0);
            if bin.join("initdb").is_file() && best.as_ref().is_none_or(|b| ver > b.0) {
                best = Some((ver, bin));
            }
        }
    }
    if let Some((_, b)) = best {
        return Ok(b);
    }
    which("initdb")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .ok_or_else(|| {
            Error::msg(
                "PostgreSQL server binaries (initdb) not found (apt-get install postgresql, or set CAIRN_PG_BINDIR)",
            )
        })
}

impl Cluster {
    fn cmd(&self, program: &str) -> Command {
        let bin = self.bindir.join(program);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        c.env("PGTZ", "UTC").stdin(Stdio::null());
        c
    }

    fn start() -> Result<Cluster> {
        let bindir = find_bindir()?;
        let as_postgres = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let dir = std::env::temp_dir().join(format!("cairn-gen-pg-{}", std::process::id()));
        remove_dir_all_if_exists(&dir)?;
        create_dir_all(&dir)?;
        if as_postgres {
            run(Command::new("chown").args(["postgres:postgres"]).arg(&dir))?;
        }
        let mut cluster = Cluster {
            bindir,
            dir,
            port: free_port()?,
            as_postgres,
            running: false,
        };
        let data = cluster.dir.join("data");
        run(cluster.cmd("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]))?;
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c autovacuum=off -c timezone=UTC -c max_wal_size=2GB",
            cluster.port,
            cluster.dir.display()
        );
        run(cluster
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"]))?;
        cluster.running = true;
        Ok(cluster)
    }

    fn client(&self, program: &str) -> Command {
        let mut c = Command::new(self.bindir.join(program));
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
            .env("PGTZ", "UTC")
            .env("PGCONNECT_TIMEOUT", "20");
        c
    }

    /// Streams a script into psql (ON_ERROR_STOP) against `db`.
    fn psql(
        &self,
        db: &str,
        write: impl FnOnce(&mut BufWriter<std::process::ChildStdin>) -> std::io::Result<()>,
    ) -> Result<()> {
        let log = self.dir.join("psql.log");
        let errf = fs::File::create(&log).ctx(|| format!("create {}", log.display()))?;
        let mut cmd = self.client("psql");
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(errf);
        let mut child = cmd.spawn().ctx(|| "start psql".into())?;
        let stdin = child.stdin.take().ok_or_else(|| Error::msg("psql stdin"))?;
        let mut w = BufWriter::with_capacity(1 << 20, stdin);
        let wres = write(&mut w).and_then(|()| w.flush());
        drop(w);
        let status = child.wait()?;
        let stderr = fs::read(&log).unwrap_or_default();
        check_status(&cmd, status, &stderr)?;
        wres.ctx(|| "write to psql".into())
    }

    fn dump(&self, db: &str, dst: &Path) -> Result<()> {
        let tmp = tmp_path(dst);
        run(self.client("pg_dump").args(["-d", db, "-f"]).arg(&tmp))?;
        fs::rename(&tmp, dst).ctx(|| format!("rename to {}", dst.display()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .cmd("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Writes `<stage>/sql/night-<n>.sql` for n in 1..=nights.
pub fn prepare(stage: &Path, seed: u64, target_bytes: u64, nights: u32) -> Result<()> {
    let out = stage.join("sql");
    create_dir_all(&out)?;
    let cluster = Cluster::start()?;
    run(cluster.client("createdb").arg("crdb"))?;

    let units = ((target_bytes as f64 / EST_DUMP_BYTES_PER_UNIT).round() as u64).max(50);
    let mut st = State {
        customers: units,
        products: (units / 5).max(10),
        orders: units * 4,
        events_lo: 1,
        events_hi: units * 3 + 1,
    };
    for night in 1..=nights {
        let started = Instant::now();
        let mut changed = 0_u64;
        if night == 1 {
            let s = st.clone();
            cluster.psql("crdb", |w| {
                w.write_all(SCHEMA.as_bytes())?;
                for t in [Table::Customers, Table::Products, Table::Orders, Table::Events] {
                    let ids: Box<dyn Iterator<Item = u64>> = match t {
                        Table::Customers => Box::new(1..=s.customers),
                        Table::Products => Box::new(1..=s.products),
                        Table::Orders => Box::new(1..=s.orders),
                        Table::Events => Box::new(s.events_lo..s.events_hi),
                    };
                    copy_in(w, t.name(), t.columns(), rows_of(seed, t, ids, 1, &s))?;
                }
                let mut buf = String::new();
                copy_in(
                    w,
                    "order_lines",
                    &["order_id", "line", "product_id", "qty", "price"],
                    (1..=s.orders).map(|o| {
                        buf.clear();
                        gen_lines(seed, o, &s, &mut buf);
                        buf.clone()
                    }),
                )?;
                w.write_all(b"VACUUM ANALYZE;\n")
            })?;
        } else {
            let mut rng = Rng::derive(&[seed, TAG_NIGHT, u64::from(night)]);
            let pick = |rng: &mut Rng, ids: std::ops::Range<u64>, p: f64| -> Vec<u64> {
                ids.filter(|_| rng.chance(p)).collect()
            };
            let cust = pick(&mut rng, 1..st.customers + 1, 0.015);
            let prod = pick(&mut rng, 1..st.products + 1, 0.03);
            let ord = pick(&mut rng, 1..st.orders + 1, 0.02);
            let new_orders = (st.orders / 200).max(1);
            let new_events = (st.events_hi - st.events_lo) / 100;
            let expired = (st.events_hi - st.events_lo) / 300;
            let before = st.clone();
            let s = State {
                orders: st.orders + new_orders,
                events_lo: st.events_lo + expired,
                events_hi: st.events_hi + new_events,
                ..st.clone()
            };
            changed = (cust.len() + prod.len() + ord.len()) as u64 + new_orders + new_events + expired;
            cluster.psql("crdb", |w| {
                w.write_all(b"BEGIN;\n")?;
                update(w, seed, Table::Customers, &cust, night, &s)?;
                update(w, seed, Table::Products, &prod, night, &s)?;
                update(w, seed, Table::Orders, &ord, night, &s)?;
                copy_in(
                    w,
                    "orders",
                    Table::Orders.columns(),
                    rows_of(seed, Table::Orders, before.orders + 1..=s.orders, 1, &s),
                )?;
                let mut buf = String::new();
                copy_in(
                    w,
                    "order_lines",
                    &["order_id", "line", "product_id", "qty", "price"],
                    (before.orders + 1..=s.orders).map(|o| {
                        buf.clear();
                        gen_lines(seed, o, &s, &mut buf);
                        buf.clone()
                    }),
                )?;
                copy_in(
                    w,
                    "events",
                    Table::Events.columns(),
                    rows_of(seed, Table::Events, before.events_hi..s.events_hi, 1, &s),
                )?;
                writeln!(w, "DELETE FROM events WHERE id < {};", s.events_lo)?;
                w.write_all(b"COMMIT;\nVACUUM ANALYZE;\n")
            })?;
            st = s;
        }
        let dst = out.join(format!("night-{night}.sql"));
        cluster.dump("crdb", &dst)?;
        let size = fs::metadata(&dst)?.len();
        eprintln!(
            "gen-nights: postgres night {night}: {} customers, {} orders, {} events, {changed} rows changed, dump {:.1} MB in {:.1}s",
            st.customers,
            st.orders,
            st.events_hi - st.events_lo,
            size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    drop(cluster);
    Ok(())
}
