//! Redis the way its documentation says to lock one instance: `SET key token NX PX ttl`,
//! released by a Lua script that deletes the key only if it still holds our token. No
//! fencing token, and nothing is on disk (`--save "" --appendonly no` in `scripts/bench`).
//! CAS is WATCH, GET, then MULTI/SET/EXEC, which fails (nil) if the key changed. A log is a
//! stream: `XADD key * author A body B`, acknowledged from memory. A work queue is the
//! reliable-queue pattern of Redis's documentation: `LPUSH queue item`; a worker takes one
//! with `LMOVE queue processing RIGHT LEFT` (the item stays in `processing` until acked, so
//! a crash does not lose it — but nothing gives it back by itself, and nothing fences a
//! late ack) and acks with `LREM processing 1 item`.

use anyhow::{Context, Result, bail};
use redis::aio::MultiplexedConnection;
use redis::{Script, Value};

use super::{MAX_CAS_TRIES, QueueCounts, parse_counter};
use crate::spec::Targets;

const RELEASE: &str =
    r#"if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end"#;

/// GCRA (the generic cell rate algorithm, as redis-cell and most Redis rate limiters do it)
/// in one script: the bucket is its theoretical arrival time (TAT) in microseconds, from the
/// server's clock. ARGV: emission interval (µs per token), burst, cost. Returns 1 when
/// granted, else the microseconds to wait.
const GCRA: &str = r#"
local now = redis.call('TIME')
local t = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or t
if tat < t then tat = t end
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance
if allow_at > t then return -(allow_at - t) end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - t) / 1000) + 1)
return 1
"#;

pub struct RedisClient {
    /// A connection of its own (WATCH is per connection).
    con: MultiplexedConnection,
    release: Script,
    /// Sent with EVALSHA (loaded once, on the first NOSCRIPT).
    gcra: Script,
    id: u32,
    seq: u64,
    ttl_ms: u64,
}

async fn connect(url: &str) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(url).with_context(|| format!("Redis URL {url}"))?;
    client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("cannot connect to Redis at {url}"))
}

impl RedisClient {
    pub async fn connect(targets: &Targets, id: u32, ttl_ms: u64) -> Result<RedisClient> {
        Ok(RedisClient {
            con: connect(&targets.redis).await?,
            release: Script::new(RELEASE),
            gcra: Script::new(GCRA),
            id,
            seq: 0,
            ttl_ms,
        })
    }

    pub async fn lease_once(&mut self, name: &str) -> Result<bool> {
        self.seq += 1;
        let token = format!("{}:{}", self.id, self.seq);
        let set: Option<String> = redis::cmd("SET")
            .arg(name)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms)
            .query_async(&mut self.con)
            .await?;
        if set.is_none() {
            return Ok(false);
        }
        let deleted: i64 = self.release.key(name).arg(&token).invoke_async(&mut self.con).await?;
        if deleted != 1 {
            bail!("lost the Redis lock {name} before releasing it");
        }
        Ok(true)
    }

    /// One GCRA decision for 1 token of `bucket`: a µs per token, a burst of 10^12 (never
    /// refused, like the other systems' buckets in this workload).
    pub async fn limit_take(&mut self, bucket: &str) -> Result<bool> {
        let answer: i64 = self
            .gcra
            .key(bucket)
            .arg(1)
            .arg(1_000_000_000_000u64)
            .arg(1)
            .invoke_async(&mut self.con)
            .await?;
        Ok(answer == 1)
    }

    pub async fn init_counter(&mut self, key: &str) -> Result<()> {
        let _: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(0)
            .arg("NX")
            .query_async(&mut self.con)
            .await?;
        Ok(())
    }

    pub async fn cas_increment(&mut self, key: &str) -> Result<u64> {
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > MAX_CAS_TRIES {
                bail!("no increment landed in {MAX_CAS_TRIES} tries");
            }
            let _: () = redis::cmd("WATCH").arg(key).query_async(&mut self.con).await?;
            let value: Option<String> = redis::cmd("GET").arg(key).query_async(&mut self.con).await?;
            let value = match value {
                Some(text) => parse_counter(&text)?,
                None => 0,
            };
            let result: Value = redis::pipe()
                .atomic()
                .set(key, value + 1)
                .query_async(&mut self.con)
                .await?;
            if !matches!(result, Value::Nil) {
                return Ok(tries);
            }
        }
    }

    pub async fn read_counter(&mut self, key: &str) -> Result<i64> {
        let value: Option<String> = redis::cmd("GET").arg(key).query_async(&mut self.con).await?;
        value.map_or(Ok(0), |text| parse_counter(&text))
    }

    pub async fn append(&mut self, stream: &str, body: &str) -> Result<()> {
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("author")
            .arg(format!("bench-{}", self.id))
            .arg("body")
            .arg(body)
            .query_async(&mut self.con)
            .await?;
        Ok(())
    }

    pub async fn count_records(&mut self, stream: &str) -> Result<u64> {
        Ok(redis::cmd("XLEN").arg(stream).query_async(&mut self.con).await?)
    }
}

/// The list a queue's taken, not yet acknowledged items wait in.
fn processing_list(queue: &str) -> String {
    format!("{queue}:processing")
}

impl RedisClient {
    pub async fn queue_push(&mut self, queue: &str, body: &str) -> Result<()> {
        let _: i64 = redis::cmd("LPUSH")
            .arg(queue)
            .arg(body)
            .query_async(&mut self.con)
            .await?;
        Ok(())
    }

    /// `LMOVE queue processing RIGHT LEFT` (the oldest item), then `LREM processing 1 item`.
    pub async fn queue_take(&mut self, queue: &str) -> Result<bool> {
        let processing = processing_list(queue);
        let item: Option<String> = redis::cmd("LMOVE")
            .arg(queue)
            .arg(&processing)
            .arg("RIGHT")
            .arg("LEFT")
            .query_async(&mut self.con)
            .await?;
        let Some(item) = item else {
            return Ok(false);
        };
        let removed: i64 = redis::cmd("LREM")
            .arg(&processing)
            .arg(1)
            .arg(&item)
            .query_async(&mut self.con)
            .await?;
        if removed != 1 {
            bail!("the item taken was not in {processing} at its ack");
        }
        Ok(true)
    }

    pub async fn queue_counts(&mut self, queue: &str) -> Result<QueueCounts> {
        let ready: u64 = redis::cmd("LLEN").arg(queue).query_async(&mut self.con).await?;
        let claimed: u64 = redis::cmd("LLEN")
            .arg(processing_list(queue))
            .query_async(&mut self.con)
            .await?;
        Ok(QueueCounts {
            ready,
            claimed,
            done: None,
        })
    }
}

/// The Redis server's version.
pub async fn redis_version(url: &str) -> Result<String> {
    let mut con = connect(url).await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut con).await?;
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let mut settings = Vec::new();
    for name in ["appendonly", "appendfsync", "save"] {
        let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query_async(&mut con).await?;
        settings.push(format!("{name}={:?}", pair.get(1).map_or("", String::as_str)));
    }
    Ok(format!("{version} ({})", settings.join(", ")))
}

/// Deletes every key of this run (locks expire by themselves too).
pub async fn redis_cleanup(url: &str, prefix: &str) -> Result<()> {
    let mut con = connect(url).await?;
    let mut cursor: u64 = 0;
    // Bounded: SCAN ends when the cursor comes back to 0; at most 1000 rounds.
    for _ in 0..1000 {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut con).await?;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(())
}
