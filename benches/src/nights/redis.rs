//! Redis model: a real `redis-server` (started on 127.0.0.1 on a free port,
//! in its own directory) is filled with seeded keys (JSON-ish strings,
//! hashes, sorted sets); each later night a few percent of the keys change,
//! a few are deleted and as many added. The server runs for all nights at
//! once, as a long-lived production server would, so the dump's key order
//! stays stable and `SAVE` gives each night's `dump.rdb`.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::rng::{mix, Rng};
use super::text;
use super::util::{
    copy_atomic, create_dir_all, free_port, remove_dir_all_if_exists, which, ChildGuard, Context, Error, Result,
};

/// Average bytes one key adds to dump.rdb (measured on this generator).
pub const EST_RDB_BYTES_PER_KEY: f64 = 436.0;
/// Share of keys rewritten each night, and of keys deleted (and added).
const CHANGE: f64 = 0.03;
const CHURN: f64 = 0.003;

const TAG_KIND: u64 = 0x4D_0001;
const TAG_VALUE: u64 = 0x4D_0002;
const TAG_SHAPE: u64 = 0x4D_0003;
const TAG_NIGHT: u64 = 0x4D_0004;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Session,
    Cache,
    User,
    Leaderboard,
}

fn kind(seed: u64, id: u64) -> Kind {
    match mix(&[seed, TAG_KIND, id]) % 20 {
        0..=8 => Kind::Session,
        9..=13 => Kind::Cache,
        14..=18 => Kind::User,
        _ => Kind::Leaderboard,
    }
}

/// The command that sets key `id` to its value at `version`.
fn command(seed: u64, id: u64, version: u32) -> Vec<Vec<u8>> {
    let mut shape = Rng::derive(&[seed, TAG_SHAPE, id]);
    let mut v = Rng::derive(&[seed, TAG_VALUE, id, u64::from(version)]);
    let k = kind(seed, id);
    let mut key = String::new();
    match k {
        Kind::Session => {
            key.push_str("session:");
            text::push_hex(&mut shape, &mut key, 24);
            let first = shape.pick(text::FIRST_NAMES);
            let last = shape.pick(text::LAST_NAMES);
            let mut s = format!(
                "{{\"uid\":{},\"email\":\"{}\",\"ip\":\"{}\",\"ua\":\"{}\",\"seen\":{},\"csrf\":\"",
                shape.below(5_000_000),
                text::email(&mut shape, first, last),
                text::ipv4(&mut v),
                v.pick(text::USER_AGENTS),
                1_793_000_000 + v.below(2_000_000),
            );
            text::push_b64(&mut v, &mut s, 43);
            s.push_str("\",\"cart\":[");
            for i in 0..v.below(6) {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&format!(
                    "{{\"sku\":\"SKU-{:06x}\",\"qty\":{},\"price\":{}}}",
                    v.below(1 << 20),
                    1 + v.below(4),
                    text::money(text::cents(&mut v))
                ));
            }
            s.push_str("],\"flags\":[\"beta\",\"newsletter\"]}");
            vec![b"SET".to_vec(), key.into_bytes(), s.into_bytes()]
        }
        Kind::Cache => {
            key.push_str(&format!("cache:product:{}", id));
            let mut s = format!("{{\"id\":{id},\"title\":\"");
            text::push_words(&mut shape, &mut s, 2, 6);
            s.push_str("\",\"price\":");
            s.push_str(&text::money(text::cents(&mut v)));
            s.push_str(&format!(",\"stock\":{},\"rendered\":\"", v.below(500)));
            // Pre-rendered fragment with an opaque, compressed-looking thumbnail.
            s.push_str("<div class=\\\"product\\\"><img src=\\\"data:image/webp;base64,");
            let n = 120 + shape.below(500) as usize;
            text::push_b64(&mut v, &mut s, n);
            s.push_str("\\\"/><p>");
            text::push_words(&mut v, &mut s, 5, 30);
            s.push_str("</p></div>\"}");
            vec![b"SET".to_vec(), key.into_bytes(), s.into_bytes()]
        }
        Kind::User => {
            key.push_str(&format!("user:{}", 100_000 + id));
            let first = shape.pick(text::FIRST_NAMES);
            let last = shape.pick(text::LAST_NAMES);
            let mut args: Vec<Vec<u8>> = vec![b"HSET".to_vec(), key.into_bytes()];
            let mut field = |name: &str, value: String| {
                args.push(name.as_bytes().to_vec());
                args.push(value.into_bytes());
            };
            field("first", first.to_string());
            field("last", last.to_string());
            field("email", text::email(&mut shape, first, last));
            field("city", shape.pick(text::CITIES).to_string());
            field("country", shape.pick(text::COUNTRIES).to_string());
            field("points", v.below(100_000).to_string());
            field("last_login", (1_793_000_000 + v.below(2_000_000)).to_string());
            field("last_ip", text::ipv4(&mut v));
            let mut token = String::new();
            text::push_b64(&mut v, &mut token, 64);
            field("refresh_token", token);
            let mut prefs = String::new();
            text::push_words(&mut shape, &mut prefs, 3, 12);
            field("prefs", prefs);
            args
        }
        Kind::Leaderboard => {
            key.push_str(&format!("leaderboard:{}", id));
            let mut args: Vec<Vec<u8>> = vec![b"ZADD".to_vec(), key.into_bytes()];
            for m in 0..(8 + shape.below(40)) {
                args.push(v.below(1_000_000).to_string().into_bytes());
                args.push(format!("player:{}", mix(&[seed, id, m]) % 10_000_000).into_bytes());
            }
            args
        }
    }
}

fn key_of(cmd: &[Vec<u8>]) -> Vec<u8> {
    cmd.get(1).cloned().unwrap_or_default()
}

