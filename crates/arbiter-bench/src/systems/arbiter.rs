//! arbiter through its library, as an agent loop links it: `arbiter_client::lease::acquire`
//! without waiting (a try-lock: busy is `Held`), `LeaseStore::release`, and `KvStore`
//! get + put `--if-version` for CAS, and `LogStore::append` of a validated record (what
//! `arbiter log append` does) for appends. Work items: `QueueStore::push` of a validated
//! item (what `arbiter queue push` does); `arbiter_client::queue::claim` without waiting
//! (one try: one store transaction) and `QueueStore::done` with the claim's token.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use arbiter_client::lease::AcquireRequest;
use arbiter_client::limit::Permits;
use arbiter_core::ErrorKind;
use arbiter_core::lease::Holder;
use arbiter_core::limit::{BucketSpec, MAX_AMOUNT, Priority, Rate, TakeRequest};
use arbiter_core::log::{NewRecord, RecordFields};
use arbiter_core::name::{BucketName, Key, LeaseName, Namespace, QueueName, StreamName};
use arbiter_core::queue::{ClaimRequest, DEFAULT_MAX_ATTEMPTS, NewItem};
use arbiter_store::{Store, StoreUrl};

use super::{MAX_CAS_TRIES, NAMESPACE, QueueCounts, parse_counter};
use crate::spec::{System, Targets};

pub struct ArbiterClient {
    /// One store handle per client: on SQLite that is one connection, like one agent
    /// process; on PostgreSQL a pool, of which one connection is used at a time.
    store: Store,
    holder: Holder,
    ttl: Duration,
    id: u32,
    namespace: Namespace,
    /// The Permits systems' fast path, made on the first decision (it needs the bucket).
    permits: Option<Permits>,
    fast: bool,
}

impl ArbiterClient {
    pub async fn connect(system: System, targets: &Targets, id: u32, ttl_ms: u64) -> Result<ArbiterClient> {
        let url = match system {
            System::ArbiterSqliteFull | System::PermitsSqlite => &targets.sqlite_full,
            System::ArbiterSqliteNormal => &targets.sqlite_normal,
            System::ArbiterPostgres | System::PermitsPostgres => &targets.arbiter_postgres,
            other => bail!("{other:?} is not an arbiter store"),
        };
        let url = StoreUrl::parse(url)?;
        let store = Store::open(&url).await.context("opening the arbiter store")?;
        // The holder is this (live) process: a refused attempt checks the holders on this
        // host and must find them alive, or it would take their leases over.
        let holder = arbiter_process::holder_for(arbiter_process::current_pid(), &format!("bench-{id}"))?;
        Ok(ArbiterClient {
            store,
            holder,
            ttl: Duration::from_millis(ttl_ms),
            id,
            namespace: Namespace::parse(NAMESPACE)?,
            permits: None,
            fast: matches!(system, System::PermitsSqlite | System::PermitsPostgres),
        })
    }

    /// Defines the limiter workload's bucket unless it exists: a rate and burst so high that
    /// every take is granted, no reserve.
    pub async fn prepare_bucket(&mut self, bucket: &str) -> Result<()> {
        let spec = BucketSpec {
            rate: Rate {
                amount: MAX_AMOUNT,
                per: Duration::from_secs(1),
            },
            burst: MAX_AMOUNT,
            reserve_percent: 0,
            fair: false,
        };
        self.store
            .limits()
            .define(&self.namespace, &BucketName::parse(bucket)?, &spec, true)
            .await?;
        Ok(())
    }

