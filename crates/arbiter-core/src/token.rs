//! API tokens: what a bearer token of `arbiter serve` may reach, as rules over plain data.
//!
//! A token carries a set of **namespaces** (`*` for all) and **scopes**:
//! `<primitive>:read` or `<primitive>:write` for each primitive, `admin` (tokens, the store,
//! channels) and `*` (everything, `admin` included). A write scope includes the read scope
//! of the same primitive: whoever may take a lease may also look at it.
//!
//! [`Principal`] is who a request comes from once its token is checked; every front end asks
//! it [`Principal::check`] before calling an operation. A refusal is
//! [`ErrorKind::Forbidden`](crate::ErrorKind::Forbidden), naming what was missing.

use std::fmt;
use std::str::FromStr;

use crate::name::Namespace;
use crate::{Error, ErrorKind, ParseError};

/// A primitive a scope names. New primitives add a variant (and its name below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Primitive {
    Lease,
    Kv,
    Log,
    Decisions,
    Notify,
    Limit,
    /// The fleet: loops, their rounds and GitHub budgets (`arbiter status`).
    Status,
    /// Work items: push, claim, heartbeat, done, fail, retry (write); list, show, stats,
    /// hosts (read).
    Queue,
}

impl Primitive {
    pub const ALL: [Primitive; 8] = [
        Primitive::Lease,
        Primitive::Kv,
        Primitive::Log,
        Primitive::Decisions,
        Primitive::Notify,
        Primitive::Limit,
        Primitive::Status,
        Primitive::Queue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Primitive::Lease => "lease",
            Primitive::Kv => "kv",
            Primitive::Log => "log",
            Primitive::Decisions => "decisions",
            Primitive::Notify => "notify",
            Primitive::Limit => "limit",
            Primitive::Status => "status",
            Primitive::Queue => "queue",
        }
    }
}

/// Reading or changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// One scope of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `lease:read`, `kv:write`, …
    Primitive(Primitive, Access),
    /// `admin`: tokens, the store, channels.
    Admin,
    /// `*`: everything, `admin` included.
    All,
}

const SCOPE_RULE: &str = "expected `*`, `admin` or <primitive>:read|write with primitive one of \
     lease, kv, log, decisions, notify, limit, status, queue";

impl FromStr for Scope {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, ParseError> {
        let text = text.trim();
        match text {
            "*" => return Ok(Scope::All),
            "admin" => return Ok(Scope::Admin),
            _ => {}
        }
        let bad = || ParseError::new(format!("invalid scope {text:?}: {SCOPE_RULE}"));
        let (primitive, access) = text.split_once(':').ok_or_else(bad)?;
        let primitive = Primitive::ALL
            .into_iter()
            .find(|p| p.as_str() == primitive)
            .ok_or_else(bad)?;
        let access = match access {
            "read" => Access::Read,
            "write" => Access::Write,
            _ => return Err(bad()),
        };
        Ok(Scope::Primitive(primitive, access))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("*"),
            Scope::Admin => f.write_str("admin"),
            Scope::Primitive(p, a) => write!(f, "{}:{}", p.as_str(), a.as_str()),
        }
    }
}

/// A token's scopes: a comma-separated list (`lease:write,kv:read`), never empty, kept
/// sorted and without repeats so two spellings of one set compare and store alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Every scope (`*`).
    pub fn all() -> Scopes {
        Scopes(vec![Scope::All])
    }

    /// Every `<primitive>:write` (so every read too), but not `admin`: what a token gets
    /// when its creator names no scope.
    pub fn every_write() -> Scopes {
        Scopes(
            Primitive::ALL
                .into_iter()
                .map(|p| Scope::Primitive(p, Access::Write))
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether these scopes allow `access` to `primitive` (write includes read).
    pub fn allows(&self, primitive: Primitive, access: Access) -> bool {
        self.0.iter().any(|scope| match *scope {
            Scope::All => true,
            Scope::Admin => false,
            Scope::Primitive(p, a) => p == primitive && (a == access || a == Access::Write),
        })
    }

    /// Whether these scopes include `admin` (or `*`).
    pub fn admin(&self) -> bool {
        self.0.iter().any(|scope| matches!(scope, Scope::All | Scope::Admin))
    }
}

impl FromStr for Scopes {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, ParseError> {
        let mut scopes = text
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(Scope::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        if scopes.is_empty() {
            return Err(ParseError::new(format!(
                "invalid scopes {text:?}: it is empty; {SCOPE_RULE}"
            )));
        }
        scopes.sort();
        scopes.dedup();
        Ok(Scopes(scopes))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}

/// The namespaces a token reaches: `*` (all) or a comma-separated list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespaces {
    Any,
    Only(Vec<Namespace>),
}

impl Namespaces {
    pub fn contains(&self, namespace: &Namespace) -> bool {
        match self {
            Namespaces::Any => true,
            Namespaces::Only(list) => list.contains(namespace),
        }
    }
}

impl FromStr for Namespaces {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, ParseError> {
        if text.trim() == "*" {
            return Ok(Namespaces::Any);
        }
        let mut list = text
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(|part| Namespace::parse(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(ParseError::new(format!(
                "invalid namespaces {text:?}: expected `*` or a comma-separated list of namespaces"
            )));
        }
        list.sort();
        list.dedup();
        Ok(Namespaces::Only(list))
    }
}

impl fmt::Display for Namespaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Namespaces::Any => f.write_str("*"),
            Namespaces::Only(list) => {
                for (i, ns) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(ns)?;
                }
                Ok(())
            }
        }
    }
}

/// Who a request comes from: a checked token's name and what it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (`--name` of `arbiter token create`); never the secret.
    pub name: String,
    pub namespaces: Namespaces,
    pub scopes: Scopes,
}

