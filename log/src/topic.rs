//! Topics: a name, a persisted config and a fixed set of partitions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::TopicConfig;
use crate::error::{OpenError, TopicError};
use crate::io::{Io, write_file_atomic};
use crate::partition::{Ctx, Partition, partition_dir};
use crate::partitioner::murmur2_partition;
use crate::recovery::{RecoveryEvent, open_partition};

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
        let mut events = Vec::new();
        Self::open_partitions(dir, name, config, ctx, true, &mut events)
            .map_err(|(path, source)| TopicError::Io { path, source })
    }

    /// Reads `topic.toml` in `dir` and recovers every partition.
    pub(crate) fn load(
        dir: PathBuf,
        name: &str,
        ctx: &Ctx,
        clean: bool,
        events: &mut Vec<RecoveryEvent>,
    ) -> Result<Topic, OpenError> {
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
        Self::open_partitions(dir, name, file.config, ctx, clean, events)
            .map_err(|(path, source)| OpenError::Io { path, source })
    }

    fn open_partitions(
        dir: PathBuf,
        name: &str,
        config: TopicConfig,
        ctx: &Ctx,
        clean: bool,
        events: &mut Vec<RecoveryEvent>,
    ) -> Result<Topic, (PathBuf, std::io::Error)> {
        let mut partitions = Vec::with_capacity(config.partitions as usize);
        for id in 0..config.partitions {
            let pdir = partition_dir(&dir, id);
            let p = open_partition(
                name,
                id,
                pdir.clone(),
                ctx.clone(),
                config.clone(),
                clean,
                events,
            )
            .map_err(|e| (pdir, e))?;
            partitions.push(Arc::new(p));
        }
        Ok(Topic {
            name: name.to_string(),
            config,
            partitions,
            round_robin: AtomicU32::new(0),
            dir,
        })
    }

    /// Closes every partition (flush, trim indexes).
    pub(crate) fn close(&self) -> Result<(), (PathBuf, std::io::Error)> {
        for p in &self.partitions {
            p.close().map_err(|e| (p.dir.clone(), e))?;
        }
        Ok(())
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
