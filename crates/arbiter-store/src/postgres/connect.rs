//! Opening one PostgreSQL connection, bounded: every connection of a store (the pool's and
//! the LISTEN one) comes from [`Connector::connect`].
//!
//! - **Connect timeout**: the whole of it — TCP connect, TLS handshake, startup and
//!   authentication — within `connect_timeout` (URL, seconds; default [`CONNECT_TIMEOUT`]).
//!   The driver's own timeout covers only the TCP connect, so a listener that accepts and
//!   never speaks would hang it.
//! - **TCP keepalive** on (default idle [`KEEPALIVE_IDLE`], then every
//!   [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_COUNT`] probes), so a peer that vanished is noticed
//!   even on a connection that waits for nothing. libpq's `keepalives*` options override it.
//! - **Statement deadline**: [`deadline`](super::deadline) — no statement waits more than
//!   `statement_timeout` (default [`STATEMENT_TIMEOUT`]) for its answer.
//! - **TLS**: negotiated here (libpq's `SSLRequest`), with rustls; see [`super::tls`].
//!
//! Every failure names the server as `host:port`.

use std::sync::Arc;
use std::time::Duration;

use arbiter_core::{Error, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{NoTls, NoTlsStream};
use tokio_postgres::{Client, Connection};

use super::deadline::{DeadlineStream, Expiry};
use super::tls::Tls;
use crate::url::{PgOptions, SslMode};

/// How long opening one connection may take, unless the URL says (`connect_timeout`).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may wait for its answer, unless the URL says
/// (`statement_timeout`). Well above any healthy statement (they take milliseconds; a row
/// lock is held at most [`super::IDLE_IN_TRANSACTION`] by a frozen client).
pub(crate) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
pub(crate) const KEEPALIVE_COUNT: u32 = 3;

/// How long a statement may wait for its answer: the URL's `statement_timeout`, or
/// [`STATEMENT_TIMEOUT`].
pub(crate) fn statement_timeout(options: &PgOptions) -> Duration {
    options.statement_timeout.unwrap_or(STATEMENT_TIMEOUT)
}

/// Anything a connection can run over.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

pub(crate) type Stream = DeadlineStream<Box<dyn Io>>;
pub(crate) type PgConnection = Connection<Stream, NoTlsStream>;

/// `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

pub(crate) struct Connector {
    /// The user's settings, with TLS turned off: the driver talks over a stream this module
    /// has already secured.
    config: tokio_postgres::Config,
    sslmode: SslMode,
    tls: Option<Tls>,
    connect_timeout: Duration,
    statement_timeout: Duration,
    keepalive: Option<socket2::TcpKeepalive>,
    /// When a statement deadline of one of this connector's connections last passed.
    last_expired: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl Connector {
    pub(crate) fn new(mut config: tokio_postgres::Config, options: &PgOptions) -> Result<Connector> {
        use tokio_postgres::config::{ChannelBinding, LoadBalanceHosts, SslNegotiation, TargetSessionAttrs};
        // Options the driver would apply in its own connect, which this module replaces:
        // refused rather than silently ignored.
        let unsupported = [
            (config.get_channel_binding() == ChannelBinding::Require)
                .then_some("channel_binding=require (channel binding is not offered over arbiter's TLS)"),
            (config.get_ssl_negotiation() == SslNegotiation::Direct)
                .then_some("sslnegotiation=direct (only the standard negotiation is supported)"),
            (config.get_target_session_attrs() != TargetSessionAttrs::Any)
                .then_some("target_session_attrs (only any is supported)"),
            (config.get_load_balance_hosts() == LoadBalanceHosts::Random)
                .then_some("load_balance_hosts=random (hosts are tried in order)"),
        ];
        if let Some(option) = unsupported.into_iter().flatten().next() {
            return Err(Error::bad_input(format!("unsupported PostgreSQL URL option {option}")));
        }
        let connect_timeout = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
        let tls = Tls::new(options)?;
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let keepalive = (options.keepalives != Some(false)).then(|| {
            let keepalive = socket2::TcpKeepalive::new().with_time(options.keepalives_idle.unwrap_or(KEEPALIVE_IDLE));
            #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
            let keepalive = keepalive.with_interval(options.keepalives_interval.unwrap_or(KEEPALIVE_INTERVAL));
            #[cfg(any(target_os = "linux", target_os = "macos"))]
            let keepalive = keepalive.with_retries(options.keepalives_count.unwrap_or(KEEPALIVE_COUNT));
            keepalive
        });
        Ok(Connector {
            config,
            sslmode: options.sslmode,
            tls,
            connect_timeout,
            statement_timeout: statement_timeout(options),
            keepalive,
            last_expired: Arc::default(),
        })
    }

    /// Whether a statement deadline passed on any connection since `created`: a link that
    /// went silent for one connection is not trusted for the others made before, so the
    /// pool drops them rather than hand out one whose end the driver has not seen yet.
    pub(crate) fn expired_since(&self, created: std::time::Instant) -> bool {
        self.last_expired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at >= created)
    }

    /// How long a statement may wait for its answer.
    pub(crate) fn statement_timeout(&self) -> Duration {
        self.statement_timeout
    }

    /// Opens one connection: each server the URL names in turn, each attempt within the
    /// connect timeout. The caller spawns the connection.
    pub(crate) async fn connect(&self) -> Result<(Client, PgConnection)> {
        let mut failures = Vec::new();
        for (host, addr, port) in targets(&self.config) {
            let at = match addr {
                Some(addr) => format!("{} ({})", endpoint(&host, port), std::net::SocketAddr::new(addr, port)),
                None => endpoint(&host, port),
            };
            match tokio::time::timeout(self.connect_timeout, self.connect_one(&host, addr, port, &at)).await {
                Ok(Ok(connected)) => return Ok(connected),
                Ok(Err(why)) => failures.push(why),
                Err(_) => failures.push(format!(
                    "{at}: no answer within {} (connect_timeout)",
                    arbiter_core::duration::format_duration(self.connect_timeout)
                )),
            }
        }
        Err(Error::unavailable(format!(
            "cannot connect to PostgreSQL at {}",
            failures.join("; ")
        )))
    }

    async fn connect_one(
        &self,
        host: &Host,
        addr: Option<std::net::IpAddr>,
        port: u16,
        at: &str,
    ) -> std::result::Result<(Client, PgConnection), String> {
        let stream: Box<dyn Io> = match host {
            Host::Tcp(name) => {
                let tcp = match addr {
                    // `hostaddr`: connect there; the name is for TLS.
                    Some(addr) => tokio::net::TcpStream::connect((addr, port)).await,
                    None => tokio::net::TcpStream::connect((name.as_str(), port)).await,
                }
                .map_err(|e| format!("{at}: {e}"))?;
                let _ = tcp.set_nodelay(true);
                if let Some(keepalive) = &self.keepalive {
                    socket2::SockRef::from(&tcp)
                        .set_tcp_keepalive(keepalive)
                        .map_err(|e| format!("{at}: cannot turn on TCP keepalive: {e}"))?;
                }
                self.secure(tcp, name, at).await?
            }
            #[cfg(unix)]
            Host::Unix(dir) => {
                // Like libpq: no TLS over a Unix socket.
                let path = dir.join(format!(".s.PGSQL.{port}"));
                Box::new(
                    tokio::net::UnixStream::connect(&path)
                        .await
                        .map_err(|e| format!("{at}: {e}"))?,
                )
            }
        };
        let expiry = Expiry {
            endpoint: Arc::from(at),
            timeout: self.statement_timeout,
            last_expired: self.last_expired.clone(),
        };
        self.config
            .connect_raw(DeadlineStream::new(stream, expiry), NoTls)
            .await
            .map_err(|e| format!("{at}: {}", self.startup_error(&e)))
    }

    /// TLS as `sslmode` asks: `SSLRequest`, then the handshake if the server agrees.
    async fn secure(
        &self,
        mut tcp: tokio::net::TcpStream,
        host: &str,
        at: &str,
    ) -> std::result::Result<Box<dyn Io>, String> {
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let mode = self.sslmode.as_str();
        tcp.write_all(&SSL_REQUEST).await.map_err(|e| format!("{at}: {e}"))?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer)
            .await
            .map_err(|e| format!("{at}: the server closed the connection when asked for TLS: {e}"))?;
        match answer[0] {
            b'S' => Ok(Box::new(tls.handshake(tcp, host, at).await?)),
            b'N' if self.sslmode == SslMode::Prefer => Ok(Box::new(tcp)),
            b'N' => Err(format!(
                "{at}: sslmode={mode}: the server does not accept TLS connections"
            )),
            other => Err(format!(
                "{at}: unexpected answer {other:#04x} to the TLS request: is this a PostgreSQL server?"
            )),
        }
    }

    fn startup_error(&self, e: &tokio_postgres::Error) -> String {
        if let Some(db) = e.as_db_error() {
            let hint = if self.sslmode == SslMode::Disable && db.message().contains("no encryption") {
                " (sslmode=disable: this server accepts only TLS connections; use sslmode=require or verify-full)"
            } else {
                ""
            };
            return format!("{} ({}){hint}", db.message(), db.code().code());
        }
        match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        }
    }
}

/// The servers the URL names, in order, with their `hostaddr` if given and their ports
/// (libpq's rules: one port for all, or one per host; 5432 by default).
fn targets(config: &tokio_postgres::Config) -> Vec<(Host, Option<std::net::IpAddr>, u16)> {
    let ports = config.get_ports();
    let addrs = config.get_hostaddrs();
    let hosts: Vec<Host> = match config.get_hosts() {
        [] if !addrs.is_empty() => addrs.iter().map(|a| Host::Tcp(a.to_string())).collect(),
        [] => vec![Host::Tcp("localhost".into())],
        hosts => hosts.to_vec(),
    };
    hosts
        .into_iter()
        .enumerate()
        .map(|(i, host)| {
            let port = match ports.len() {
                0 => 5432,
                1 => ports[0],
                _ => ports.get(i).copied().unwrap_or(5432),
            };
            (host, addrs.get(i).copied(), port)
        })
        .collect()
}

fn endpoint(host: &Host, port: u16) -> String {
    match host {
        Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
        Host::Tcp(name) => format!("{name}:{port}"),
        #[cfg(unix)]
        Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
    }
}