impl Principal {
    /// The caller of a front end that talks to the store itself (the CLI, `arbiter mcp`
    /// over stdio) or of a server started with `--insecure-no-auth`: it reaches everything,
    /// as whoever can open the store can.
    pub fn local() -> Principal {
        Principal {
            name: "local".to_string(),
            namespaces: Namespaces::Any,
            scopes: Scopes::all(),
        }
    }

    /// Allows `access` to `primitive` in `namespace`, or says what the token lacks.
    pub fn check(&self, namespace: &Namespace, primitive: Primitive, access: Access) -> Result<(), Error> {
        if !self.namespaces.contains(namespace) {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!("token {:?} does not reach namespace {namespace:?}", self.name),
            ));
        }
        if !self.scopes.allows(primitive, access) {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "token {:?} lacks scope {}:{} (it has {})",
                    self.name,
                    primitive.as_str(),
                    access.as_str(),
                    self.scopes
                ),
            ));
        }
        Ok(())
    }

    /// Allows what only `admin` may do (tokens, the store, channels), or says it is missing.
    pub fn check_admin(&self) -> Result<(), Error> {
        if self.scopes.admin() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Forbidden,
                format!("token {:?} lacks scope admin (it has {})", self.name, self.scopes),
            ))
        }
    }
}

/// What every secret starts with, so a leaked one is recognisable (secret scanners, logs).
pub const SECRET_PREFIX: &str = "arb_";

const TOKEN_NAME_RULE: &str = "1-63 characters of a-z, 0-9, - and _";

/// Checks a token's name (`--name` of `arbiter token create`): it shows in audits, logs and
/// as a lease holder's default agent, so it is kept as plain as a namespace.
pub fn validate_token_name(name: &str) -> Result<(), ParseError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ParseError::new(format!(
            "invalid token name {name:?}: allowed: {TOKEN_NAME_RULE}"
        )))
    }
}

/// What the store keeps of a secret: its SHA-256 in lowercase hex. A secret is 32 random
/// bytes, so a plain hash (no salt, no slow KDF) is enough: nobody can guess the input.
pub fn secret_hash(secret: &str) -> String {
    crate::decisions::digest(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(text: &str) -> Namespace {
        Namespace::parse(text).unwrap()
    }

    #[test]
    fn scopes_parse_sorted_and_deduplicated() {
        let scopes: Scopes = "kv:read, lease:write,kv:read".parse().unwrap();
        assert_eq!(scopes.to_string(), "lease:write,kv:read");
        assert_eq!("*".parse::<Scopes>().unwrap(), Scopes::all());
        for bad in ["", ",", "lease", "lease:admin", "queues:read", "kv:read,nope"] {
            let err = bad.parse::<Scopes>().unwrap_err();
            assert!(err.message.contains("scope"), "{bad:?}: {}", err.message);
        }
    }

    #[test]
    fn write_includes_read_and_nothing_else() {
        let scopes: Scopes = "lease:write,kv:read".parse().unwrap();
        assert!(scopes.allows(Primitive::Lease, Access::Read));
        assert!(scopes.allows(Primitive::Lease, Access::Write));
        assert!(scopes.allows(Primitive::Kv, Access::Read));
        assert!(!scopes.allows(Primitive::Kv, Access::Write));
        assert!(!scopes.allows(Primitive::Log, Access::Read));
        assert!(!scopes.admin());
        let admin: Scopes = "admin".parse().unwrap();
        assert!(admin.admin());
        assert!(
            !admin.allows(Primitive::Kv, Access::Read),
            "admin is not every primitive"
        );
        assert!(Scopes::all().admin() && Scopes::all().allows(Primitive::Status, Access::Write));
        let every = Scopes::every_write();
        assert!(!every.admin() && Primitive::ALL.iter().all(|p| every.allows(*p, Access::Write)));
        assert_eq!(every.to_string().parse::<Scopes>().unwrap(), every, "sorted as parsed");
        let queue: Scopes = "queue:read".parse().unwrap();
        assert!(queue.allows(Primitive::Queue, Access::Read) && !queue.allows(Primitive::Queue, Access::Write));
        assert_eq!(queue.to_string(), "queue:read");
        assert!(
            every.allows(Primitive::Queue, Access::Write),
            "a default token works queues"
        );
    }

    #[test]
    fn a_principal_reaches_only_its_namespaces_and_scopes() {
        let p = Principal {
            name: "agent".into(),
            namespaces: "a,b".parse().unwrap(),
            scopes: "kv:read".parse().unwrap(),
        };
        assert!(p.check(&ns("a"), Primitive::Kv, Access::Read).is_ok());
        let err = p.check(&ns("c"), Primitive::Kv, Access::Read).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Forbidden);
        assert!(err.message.contains("namespace \"c\""), "{}", err.message);
        let err = p.check(&ns("a"), Primitive::Kv, Access::Write).unwrap_err();
        assert!(err.message.contains("kv:write"), "{}", err.message);
        assert_eq!(p.check_admin().unwrap_err().kind, ErrorKind::Forbidden);
        assert!(
            Principal::local()
                .check(&ns("zz"), Primitive::Lease, Access::Write)
                .is_ok()
        );
        assert_eq!("*".parse::<Namespaces>().unwrap(), Namespaces::Any);
        assert!("a,,Bad".parse::<Namespaces>().is_err());
    }

    #[test]
    fn token_names_are_plain() {
        assert!(validate_token_name("agent-1_x").is_ok());
        for bad in ["", "Agent", "a b", "a/b", &"x".repeat(64)] {
            let err = validate_token_name(bad).unwrap_err();
            assert!(err.message.contains("token name"), "{bad:?}: {}", err.message);
        }
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
