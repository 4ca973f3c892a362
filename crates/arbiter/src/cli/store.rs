//! `arbiter store …`: which store, and its schema.

use arbiter_core::Result;
use clap::Subcommand;

use super::Global;
use super::output::Output;
use crate::exit;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Print the backend, its location and the schema version.
    Info,
    /// Create the store if needed and apply pending schema migrations (every command does
    /// this on open; this one does only that).
    Migrate,
}

pub async fn run(command: StoreCommand, global: &Global, out: Output) -> Result<i32> {
    // `migrate` is refused with --server (see `target::local_only`): it is the store's.
    let info = global.target().await?.store_info().await?;
    match command {
        StoreCommand::Info | StoreCommand::Migrate => {
            if out.json {
                out.print_json(&info);
            } else {
                println!("backend: {}", info.backend);
                println!("location: {}", info.location);
                println!("schema version: {}", info.schema_version);
            }
        }
    }
    Ok(exit::SUCCESS)
}
