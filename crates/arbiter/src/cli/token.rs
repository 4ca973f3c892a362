//! `arbiter token …`: the API tokens of `arbiter serve`, managed by whoever can open the
//! store (no server needed): create, list, revoke, and the audit of refused requests.

use std::time::Duration;

use arbiter_core::redact::printable;
use arbiter_core::token::{Namespaces, Scopes, validate_token_name};
use arbiter_core::{Error, Result};
use arbiter_ops::token::{self, CreateToken};
use clap::Subcommand;

use super::output::Output;
use super::{Global, parse_duration, typed};
use crate::exit;

pub const LONG_ABOUT: &str = "\
API tokens for `arbiter serve`: a request carries one as `Authorization: Bearer SECRET`.

A token reaches only its namespaces (-n NS for one, --namespaces a,b or `*` for several)
and its scopes: <primitive>:read or <primitive>:write for lease, kv, log, decisions,
notify, limit, status, queue (write includes read), `admin` (the store, channels) and `*`
(all).
The secret is printed once, alone on stdout; the store keeps only its SHA-256. A revoked
or expired token is refused at its next request. Refusals (401/403) are kept in an audit
(the newest 10 000): `arbiter token audit`.";

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret alone on stdout (shown this once; --json:
    /// {name, secret, namespaces, scopes, expires_at}).
    Create {
        /// The token's name (1-63 of a-z, 0-9, -, _): shown in audits, and the default agent
        /// of the leases it takes.
        #[arg(long, value_parser = parse_name)]
        name: String,
        /// The namespaces it reaches: a,b,c or `*` (all). Default: the one of -n/--namespace.
        #[arg(long, value_name = "NS[,NS…]|*", value_parser = typed::<Namespaces>)]
        namespaces: Option<Namespaces>,
        /// Its scopes, comma-separated: lease:write,kv:read,… , `admin` or `*`. Default: every
        /// <primitive>:write (so every read), not admin.
        #[arg(long, value_name = "SCOPE[,SCOPE…]", value_parser = typed::<Scopes>)]
        scope: Option<Scopes>,
        /// Expire it after this long (e.g. 30d, 12h). Default: never (until revoked).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<Duration>,
        /// Replace a token of the same name: its old secret stops working at once.
        #[arg(long)]
        replace: bool,
    },
    /// List the tokens: name, state (live, expired, revoked), namespaces, scopes, expiry.
    /// Never a secret.
    List,
    /// Revoke a token: its next request is refused.
    Revoke {
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// The newest refused requests (401/403), newest first.
    Audit {
        /// How many to show (1-10000).
        #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000), allow_hyphen_values = true)]
        limit: u32,
    },
}

fn parse_name(text: &str) -> std::result::Result<String, String> {
    validate_token_name(text).map_err(|e| e.message)?;
    Ok(text.to_string())
}

pub async fn run(command: TokenCommand, global: &Global, out: Output) -> Result<i32> {
    match command {
        TokenCommand::Create {
            name,
            namespaces,
            scope,
            expires,
            replace,
        } => {
            // Everything is checked before the store is opened: bad input changes nothing.
            let namespaces = match namespaces {
                Some(_) if global.namespace_given => {
                    return Err(Error::bad_input(
                        "--namespaces and -n/--namespace (or ARBITER_NAMESPACE) both name the token's namespaces: give one",
                    ));
                }
                Some(list) => list,
                None => Namespaces::Only(vec![global.namespace.clone()]),
            };
            let request = CreateToken {
                name,
                namespaces,
                scopes: scope.unwrap_or_else(Scopes::every_write),
                expires,
                replace,
            };
            let (store, _) = global.open().await?;
            let created = token::create(&store, request).await?;
            if out.json {
                out.print_json(&created);
            } else {
                println!("{}", created.secret);
                eprintln!(
                    "token {:?}: namespaces {}, scopes {}, {}. The secret above is shown only this once.",
                    created.name,
                    created.namespaces,
                    created.scopes,
                    created
                        .expires_at
                        .as_deref()
                        .map_or("no expiry".to_string(), |at| format!("expires {at}"))
                );
            }
        }
        TokenCommand::List => {
            let (store, _) = global.open().await?;
            let tokens = token::list(&store).await?;
            if out.json {
                out.print_json(&tokens);
            } else {
                for t in &tokens {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        t.name,
                        t.state,
                        t.namespaces,
                        t.scopes,
                        t.revoked_at
                            .as_deref()
                            .map(|at| format!("revoked {at}"))
                            .or_else(|| t.expires_at.as_deref().map(|at| format!("expires {at}")))
                            .unwrap_or_else(|| "-".to_string())
                    );
                }
            }
        }
        TokenCommand::Revoke { name } => {
            let (store, _) = global.open().await?;
            let revoked = token::revoke(&store, &name).await?;
            if out.json {
                out.print_json(&revoked);
            } else {
                println!("revoked {} at {}", revoked.name, revoked.revoked_at);
            }
        }
        TokenCommand::Audit { limit } => {
            let (store, _) = global.open().await?;
            let entries = token::audit_list(&store, limit as usize).await?;
            if out.json {
                out.print_json(&entries);
            } else {
                for e in &entries {
                    // The path and reason came from a client: no escape sequence reaches
                    // the terminal.
                    println!(
                        "{}\t{}\t{}\t{} {}\t{}\t{}",
                        e.at,
                        e.status,
                        if e.token.is_empty() { "-" } else { &e.token },
                        e.method,
                        printable(&e.path),
                        if e.namespace.is_empty() { "-" } else { &e.namespace },
                        printable(&e.missing)
                    );
                }
            }
        }
    }
    Ok(exit::SUCCESS)
}
