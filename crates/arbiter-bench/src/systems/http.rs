//! arbiter through its HTTP API (`arbiter serve`), as an agent written in another language
//! calls it: one keep-alive HTTP/1.1 connection per client, a bearer token, the JSON bodies
//! of `arbiter_server::wire` (so the benchmark sends exactly what the server parses).
//!
//! A lease try is `POST …/leases/{name}/acquire` without `wait_ms` (busy: 409 `held`) and,
//! when granted, `POST …/leases/{name}/release`; a limiter decision is `POST …/limits/take`
//! (not granted: 429 `limited`). A work item is pushed by `POST …/queues/{queue}/items`; a
//! claim + done is `POST …/queues/{queue}/claim` without `wait_ms` (nothing to claim: 200
//! `{"claimed": null}`) and, when it got one, `POST …/items/{id}/done` with its token. Names
//! go as one percent-encoded path segment (`/` as `%2F`).

use anyhow::{Context, Result, bail};
use arbiter_core::limit::MAX_AMOUNT;
use arbiter_server::wire::{AcquireBody, ClaimBody, DefineBody, DoneBody, HolderBody, PushBody, ReleaseBody, TakeBody};
use reqwest::{Client, StatusCode, Url};
use serde::Deserialize;

use super::{NAMESPACE, QueueCounts};
use crate::spec::{System, Targets};

pub struct HttpClient {
    http: Client,
    /// `http://ADDR/v1/ns/bench/`.
    base: Url,
    token: Option<String>,
    holder: HolderBody,
    ttl_ms: u64,
}

/// What the benchmark reads of a `LeaseView`.
#[derive(Deserialize)]
struct Granted {
    token: i64,
}

/// What the benchmark reads of a `TakeView`.
#[derive(Deserialize)]
struct Decision {
    granted: bool,
}

/// What the benchmark reads of a claim's answer (`ClaimAnswer`).
#[derive(Deserialize)]
struct ClaimAnswer {
    claimed: Option<ClaimedItem>,
}

#[derive(Deserialize)]
struct ClaimedItem {
    id: i64,
    token: i64,
}

/// What the benchmark reads of a `QueueStatsView`.
#[derive(Deserialize)]
struct QueueStatsView {
    queue: String,
    ready: u64,
    delayed: u64,
    claimed: u64,
    expired: u64,
    done: u64,
}

/// What the benchmark reads of the API's error body.
#[derive(Deserialize)]
struct ErrorCode {
    error: String,
}

impl HttpClient {
    /// Client `id` of the server `system` stands for, sending `token`.
    pub async fn connect(
        system: System,
        targets: &Targets,
        id: u32,
        ttl_ms: u64,
        token: Option<String>,
    ) -> Result<HttpClient> {
        let Some((server, _)) = targets.server(system) else {
            bail!("no arbiter server was started for {}", system.label());
        };
        let base = Url::parse(server)
            .and_then(|url| url.join(&format!("v1/ns/{NAMESPACE}/")))
            .with_context(|| format!("server URL {server}"))?;
        // reqwest is built without a default TLS provider; plain HTTP needs none, but the
        // builder asks for one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Client::builder()
            .http1_only()
            .pool_max_idle_per_host(1)
            .build()
            .context("building the HTTP client")?;
        // The holder is this (live) worker process, as `arbiter --server` sends it: the
        // server is on this host, so a refused try checks that its holders are alive.
        let holder = arbiter_process::holder_for(arbiter_process::current_pid(), &format!("bench-{id}"))?;
        let client = HttpClient {
            http,
            base,
            token,
            holder: HolderBody {
                agent: Some(holder.agent),
                host: Some(holder.host).filter(|h| !h.is_empty()),
                boot_id: Some(holder.boot_id).filter(|b| !b.is_empty()),
                pid: Some(holder.pid),
                start_time: Some(holder.start_time),
                pgid: holder.pgid,
            },
            ttl_ms,
        };
        Ok(client)
    }

