//! One client of each system under test, with the operations the workloads time: a
//! try-lock + release, a compare-and-swap increment, a durable append, a rate-limiter
//! decision, and a work item pushed, or claimed and finished.

mod arbiter;
#[cfg(feature = "etcd")]
mod etcd;
mod file;
mod governor;
mod http;
mod postgres;
mod redis;

use anyhow::{Result, bail};

use crate::spec::{System, TOKEN_ENV, Targets};

/// The namespace arbiter objects of the benchmark live in.
pub const NAMESPACE: &str = "bench";

/// A CAS increment that has not landed after this many tries is an error (it would mean a
/// livelock, or a bug in the benchmark).
pub const MAX_CAS_TRIES: u64 = 10_000;

/// One connection (or store handle) to one system.
pub enum Client {
    Arbiter(arbiter::ArbiterClient),
    Redis(redis::RedisClient),
    Postgres(postgres::PgClient),
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd::EtcdClient>),
    File(file::FileClient),
    Governor(governor::GovernorClient),
    Http(http::HttpClient),
}

impl Client {
    /// Connects client number `id` of a run.
    pub async fn connect(system: System, targets: &Targets, id: u32, ttl_ms: u64) -> Result<Client> {
        Ok(match system {
            System::ArbiterSqliteFull
            | System::ArbiterSqliteNormal
            | System::ArbiterPostgres
            | System::PermitsSqlite
            | System::PermitsPostgres => {
                Client::Arbiter(arbiter::ArbiterClient::connect(system, targets, id, ttl_ms).await?)
            }
            System::Redis => Client::Redis(redis::RedisClient::connect(targets, id, ttl_ms).await?),
            System::PgAdvisory | System::PgRowLock | System::PgTable => {
                Client::Postgres(postgres::PgClient::connect(system, targets, id, ttl_ms).await?)
            }
            System::Etcd | System::EtcdSession => connect_etcd(system, targets, id, ttl_ms).await?,
            System::File => Client::File(file::FileClient::open(targets, id)?),
            System::Governor => Client::Governor(governor::GovernorClient::new()),
            System::HttpSqlite | System::HttpPostgres => {
                // A worker has the token in its environment: the spec's `Targets` go without
                // it (see `TOKEN_ENV`). The parent (checking what a run left) has it in its own.
                let token = std::env::var(TOKEN_ENV)
                    .ok()
                    .or_else(|| targets.server(system).and_then(|(_, token)| token.map(str::to_string)));
                Client::Http(http::HttpClient::connect(system, targets, id, ttl_ms, token).await?)
            }
        })
    }

    /// Prepares the bucket the limiter workload takes from (arbiter defines it).
    pub async fn prepare_bucket(&mut self, bucket: &str) -> Result<()> {
        match self {
            Client::Arbiter(client) => client.prepare_bucket(bucket).await,
            Client::Http(client) => client.prepare_bucket(bucket).await,
            _ => Ok(()),
        }
    }

    /// One rate-limiter decision for 1 token of `bucket`. `Ok(true)`: granted.
    pub async fn limit_take(&mut self, bucket: &str) -> Result<bool> {
        match self {
            Client::Arbiter(client) => client.limit_take(bucket).await,
            Client::Redis(client) => client.limit_take(bucket).await,
            Client::Governor(client) => Ok(client.take()),
            Client::Http(client) => client.limit_take(bucket).await,
            _ => bail!("this system has no limiter workload"),
        }
    }

    /// Prepares the names a lease workload uses (tables with one row per name need them).
    pub async fn prepare_names(&mut self, names: &[String]) -> Result<()> {
        match self {
            Client::Postgres(client) => client.prepare_names(names).await,
            _ => Ok(()),
        }
    }

    /// One try-lock of `name`, released at once when granted. `Ok(true)`: it was granted.
    pub async fn lease_once(&mut self, name: &str) -> Result<bool> {
        match self {
            Client::Arbiter(client) => client.lease_once(name).await,
            Client::Redis(client) => client.lease_once(name).await,
            Client::Postgres(client) => client.lease_once(name).await,
            #[cfg(feature = "etcd")]
            Client::Etcd(client) => client.lease_once(name).await,
            Client::Http(client) => client.lease_once(name).await,
            Client::File(_) | Client::Governor(_) => bail!("this system has no lease workload"),
        }
    }

    /// Creates the counter `key` at 0 unless it exists.
    pub async fn init_counter(&mut self, key: &str) -> Result<()> {
        match self {
            Client::Arbiter(client) => client.init_counter(key).await,
            Client::Redis(client) => client.init_counter(key).await,
            Client::Postgres(client) => client.init_counter(key).await,
            #[cfg(feature = "etcd")]
            Client::Etcd(client) => client.init_counter(key).await,
            Client::File(_) | Client::Governor(_) | Client::Http(_) => bail!("this system has no CAS workload"),
        }
    }

    /// Increments the counter `key` by read + compare-and-swap, retrying on conflict.
    /// Returns the number of tries it took.
    pub async fn cas_increment(&mut self, key: &str) -> Result<u64> {
        match self {
            Client::Arbiter(client) => client.cas_increment(key).await,
            Client::Redis(client) => client.cas_increment(key).await,
            Client::Postgres(client) => client.cas_increment(key).await,
            #[cfg(feature = "etcd")]
            Client::Etcd(client) => client.cas_increment(key).await,
            Client::File(_) | Client::Governor(_) | Client::Http(_) => bail!("this system has no CAS workload"),
        }
    }

