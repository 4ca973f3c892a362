//! The file a fleet's scripts would share: every client opens it for appending (`O_APPEND`
//! on Unix, `FILE_APPEND_DATA` on Windows: each write goes to the current end), writes one
//! line with one `write`, and calls `fdatasync` (`sync_data`) before counting the line as
//! appended. No lock: one `write` of one short line lands whole at the end on a local file
//! system. What it does not give: offsets, readers that can resume, idempotency, or a
//! guarantee for lines longer than one `write`.
//!
//! The write and the `fdatasync` run on tokio's blocking pool, so clients sharing a worker
//! process (`--processes`) do not wait for each other's.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::spec::Targets;

pub struct FileClient {
    dir: PathBuf,
    id: u32,
    /// The stream's file, opened on the first append.
    open: Option<(String, Arc<File>)>,
}

impl FileClient {
    pub fn open(targets: &Targets, id: u32) -> Result<FileClient> {
        Ok(FileClient {
            dir: PathBuf::from(&targets.file_dir),
            id,
            open: None,
        })
    }

    /// One file per stream, named after it.
    fn path(dir: &Path, stream: &str) -> PathBuf {
        let name: String = stream
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        dir.join(format!("{name}.log"))
    }

    pub async fn append(&mut self, stream: &str, body: &str) -> Result<()> {
        if body.contains('\n') {
            bail!("a record is one line");
        }
        if self.open.as_ref().is_none_or(|(name, _)| name != stream) {
            let path = Self::path(&self.dir, stream);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            self.open = Some((stream.to_string(), Arc::new(file)));
        }
        let Some((_, file)) = self.open.as_ref() else {
            bail!("the stream's file is not open");
        };
        let file = Arc::clone(file);
        let line = format!("bench-{} {body}\n", self.id);
        tokio::task::spawn_blocking(move || {
            (&*file).write_all(line.as_bytes())?;
            file.sync_data()
        })
        .await??;
        Ok(())
    }

    /// Lines in the stream's file.
    pub fn count_records(&mut self, stream: &str) -> Result<u64> {
        let path = Self::path(&self.dir, stream);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut lines = 0;
        for line in BufReader::new(file).lines() {
            line?;
            lines += 1;
        }
        Ok(lines)
    }
}