    /// `base` + the segments, each percent-encoded as one segment.
    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| anyhow::anyhow!("{} cannot have a path", self.base))?;
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(StatusCode, Vec<u8>)> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await?;
        let status = response.status();
        Ok((status, response.bytes().await?.to_vec()))
    }

    /// The error code of a non-2xx answer, or an error saying what came back.
    fn refusal(status: StatusCode, body: &[u8], what: &str) -> Result<String> {
        match serde_json::from_slice::<ErrorCode>(body) {
            Ok(e) => Ok(e.error),
            Err(_) => bail!("{what}: {status}: {}", String::from_utf8_lossy(body)),
        }
    }

    pub async fn lease_once(&mut self, name: &str) -> Result<bool> {
        let body = AcquireBody {
            ttl_ms: self.ttl_ms,
            slots: None,
            wait_ms: None,
            holder: Some(self.holder.clone()),
        };
        let acquire = self.http.post(self.url(&["leases", name, "acquire"])?).json(&body);
        let (status, bytes) = self.send(acquire).await.context("acquire")?;
        if !status.is_success() {
            return match Self::refusal(status, &bytes, "acquire")?.as_str() {
                "held" => Ok(false),
                code => bail!("acquire: {status} {code}: {}", String::from_utf8_lossy(&bytes)),
            };
        }
        let granted: Granted = serde_json::from_slice(&bytes).context("acquire's answer")?;
        let release = self
            .http
            .post(self.url(&["leases", name, "release"])?)
            .json(&ReleaseBody { token: granted.token });
        let (status, bytes) = self.send(release).await.context("release")?;
        if !status.is_success() {
            bail!("release: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(true)
    }

    /// Defines the limiter workload's bucket unless it exists, as the direct client does:
    /// so generous that every take is granted, no reserve.
    pub async fn prepare_bucket(&mut self, bucket: &str) -> Result<()> {
        let body = DefineBody {
            rate: format!("{MAX_AMOUNT}/s"),
            burst: Some(MAX_AMOUNT),
            reserve_percent: Some(0),
            fair: false,
            if_absent: true,
        };
        let define = self.http.put(self.url(&["limits", bucket])?).json(&body);
        let (status, bytes) = self.send(define).await.context("define")?;
        if !status.is_success() {
            bail!("define: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(())
    }

    /// One decision for 1 token of `bucket`: 200 granted, 429 not.
    pub async fn limit_take(&mut self, bucket: &str) -> Result<bool> {
        let body = TakeBody {
            buckets: vec![bucket.to_string()],
            cost: None,
            priority: None,
            party: None,
            wait_ms: None,
        };
        let take = self.http.post(self.url(&["limits", "take"])?).json(&body);
        let (status, bytes) = self.send(take).await.context("take")?;
        if status.is_success() {
            let decision: Decision = serde_json::from_slice(&bytes).context("take's answer")?;
            return Ok(decision.granted);
        }
        match Self::refusal(status, &bytes, "take")?.as_str() {
            "limited" => Ok(false),
            code => bail!("take: {status} {code}: {}", String::from_utf8_lossy(&bytes)),
        }
    }

    /// `POST …/queues/{queue}/items` with `body` (no key, priority 0, no requirements).
    pub async fn queue_push(&mut self, queue: &str, body: &str) -> Result<()> {
        let body = PushBody {
            body: body.to_string(),
            key: None,
            priority: None,
            requires: Vec::new(),
            delay_ms: None,
            not_before: None,
            max_attempts: None,
        };
        let push = self.http.post(self.url(&["queues", queue, "items"])?).json(&body);
        let (status, bytes) = self.send(push).await.context("push")?;
        if status != StatusCode::CREATED {
            bail!("push: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(())
    }

    /// One claim without waiting (a lease of the run's TTL), then its done.
    pub async fn queue_take(&mut self, queue: &str) -> Result<bool> {
        let body = ClaimBody {
            capabilities: Vec::new(),
            lease_ms: Some(self.ttl_ms),
            wait_ms: None,
            holder: Some(self.holder.clone()),
        };
        let claim = self.http.post(self.url(&["queues", queue, "claim"])?).json(&body);
        let (status, bytes) = self.send(claim).await.context("claim")?;
        if !status.is_success() {
            bail!("claim: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        let answer: ClaimAnswer = serde_json::from_slice(&bytes).context("claim's answer")?;
        let Some(claimed) = answer.claimed else {
            return Ok(false);
        };
        let done = self
            .http
            .post(self.url(&["items", &claimed.id.to_string(), "done"])?)
            .json(&DoneBody {
                token: claimed.token,
                result: None,
            });
        let (status, bytes) = self.send(done).await.context("done")?;
        if !status.is_success() {
            bail!(
                "done of item {}: {status}: {}",
                claimed.id,
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(true)
    }

    /// The queue's counts from `GET …/queues`.
    pub async fn queue_counts(&mut self, queue: &str) -> Result<QueueCounts> {
        let stats = self.http.get(self.url(&["queues"])?);
        let (status, bytes) = self.send(stats).await.context("queue stats")?;
        if !status.is_success() {
            bail!("queue stats: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        let stats: Vec<QueueStatsView> = serde_json::from_slice(&bytes).context("queue stats' answer")?;
        Ok(match stats.into_iter().find(|s| s.queue == queue) {
            Some(s) => QueueCounts {
                ready: s.ready + s.delayed,
                claimed: s.claimed + s.expired,
                done: Some(s.done),
            },
            None => QueueCounts {
                ready: 0,
                claimed: 0,
                done: Some(0),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arbiter_core::name::{LeaseName, Namespace};
    use arbiter_core::token::{Namespaces, Scopes};
    use arbiter_ops::token::CreateToken;
    use arbiter_server::{Auth, ServeConfig, Server};
    use arbiter_store::{Store, StoreUrl};

    use super::*;

    /// The run's targets with only a server for `HttpSqlite` at `addr`.
    fn targets(addr: std::net::SocketAddr) -> Targets {
        Targets {
            http_sqlite: Some(format!("http://{addr}/")),
            ..Targets::nowhere()
        }
    }

    // What the benchmark counts through a real server with a real token: a granted try,
    // a refused one (the name held by someone else), a decision; and a wrong token is an
    // error, never a refusal counted as an operation.
    arbiter_testkit::each_backend!(counts_through_a_real_server, |url: String| async move {
        let store = Store::open(&StoreUrl::parse(&url).unwrap()).await.unwrap();
        let ns = Namespace::parse(NAMESPACE).unwrap();
        let created = arbiter_ops::token::create(
            &store,
            CreateToken {
                name: "bench-test".into(),
                namespaces: Namespaces::Only(vec![ns.clone()]),
                scopes: Scopes::every_write(),
                expires: None,
                replace: false,
            },
        )
        .await
        .unwrap();
        let listen = "127.0.0.1:0".parse().unwrap();
        let server = Server::start(store.clone(), ServeConfig::new(listen, Auth::Tokens))
            .await
            .unwrap();
        let targets = targets(server.addr());
        let mut client = HttpClient::connect(System::HttpSqlite, &targets, 1, 30_000, Some(created.secret))
            .await
            .unwrap();

        // A name with `/`, as the run's names have: one segment.
        let name = "arbiter-bench/1-2/h64-0";
        assert!(client.lease_once(name).await.unwrap(), "a free name is granted");
        assert!(client.lease_once(name).await.unwrap(), "and was released");
        let lease = LeaseName::parse(name).unwrap();
        let info = store.leases().show(&ns, &lease).await.unwrap();
        assert!(info.holders.is_empty(), "every granted try released its lease");
        assert_eq!(info.last_token, 2, "two grants");

        // Held by another client that keeps it: a refused try.
        let body = AcquireBody {
            ttl_ms: 30_000,
            slots: None,
            wait_ms: None,
            holder: Some(HolderBody {
                agent: Some("other".into()),
                ..HolderBody::default()
            }),
        };
        let held = client
            .http
            .post(client.url(&["leases", name, "acquire"]).unwrap())
            .json(&body);
        let (status, _) = client.send(held).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(!client.lease_once(name).await.unwrap(), "a held name is refused");
        let info = store.leases().show(&ns, &lease).await.unwrap();
        assert_eq!(info.holders.len(), 1, "the refused try took nothing");
        assert_eq!(info.holders[0].holder.agent, "other");

        let bucket = "arbiter-bench/1-2/hl16-bucket";
        client.prepare_bucket(bucket).await.unwrap();
        client.prepare_bucket(bucket).await.unwrap();
        for _ in 0..3 {
            assert!(client.limit_take(bucket).await.unwrap());
        }

        // Work items: pushed, each taken once (claimed and done), then the queue is empty.
        let queue = "arbiter-bench/1-2/hq-queue";
        for i in 0..3 {
            client.queue_push(queue, &format!("item {i}")).await.unwrap();
        }
        let counts = client.queue_counts(queue).await.unwrap();
        assert_eq!((counts.ready, counts.claimed, counts.done), (3, 0, Some(0)));
        for _ in 0..3 {
            assert!(client.queue_take(queue).await.unwrap(), "a pushed item is taken");
        }
        assert!(!client.queue_take(queue).await.unwrap(), "then nothing is left");
        let counts = client.queue_counts(queue).await.unwrap();
        assert_eq!((counts.ready, counts.claimed, counts.done), (0, 0, Some(3)));

        let mut stranger = HttpClient::connect(System::HttpSqlite, &targets, 2, 30_000, Some("arb_wrong".into()))
            .await
            .unwrap();
        let refused = stranger.lease_once("free").await.unwrap_err();
        assert!(format!("{refused:#}").contains("401"), "{refused:#}");
        let missing = HttpClient::connect(System::HttpPostgres, &targets, 3, 30_000, None).await;
        assert!(missing.is_err(), "no server for PostgreSQL in these targets");
        tokio::time::timeout(Duration::from_secs(15), server.shutdown())
            .await
            .unwrap()
            .unwrap();
    });
}