    /// The counter's value now.
    pub async fn read_counter(&mut self, key: &str) -> Result<i64> {
        match self {
            Client::Arbiter(client) => client.read_counter(key).await,
            Client::Redis(client) => client.read_counter(key).await,
            Client::Postgres(client) => client.read_counter(key).await,
            #[cfg(feature = "etcd")]
            Client::Etcd(client) => client.read_counter(key).await,
            Client::File(_) | Client::Governor(_) | Client::Http(_) => bail!("this system has no CAS workload"),
        }
    }

    /// Appends one record to `stream`; returns once it is as durable as the system makes it.
    pub async fn append(&mut self, stream: &str, body: &str) -> Result<()> {
        match self {
            Client::Arbiter(client) => client.append(stream, body).await,
            Client::Redis(client) => client.append(stream, body).await,
            Client::Postgres(client) => client.append(stream, body).await,
            Client::File(client) => client.append(stream, body).await,
            Client::Governor(_) | Client::Http(_) => bail!("this system has no append workload"),
            #[cfg(feature = "etcd")]
            Client::Etcd(_) => bail!("etcd has no append workload"),
        }
    }

    /// How many records `stream` holds.
    pub async fn count_records(&mut self, stream: &str) -> Result<u64> {
        match self {
            Client::Arbiter(client) => client.count_records(stream).await,
            Client::Redis(client) => client.count_records(stream).await,
            Client::Postgres(client) => client.count_records(stream).await,
            Client::File(client) => client.count_records(stream),
            Client::Governor(_) | Client::Http(_) => bail!("this system has no append workload"),
            #[cfg(feature = "etcd")]
            Client::Etcd(_) => bail!("etcd has no append workload"),
        }
    }

    /// Pushes one work item carrying `body` into `queue`.
    pub async fn queue_push(&mut self, queue: &str, body: &str) -> Result<()> {
        match self {
            Client::Arbiter(client) => client.queue_push(queue, body).await,
            Client::Redis(client) => client.queue_push(queue, body).await,
            Client::Postgres(client) => client.queue_push(queue, body).await,
            Client::Http(client) => client.queue_push(queue, body).await,
            _ => bail!("this system has no work-item workload"),
        }
    }

    /// Claims one item of `queue` without waiting and finishes it. `Ok(false)`: the queue
    /// had nothing to claim.
    pub async fn queue_take(&mut self, queue: &str) -> Result<bool> {
        match self {
            Client::Arbiter(client) => client.queue_take(queue).await,
            Client::Redis(client) => client.queue_take(queue).await,
            Client::Postgres(client) => client.queue_take(queue).await,
            Client::Http(client) => client.queue_take(queue).await,
            _ => bail!("this system has no work-item workload"),
        }
    }

    /// What `queue` holds now.
    pub async fn queue_counts(&mut self, queue: &str) -> Result<QueueCounts> {
        match self {
            Client::Arbiter(client) => client.queue_counts(queue).await,
            Client::Redis(client) => client.queue_counts(queue).await,
            Client::Postgres(client) => client.queue_counts(queue).await,
            Client::Http(client) => client.queue_counts(queue).await,
            _ => bail!("this system has no work-item workload"),
        }
    }

    /// Lets go of what the client holds for its whole life (an etcd session lease).
    pub async fn close(self) -> Result<()> {
        match self {
            Client::Arbiter(client) => client.close().await,
            #[cfg(feature = "etcd")]
            Client::Etcd(client) => client.close().await,
            _ => Ok(()),
        }
    }
}

#[cfg(feature = "etcd")]
async fn connect_etcd(system: System, targets: &Targets, id: u32, ttl_ms: u64) -> Result<Client> {
    Ok(Client::Etcd(Box::new(
        etcd::EtcdClient::connect(system, targets, id, ttl_ms).await?,
    )))
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(_system: System, _targets: &Targets, _id: u32, _ttl_ms: u64) -> Result<Client> {
    bail!("{ETCD_SKIPPED}")
}

/// Whether this build can talk to etcd.
pub const ETCD_BUILT: bool = cfg!(feature = "etcd");

/// Why etcd rows are empty in a build without the `etcd` feature.
pub const ETCD_SKIPPED: &str = "skipped: built without --features etcd";

/// The version of the etcd server at `endpoint`, or why it cannot be had.
pub async fn etcd_version(endpoint: &str) -> Result<String> {
    #[cfg(feature = "etcd")]
    {
        etcd::server_version(endpoint).await
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = endpoint;
        bail!("{ETCD_SKIPPED}")
    }
}

/// Deletes every etcd key of this run.
pub async fn etcd_cleanup(endpoint: &str, prefix: &str) -> Result<()> {
    #[cfg(feature = "etcd")]
    {
        etcd::delete_prefix(endpoint, prefix).await
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = (endpoint, prefix);
        Ok(())
    }
}

pub use postgres::{SCHEMA_SQL as PG_SCHEMA_SQL, pg_connect, pg_describe};
pub use redis::{redis_cleanup, redis_version};

/// What a work queue holds, read back after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    /// Items waiting to be claimed.
    pub ready: u64,
    /// Items claimed and not finished (after a run: none).
    pub claimed: u64,
    /// Items finished, where the system keeps them (arbiter); the peers delete or remove a
    /// finished item.
    pub done: Option<u64>,
}

/// A value read back from a store that should be a counter.
fn parse_counter(text: &str) -> Result<i64> {
    match text.trim().parse::<i64>() {
        Ok(value) => Ok(value),
        Err(_) => bail!("counter holds {text:?}, not an integer"),
    }
}
