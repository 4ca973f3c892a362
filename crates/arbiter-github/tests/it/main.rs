//! The proxy against the fake GitHub (`arbiter-fake-github`) on loopback, over real stores.

mod cache;
mod gh;
mod graphql;
mod limits;
mod listen;
mod support;
