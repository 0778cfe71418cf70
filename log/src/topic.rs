//! Topics: a name, a persisted config and a fixed set of partitions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::TopicConfig;
use crate::error::{OpenError, StorageError, TopicError};
use crate::io::{Io, write_file_atomic};
use crate::partition::{Ctx, Partition, partition_dir};
use crate::partitioner::murmur2_partition;
use crate::recovery::{Job, open_all};

/// On-disk format version recorded in every `topic.toml`.
pub const FORMAT_VERSION: u32 = 1;

/// The contents of `topic.toml`.
#[derive(Debug, Serialize, Deserialize)]
struct TopicFile {
    format_version: u32,
    config: TopicConfig,
}

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    name: String,
    config: TopicConfig,
    partitions: Vec<Arc<Partition>>,
    round_robin: AtomicU32,
    pub(crate) dir: PathBuf,
}

/// Whether `name` is a valid topic name: 1..=249 of `[A-Za-z0-9._-]`, not "." or "..".
pub fn valid_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Topic {
    /// Topic name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Topic config.
    pub fn config(&self) -> &TopicConfig {
        &self.config
    }
    /// All partitions, indexed by id.
    pub fn partitions(&self) -> &[Arc<Partition>] {
        &self.partitions
    }
    /// Partition `i`, if it exists.
    pub fn partition(&self, i: u32) -> Option<&Arc<Partition>> {
        self.partitions.get(i as usize)
    }
    /// The partition for a record: Kafka's murmur2 placement for a key, round-robin without.
    pub fn partition_for_key(&self, key: Option<&[u8]>) -> u32 {
        let n = self.partitions.len() as u32;
        if n <= 1 {
            return 0;
        }
        match key {
            Some(k) => murmur2_partition(k, n),
            None => self.round_robin.fetch_add(1, Ordering::Relaxed) % n.max(1),
        }
    }

    /// Creates the topic directory, writes `topic.toml` atomically and opens empty partitions.
    pub(crate) fn create(
        dir: PathBuf,
        name: &str,
        config: TopicConfig,
        ctx: &Ctx,
    ) -> Result<Topic, TopicError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TopicError::Io { path, source }
        };
        ctx.io.create_dir_all(&dir).map_err(io_err(&dir))?;
        let text = toml::to_string(&TopicFile {
            format_version: FORMAT_VERSION,
            config: config.clone(),
        })
        .map_err(|e| TopicError::InvalidConfig(e.to_string()))?;
        let cfg_path = dir.join("topic.toml");
        write_file_atomic(&*ctx.io, &cfg_path, text.as_bytes()).map_err(io_err(&cfg_path))?;
        if let Some(parent) = dir.parent() {
            ctx.io.sync_dir(parent).map_err(io_err(parent))?;
        }
        let jobs = (0..config.partitions)
            .map(|id| Job {
                topic: name.to_string(),
                id,
                dir: partition_dir(&dir, id),
                config: config.clone(),
                checkpoint: None,
                producers: None,
            })
            .collect();
        let mut partitions = Vec::with_capacity(config.partitions as usize);
        for (pdir, opened) in open_all(jobs, ctx, 1) {
            let opened = opened.map_err(|source| TopicError::Io { path: pdir, source })?;
            partitions.push(Arc::new(opened.partition));
        }
        // The partition directories' entries; each partition fsyncs its own directory (and
        // so its first segment's files) before its first fsync.
        ctx.io.sync_dir(&dir).map_err(io_err(&dir))?;
        Ok(Topic::from_parts(dir, name, config, partitions))
    }

    /// Adds partitions up to `count`: opens the new (empty) partition directories, then
    /// rewrites `topic.toml` atomically with the new count. The config file is the commit
    /// point: a crash before it leaves unused empty directories that the next open ignores
    /// (and a later grow reuses). Returns the grown topic; `self` keeps its old partitions.
    pub(crate) fn grow(&self, count: u32, ctx: &Ctx) -> Result<Topic, TopicError> {
        let old = self.partitions.len() as u32;
        let mut config = self.config.clone();
        config.partitions = count;
        config.validate().map_err(TopicError::InvalidConfig)?;
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TopicError::Io { path, source }
        };
        let jobs = (old..count)
            .map(|id| Job {
                topic: self.name.clone(),
                id,
                dir: partition_dir(&self.dir, id),
                config: config.clone(),
                checkpoint: None,
                producers: None,
            })
            .collect();
        let mut partitions = self.partitions.clone();
        for (pdir, opened) in open_all(jobs, ctx, 1) {
            let opened = opened.map_err(|source| TopicError::Io { path: pdir, source })?;
            partitions.push(Arc::new(opened.partition));
        }
        ctx.io.sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        let text = toml::to_string(&TopicFile {
            format_version: FORMAT_VERSION,
            config: config.clone(),
        })
        .map_err(|e| TopicError::InvalidConfig(e.to_string()))?;
        let cfg_path = self.dir.join("topic.toml");
        write_file_atomic(&*ctx.io, &cfg_path, text.as_bytes()).map_err(io_err(&cfg_path))?;
        Ok(Topic::from_parts(
            self.dir.clone(),
            &self.name,
            config,
            partitions,
        ))
    }

    /// Reads and checks `topic.toml` in `dir`.
    pub(crate) fn read_config(dir: &Path) -> Result<TopicConfig, OpenError> {
        let cfg_path = dir.join("topic.toml");
        let text = std::fs::read_to_string(&cfg_path).map_err(|source| OpenError::Io {
            path: cfg_path.clone(),
            source,
        })?;
        let bad = |reason: String| OpenError::BadTopicConfig {
            path: cfg_path.clone(),
            reason,
        };
        let file: TopicFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if file.format_version != FORMAT_VERSION {
            return Err(OpenError::UnsupportedVersion {
                path: cfg_path,
                found: file.format_version,
                supported: FORMAT_VERSION,
            });
        }
        file.config.validate().map_err(bad)?;
        Ok(file.config)
    }

    /// A topic of already opened partitions.
    pub(crate) fn from_parts(
        dir: PathBuf,
        name: &str,
        config: TopicConfig,
        partitions: Vec<Arc<Partition>>,
    ) -> Topic {
        Topic {
            name: name.to_string(),
            config,
            partitions,
            round_robin: AtomicU32::new(0),
            dir,
        }
    }

    /// Closes every partition (seal, fsync, trim indexes), even after one fails; returns the
    /// first error.
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        let mut first = Ok(());
        for p in &self.partitions {
            if let Err(e) = p.close() {
                tracing::error!(topic = %self.name, partition = p.id(), error = %e, "closing a partition failed");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Removes the topic's files.
    pub(crate) fn remove_files(&self, io: &dyn Io) -> std::io::Result<()> {
        io.remove_dir_all(&self.dir)?;
        match self.dir.parent() {
            Some(p) => io.sync_dir(p),
            None => Ok(()),
        }
    }
}