    /// One decision for 1 token of `bucket`: a store transaction, or (Permits) a local
    /// hand-out from a batch taken from the store.
    pub async fn limit_take(&mut self, bucket: &str) -> Result<bool> {
        if self.fast {
            let permits = match &self.permits {
                Some(permits) => permits,
                None => self.permits.insert(Permits::new(
                    self.store.clone(),
                    self.namespace.clone(),
                    vec![BucketName::parse(bucket)?],
                    Priority::Normal,
                )),
            };
            return match permits.take(1, Duration::ZERO).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind == ErrorKind::Limited => Ok(false),
                Err(e) => Err(anyhow::Error::new(e).context("permits take")),
            };
        }
        let request = TakeRequest {
            namespace: self.namespace.clone(),
            buckets: vec![BucketName::parse(bucket)?],
            cost: 1,
            priority: Priority::Normal,
            party: None,
        };
        let decision = self.store.limits().take(&request).await.context("take")?;
        Ok(decision.granted)
    }

    /// Gives back the permits a Permits client holds unused.
    pub async fn close(self) -> Result<()> {
        if let Some(permits) = self.permits {
            permits.close().await.context("closing permits")?;
        }
        Ok(())
    }

    pub async fn lease_once(&mut self, name: &str) -> Result<bool> {
        let name = LeaseName::parse(name)?;
        let request = AcquireRequest {
            namespace: self.namespace.clone(),
            name: name.clone(),
            holder: self.holder.clone(),
            ttl: self.ttl,
            slots: 1,
            wait: None,
        };
        match arbiter_client::lease::acquire(&self.store, request).await {
            Ok(granted) => {
                self.store
                    .leases()
                    .release(&self.namespace, &name, granted.lease.token)
                    .await
                    .context("release")?;
                Ok(true)
            }
            Err(e) if e.kind == ErrorKind::Held => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context("acquire")),
        }
    }

    pub async fn init_counter(&mut self, key: &str) -> Result<()> {
        match self
            .store
            .kv()
            .put(&self.namespace, &Key::parse(key)?, "0", Some(0))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::Conflict => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn cas_increment(&mut self, key: &str) -> Result<u64> {
        let key = &Key::parse(key)?;
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > MAX_CAS_TRIES {
                bail!("no increment landed in {MAX_CAS_TRIES} tries");
            }
            let current = self.store.kv().get(&self.namespace, key).await?;
            let (value, version) = match current {
                Some(kv) => (parse_counter(&kv.value)?, kv.version),
                None => (0, 0),
            };
            let next = (value + 1).to_string();
            match self.store.kv().put(&self.namespace, key, &next, Some(version)).await {
                Ok(_) => return Ok(tries),
                Err(e) if e.kind == ErrorKind::Conflict => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn read_counter(&mut self, key: &str) -> Result<i64> {
        match self.store.kv().get(&self.namespace, &Key::parse(key)?).await? {
            Some(kv) => parse_counter(&kv.value),
            None => Ok(0),
        }
    }

    pub async fn append(&mut self, stream: &str, body: &str) -> Result<()> {
        let record = NewRecord::new(
            self.namespace.clone(),
            StreamName::parse(stream)?,
            RecordFields {
                kind: "note".to_string(),
                author: format!("bench-{}", self.id),
                body: body.to_string(),
                ..RecordFields::default()
            },
        )?;
        self.store.log().append(record).await.context("append")?;
        Ok(())
    }

    /// Reads the whole stream back and counts its records (not its head offset, which is
    /// what is being checked).
    pub async fn count_records(&mut self, stream: &str) -> Result<u64> {
        const PAGE: usize = 1_000;
        let name = StreamName::parse(stream)?;
        let mut count = 0;
        // Bounded: a benchmark stream holds far fewer than 10^9 records.
        for _ in 0..1_000_000 {
            let records = self
                .store
                .log()
                .read(&self.namespace, &name, i64::try_from(count)?, PAGE)
                .await?;
            count += records.len() as u64;
            if records.len() < PAGE {
                return Ok(count);
            }
        }
        bail!("stream {stream} did not end")
    }

    /// `arbiter queue push QUEUE BODY`: no key, priority 0, no requirements.
    pub async fn queue_push(&mut self, queue: &str, body: &str) -> Result<()> {
        let item = NewItem::new(
            self.namespace.clone(),
            QueueName::parse(queue)?,
            body.to_string(),
            None,
            0,
            Vec::new(),
            None,
            DEFAULT_MAX_ATTEMPTS,
        )?;
        self.store.queue().push(&item).await.context("push")?;
        Ok(())
    }

    /// `arbiter queue claim QUEUE --lease 30s` (one try, no capabilities), then `queue done
    /// ID --token T`. A refused `done` (the claim was lost) is an error: nothing else
    /// touches the queue during a run, and the lease outlasts it.
    pub async fn queue_take(&mut self, queue: &str) -> Result<bool> {
        let request = ClaimRequest {
            namespace: self.namespace.clone(),
            queue: QueueName::parse(queue)?,
            holder: self.holder.clone(),
            capabilities: Vec::new(),
            lease: self.ttl,
        };
        let claimed = arbiter_client::queue::claim(&self.store, &request, None)
            .await
            .context("claim")?;
        let Some(grant) = claimed.grant else {
            return Ok(false);
        };
        let claim = &grant.claim;
        self.store
            .queue()
            .done(&self.namespace, claim.id, claim.token, None)
            .await
            .with_context(|| format!("done of item {}", claim.id))?;
        Ok(true)
    }

    /// The queue's counts from `queue stats`.
    pub async fn queue_counts(&mut self, queue: &str) -> Result<QueueCounts> {
        let (_, stats) = self.store.queue().stats(&self.namespace).await?;
        let Some(stats) = stats.into_iter().find(|s| s.queue == queue) else {
            return Ok(QueueCounts {
                ready: 0,
                claimed: 0,
                done: Some(0),
            });
        };
        Ok(QueueCounts {
            ready: stats.ready + stats.delayed,
            claimed: stats.claimed + stats.expired,
            done: Some(stats.done),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What the work-item rows count on each real store: a push is one ready item, a take
    // claims and finishes one (its done accepted with the claim's token), an empty queue
    // is `false`, and the counts read back are the queue's.
    arbiter_testkit::each_backend!(takes_every_pushed_item_once, |url: String| async move {
        let (system, targets) = if url.starts_with("sqlite:") {
            let targets = Targets {
                sqlite_full: url,
                ..Targets::nowhere()
            };
            (System::ArbiterSqliteFull, targets)
        } else {
            let targets = Targets {
                arbiter_postgres: url,
                ..Targets::nowhere()
            };
            (System::ArbiterPostgres, targets)
        };
        let mut a = ArbiterClient::connect(system, &targets, 1, 30_000).await.unwrap();
        let mut b = ArbiterClient::connect(system, &targets, 2, 30_000).await.unwrap();
        let queue = "arbiter-bench/1-2/q-queue";
        for i in 0..5 {
            a.queue_push(queue, &format!("item {i}")).await.unwrap();
        }
        let counts = b.queue_counts(queue).await.unwrap();
        assert_eq!((counts.ready, counts.claimed, counts.done), (5, 0, Some(0)));
        let mut taken = 0;
        // Bounded: 5 items.
        for _ in 0..10 {
            let (got_a, got_b) = tokio::join!(a.queue_take(queue), b.queue_take(queue));
            let (got_a, got_b) = (got_a.unwrap(), got_b.unwrap());
            taken += u32::from(got_a) + u32::from(got_b);
            if !got_a && !got_b {
                break;
            }
        }
        assert_eq!(taken, 5, "each item taken once");
        let counts = a.queue_counts(queue).await.unwrap();
        assert_eq!((counts.ready, counts.claimed, counts.done), (0, 0, Some(5)));
        let none = a.queue_counts("arbiter-bench/1-2/none").await.unwrap();
        assert_eq!(
            (none.ready, none.done),
            (0, Some(0)),
            "a queue never pushed to is empty"
        );
    });
}