fn write_resp(w: &mut impl Write, args: &[Vec<u8>]) -> std::io::Result<()> {
    write!(w, "*{}\r\n", args.len())?;
    for a in args {
        write!(w, "${}\r\n", a.len())?;
        w.write_all(a)?;
        w.write_all(b"\r\n")?;
    }
    Ok(())
}

struct Server {
    _child: ChildGuard,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Result<Server> {
        let bin = which("redis-server")
            .ok_or_else(|| Error::msg("redis-server not found on PATH (apt-get install redis-server)"))?;
        remove_dir_all_if_exists(dir)?;
        create_dir_all(dir)?;
        let port = free_port()?;
        let child = Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("--dir")
            .arg(dir)
            .args(["--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .ctx(|| "start redis-server".into())?;
        let server = Server {
            _child: ChildGuard(Some(child)),
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = server.connect() {
                if c.pipeline(std::iter::empty()).is_ok() {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err(Error::msg(format!(
                    "redis-server did not come up on port {port} (see {})",
                    dir.join("redis.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn connect(&self) -> Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", self.port)).ctx(|| "connect to redis".into())?;
        Ok(Client { stream: s })
    }
}

struct Client {
    stream: TcpStream,
}

impl Client {
    /// Sends all commands (pipelined, from a writer thread) followed by a
    /// PING, and reads replies up to the PONG. Returns the number of replies.
    fn pipeline(&mut self, cmds: impl Iterator<Item = Vec<Vec<u8>>> + Send) -> Result<u64> {
        let wstream = self.stream.try_clone()?;
        let mut reader = BufReader::new(self.stream.try_clone()?);
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> std::io::Result<()> {
                let mut w = BufWriter::with_capacity(1 << 20, wstream);
                for c in cmds {
                    write_resp(&mut w, &c)?;
                }
                write_resp(&mut w, &[b"PING".to_vec()])?;
                w.flush()
            });
            let mut line = Vec::new();
            let mut replies = 0_u64;
            let mut first_err: Option<String> = None;
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line)?;
                if n == 0 {
                    return Err(Error::msg("redis closed the connection"));
                }
                match line.first() {
                    Some(b'+') if line.starts_with(b"+PONG") => break,
                    Some(b'+') | Some(b':') => replies += 1,
                    Some(b'-') => {
                        replies += 1;
                        first_err.get_or_insert_with(|| String::from_utf8_lossy(&line).trim().to_string());
                    }
                    _ => {
                        return Err(Error::msg(format!(
                            "unexpected redis reply: {}",
                            String::from_utf8_lossy(&line).trim()
                        )))
                    }
                }
            }
            match writer.join() {
                Ok(r) => r.ctx(|| "write to redis".into())?,
                Err(_) => return Err(Error::msg("redis writer thread panicked")),
            }
            match first_err {
                Some(e) => Err(Error::msg(format!("redis error: {e}"))),
                None => Ok(replies),
            }
        })
    }

    fn simple(&mut self, args: &[&str]) -> Result<String> {
        let mut w = BufWriter::new(self.stream.try_clone()?);
        write_resp(&mut w, &args.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>())?;
        w.flush()?;
        let mut r = BufReader::new(self.stream.try_clone()?);
        let mut line = String::new();
        r.read_line(&mut line)?;
        if line.starts_with('-') || line.is_empty() {
            return Err(Error::msg(format!("redis {}: {}", args.join(" "), line.trim())));
        }
        Ok(line.trim().to_string())
    }
}

/// Writes `<stage>/redis/night-<n>.rdb` for n in 1..=nights.
pub fn prepare(stage: &Path, seed: u64, target_bytes: u64, nights: u32) -> Result<()> {
    let out = stage.join("redis");
    create_dir_all(&out)?;
    let work = stage.join("redis-server");
    let server = Server::start(&work)?;
    let mut client = server.connect()?;

    let initial = ((target_bytes as f64 / EST_RDB_BYTES_PER_KEY).round() as u64).max(100);
    let mut alive: Vec<u64> = (0..initial).collect();
    let mut next_id = initial;
    for night in 1..=nights {
        let started = Instant::now();
        let written = if night == 1 {
            client.pipeline(alive.iter().map(|&id| command(seed, id, 1)))?
        } else {
            let mut rng = Rng::derive(&[seed, TAG_NIGHT, u64::from(night)]);
            let mut updates = Vec::new();
            let mut deletes = Vec::new();
            alive.retain(|&id| {
                if rng.chance(CHURN) {
                    deletes.push(id);
                    false
                } else {
                    if rng.chance(CHANGE) {
                        updates.push(id);
                    }
                    true
                }
            });
            let adds: Vec<u64> = (next_id..next_id + deletes.len() as u64).collect();
            next_id += adds.len() as u64;
            alive.extend(&adds);
            let dels = deletes
                .iter()
                .map(|&id| vec![b"DEL".to_vec(), key_of(&command(seed, id, 1))]);
            let ups = updates.iter().map(|&id| command(seed, id, night));
            let news = adds.iter().map(|&id| command(seed, id, night));
            client.pipeline(dels.chain(ups).chain(news))?
        };
        client.simple(&["SAVE"])?;
        let dst = out.join(format!("night-{night}.rdb"));
        copy_atomic(&server.dir.join("dump.rdb"), &dst)?;
        let size = std::fs::metadata(&dst)?.len();
        eprintln!(
            "gen-nights: redis night {night}: {} keys, {written} commands, dump.rdb {:.1} MB in {:.1}s",
            alive.len(),
            size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    let _ = client.simple(&["SHUTDOWN", "NOSAVE"]);
    drop(server);
    remove_dir_all_if_exists(&work)?;
    Ok(())
}
