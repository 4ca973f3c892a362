//! Work items on postgres (SCAFFOLDING: replaced by the store branch; every method fails).

use std::time::Duration;

use arbiter_core::name::{Capability, Namespace, QueueName};
use arbiter_core::queue::{
    ClaimRequest, Claimed, FailRequest, HostRecord, Item, ItemInfo, ItemState, NewItem, Pushed, QueueStats,
};
use arbiter_core::{Error, ErrorKind, Millis, Result};
use async_trait::async_trait;

use super::PgStore;
use crate::QueueStore;
use crate::schema::Migration;

pub(super) const MIGRATIONS: &[Migration] = &[];

fn unbuilt<T>() -> Result<T> {
    Err(Error::new(
        ErrorKind::Internal,
        "the queue is not built on this backend yet",
    ))
}

#[async_trait]
impl QueueStore for PgStore {
    async fn push(&self, _item: &NewItem) -> Result<Pushed> {
        unbuilt()
    }
    async fn claim(&self, _request: &ClaimRequest) -> Result<Claimed> {
        unbuilt()
    }
    async fn heartbeat(
        &self,
        _ns: &Namespace,
        _id: i64,
        _token: i64,
        _lease: Duration,
        _pgid: Option<u32>,
    ) -> Result<Item> {
        unbuilt()
    }
    async fn done(&self, _ns: &Namespace, _id: i64, _token: i64, _result: Option<&str>) -> Result<Item> {
        unbuilt()
    }
    async fn fail(&self, _request: &FailRequest) -> Result<Item> {
        unbuilt()
    }
    async fn retry(&self, _ns: &Namespace, _id: i64) -> Result<Item> {
        unbuilt()
    }
    async fn cancel(&self, _ns: &Namespace, _queue: &QueueName, _key: &str) -> Result<Option<Item>> {
        unbuilt()
    }
    async fn list(
        &self,
        _ns: &Namespace,
        _queue: Option<&QueueName>,
        _state: Option<ItemState>,
        _limit: usize,
    ) -> Result<Vec<Item>> {
        unbuilt()
    }
    async fn show(&self, _ns: &Namespace, _id: i64) -> Result<ItemInfo> {
        unbuilt()
    }
    async fn stats(&self, _ns: &Namespace) -> Result<(Millis, Vec<QueueStats>)> {
        unbuilt()
    }
    async fn unalerted_dead(&self, _ns: &Namespace, _limit: usize) -> Result<Vec<Item>> {
        unbuilt()
    }
    async fn mark_alerted(&self, _ns: &Namespace, _ids: &[i64]) -> Result<()> {
        unbuilt()
    }
    async fn register_host(&self, _ns: &Namespace, _host: &str, _capabilities: &[Capability]) -> Result<()> {
        unbuilt()
    }
    async fn hosts(&self, _ns: &Namespace) -> Result<(Millis, Vec<HostRecord>)> {
        unbuilt()
    }
}
