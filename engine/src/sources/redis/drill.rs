//! What a restore drill asks of a Redis server started on a restored dump:
//! its keys per database, once it has finished loading.

use std::time::{Duration, Instant};

use super::resp::{Conn, Reply};
use super::{parse_info, RedisError};
use crate::snapshot::RedisKeyspace;

/// Keys per database (`INFO keyspace`) of the plain-TCP server at
/// `host:port`, asking again while it refuses connections or is still
/// loading its dump, for at most `wait`.
pub fn loaded_keyspace(host: &str, port: u16, wait: Duration) -> Result<Vec<RedisKeyspace>, RedisError> {
    let started = Instant::now();
    loop {
        let last = match Conn::connect(host, port, None).and_then(|mut c| c.command(&[b"INFO", b"keyspace"])) {
            Ok(Reply::Bulk(Some(b))) => return Ok(parse_info(&String::from_utf8_lossy(&b)).2),
            Ok(Reply::Error(message)) if message.starts_with("LOADING") => RedisError::Server {
                what: "INFO keyspace".into(),
                message,
            },
            Ok(other) => {
                return Err(RedisError::Protocol {
                    what: "INFO keyspace".into(),
                    reply: format!("{other:?}"),
                })
            }
            Err(e) => e,
        };
        if started.elapsed() > wait {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
