//! etcd (only with `--features etcd`: etcd-client needs `protoc` and pulls in tonic).
//!
//! Two ways to lock:
//! - [`System::Etcd`]: a lease of its own per acquire, the closest to arbiter's per-lease
//!   TTL: `LeaseGrant(ttl)`, then a txn `create_revision(key) == 0 → put(key, lease)`,
//!   released by `LeaseRevoke` (which deletes the key). The key's create revision is a
//!   fencing token.
//! - [`System::EtcdSession`]: what `concurrency.Mutex` does, one lease per client session
//!   (granted once), acquire = the same txn with the session's lease, release = delete.
//!
//! CAS: `Get`, then a txn `mod_revision(key) == seen → put(key, value + 1)`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, DeleteOptions, PutOptions, Txn, TxnOp};

use super::{MAX_CAS_TRIES, parse_counter};
use crate::spec::{System, Targets};

pub struct EtcdClient {
    system: System,
    client: Client,
    id: u32,
    seq: u64,
    ttl_secs: i64,
    /// The session lease of an [`System::EtcdSession`] client.
    session: Option<i64>,
}

async fn connect(endpoint: &str) -> Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(30));
    Client::connect([endpoint], Some(options))
        .await
        .with_context(|| format!("cannot connect to etcd at {endpoint}"))
}

impl EtcdClient {
    pub async fn connect(system: System, targets: &Targets, id: u32, ttl_ms: u64) -> Result<EtcdClient> {
        let mut client = connect(&targets.etcd).await?;
        // etcd's TTLs are whole seconds (and at least its minimum, a few seconds).
        let ttl_secs = i64::try_from(ttl_ms.div_ceil(1000)).unwrap_or(i64::MAX).max(5);
        let session = match system {
            // Long enough to outlive any run (the run's cap is seconds); revoked in close().
            System::EtcdSession => Some(client.lease_grant(600, None).await?.id()),
            _ => None,
        };
        Ok(EtcdClient {
            system,
            client,
            id,
            seq: 0,
            ttl_secs,
            session,
        })
    }

    async fn try_put(&mut self, name: &str, lease: i64) -> Result<bool> {
        self.seq += 1;
        let value = format!("{}:{}", self.id, self.seq);
        let txn = Txn::new()
            .when([Compare::create_revision(name, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(name, value, Some(PutOptions::new().with_lease(lease)))]);
        Ok(self.client.txn(txn).await?.succeeded())
    }

    pub async fn lease_once(&mut self, name: &str) -> Result<bool> {
        match (self.system, self.session) {
            (System::Etcd, _) => {
                let lease = self.client.lease_grant(self.ttl_secs, None).await?.id();
                let got = self.try_put(name, lease).await;
                // Revoke either way: it releases the key, or frees the unused lease.
                self.client.lease_revoke(lease).await?;
                got
            }
            (System::EtcdSession, Some(session)) => {
                let got = self.try_put(name, session).await?;
                if got {
                    let deleted = self.client.delete(name, None).await?.deleted();
                    if deleted != 1 {
                        bail!("lost the etcd key {name} before releasing it");
                    }
                }
                Ok(got)
            }
            (other, _) => bail!("{other:?} is not an etcd lock"),
        }
    }

    pub async fn init_counter(&mut self, key: &str) -> Result<()> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, "0", None)]);
        self.client.txn(txn).await?;
        Ok(())
    }

    pub async fn cas_increment(&mut self, key: &str) -> Result<u64> {
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > MAX_CAS_TRIES {
                bail!("no increment landed in {MAX_CAS_TRIES} tries");
            }
            let response = self.client.get(key, None).await?;
            let (value, revision) = match response.kvs().first() {
                Some(kv) => (parse_counter(kv.value_str()?)?, kv.mod_revision()),
                None => (0, 0),
            };
            let txn = Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, revision)])
                .and_then([TxnOp::put(key, (value + 1).to_string(), None)]);
            if self.client.txn(txn).await?.succeeded() {
                return Ok(tries);
            }
        }
    }

    pub async fn read_counter(&mut self, key: &str) -> Result<i64> {
        let response = self.client.get(key, None).await?;
        match response.kvs().first() {
            Some(kv) => parse_counter(kv.value_str()?),
            None => Ok(0),
        }
    }

    pub async fn close(mut self) -> Result<()> {
        if let Some(session) = self.session {
            self.client.lease_revoke(session).await?;
        }
        Ok(())
    }
}

/// The etcd server's version.
pub async fn server_version(endpoint: &str) -> Result<String> {
    let mut client = connect(endpoint).await?;
    let status = client.status().await?;
    Ok(status.version().to_string())
}

/// Deletes every key of this run.
pub async fn delete_prefix(endpoint: &str, prefix: &str) -> Result<()> {
    let mut client = connect(endpoint).await?;
    client.delete(prefix, Some(DeleteOptions::new().with_prefix())).await?;
    Ok(())
}
