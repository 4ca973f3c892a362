//! arbiter-notify against a real HTTP receiver on loopback (`arbiter_testkit::receiver`): golden payloads
//! checked against each platform's documented shape (`golden`), signed webhooks verified
//! at the receiver (`signature`), and delivery end to end — routing, storm folding, an
//! outage of every kind, dead letters and retry, rate limits, channels independent of each
//! other, digests — on both store backends (`delivery`).

mod delivery;
mod golden;
mod signature;
mod support;
