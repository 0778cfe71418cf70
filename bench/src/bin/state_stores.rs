//! Which local store a partition's durable state lives in: an in-memory ordered map, or an
//! embedded store (redb, fjall), measured on the three things Rill asks of it
//! (docs/state.md, docs/benchmarks.md "Durable state"):
//!
//! - **commit**: apply one invocation's changes (100 puts) once they are durable in the
//!   changelog. The changelog is the durable copy, so the embedded stores are given their
//!   cheapest durability (redb `Durability::None`, fjall without a journal sync).
//! - **get**: a guest's read of an existing key, in a read transaction of 100 gets.
//! - **load**: build the store from 1,000,000 entries read from the changelog (a restore).
//!
//! The in-memory map is the runtime's: a `BTreeMap<StateKey, Vec<u8>>` behind a `RwLock`.
//!
//! `cargo run --release -p rill-bench --bin state-stores [-- --keys N]`

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Instant;

use anyhow::Result;
use redb::TableDefinition;
use rill_engine::{KeyBytes, StateKey};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
const BATCH: usize = 100;

/// A deterministic key stream over `keys` keys (xorshift).
struct Keys {
    x: u64,
    keys: u64,
}

impl Keys {
    fn next(&mut self) -> [u8; 8] {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        (self.x % self.keys).to_be_bytes()
    }
}

fn value(i: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

struct Figures {
    name: &'static str,
    load_s: f64,
    commit_ns_per_put: f64,
    get_ns: f64,
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64())
}

fn btree(keys: u64, ops: usize) -> Figures {
    let map = RwLock::new(BTreeMap::<StateKey, Vec<u8>>::new());
    let ((), load_s) = time(|| {
        let mut m = map.write().unwrap();
        for i in 0..keys {
            m.insert(StateKey::new(&i.to_be_bytes()), value(i).to_vec());
        }
    });
    let mut k = Keys {
        x: 88172645463325252,
        keys,
    };
    let ((), commit) = time(|| {
        for b in 0..ops / BATCH {
            let mut m = map.write().unwrap();
            for j in 0..BATCH {
                let key = k.next();
                let v = value((b * BATCH + j) as u64);
                match m.get_mut(KeyBytes::new(&key)) {
                    Some(old) => {
                        old.clear();
                        old.extend_from_slice(&v);
                    }
                    None => {
                        m.insert(StateKey::new(&key), v.to_vec());
                    }
                }
            }
        }
    });
    let mut found = 0usize;
    let ((), get) = time(|| {
        for _ in 0..ops {
            let key = k.next();
            let m = map.read().unwrap();
            found += m.get(KeyBytes::new(&key)).map_or(0, Vec::len);
        }
    });
    assert!(found > 0);
    Figures {
        name: "BTreeMap<StateKey> in memory (Rill's)",
        load_s,
        commit_ns_per_put: commit * 1e9 / ops as f64,
        get_ns: get * 1e9 / ops as f64,
    }
}

fn redb_store(keys: u64, ops: usize) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let db = redb::Database::create(dir.path().join("state.redb"))?;
    let ((), load_s) = {
        let t = Instant::now();
        let mut w = db.begin_write()?;
        w.set_durability(redb::Durability::None);
        {
            let mut table = w.open_table(TABLE)?;
            for i in 0..keys {
                table.insert(&i.to_be_bytes()[..], &value(i)[..])?;
            }
        }
        w.commit()?;
        ((), t.elapsed().as_secs_f64())
    };
    let mut k = Keys {
        x: 88172645463325252,
        keys,
    };
    let t = Instant::now();
    for b in 0..ops / BATCH {
        let mut w = db.begin_write()?;
        w.set_durability(redb::Durability::None);
        {
            let mut table = w.open_table(TABLE)?;
            for j in 0..BATCH {
                let key = k.next();
                table.insert(&key[..], &value((b * BATCH + j) as u64)[..])?;
            }
        }
        w.commit()?;
    }
    let commit = t.elapsed().as_secs_f64();
    let mut found = 0usize;
    let t = Instant::now();
    for _ in 0..ops / BATCH {
        let r = db.begin_read()?;
        let table = r.open_table(TABLE)?;
        for _ in 0..BATCH {
            let key = k.next();
            found += table.get(&key[..])?.map_or(0, |v| v.value().len());
        }
    }
    let get = t.elapsed().as_secs_f64();
    assert!(found > 0);
    Ok(Figures {
        name: "redb 2 (Durability::None)",
        load_s,
        commit_ns_per_put: commit * 1e9 / ops as f64,
        get_ns: get * 1e9 / ops as f64,
    })
}

fn fjall_store(keys: u64, ops: usize) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let ks = fjall::Config::new(dir.path()).open()?;
    let part = ks.open_partition("state", fjall::PartitionCreateOptions::default())?;
    let t = Instant::now();
    {
        let mut batch = ks.batch();
        for i in 0..keys {
            batch.insert(&part, i.to_be_bytes(), value(i));
        }
        batch.commit()?;
    }
    let load_s = t.elapsed().as_secs_f64();
    let mut k = Keys {
        x: 88172645463325252,
        keys,
    };
    let t = Instant::now();
    for b in 0..ops / BATCH {
        let mut batch = ks.batch();
        for j in 0..BATCH {
            batch.insert(&part, k.next(), value((b * BATCH + j) as u64));
        }
        batch.commit()?;
    }
    let commit = t.elapsed().as_secs_f64();
    let mut found = 0usize;
    let t = Instant::now();
    for _ in 0..ops {
        found += part.get(k.next())?.map_or(0, |v| v.len());
    }
    let get = t.elapsed().as_secs_f64();
    assert!(found > 0);
    Ok(Figures {
        name: "fjall 2 (no journal sync)",
        load_s,
        commit_ns_per_put: commit * 1e9 / ops as f64,
        get_ns: get * 1e9 / ops as f64,
    })
}

fn main() -> Result<()> {
    let mut keys: u64 = 1_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--keys" => keys = args.next().and_then(|v| v.parse().ok()).unwrap_or(keys),
            other => anyhow::bail!("unknown argument {other:?} (use --keys N)"),
        }
    }
    let ops = 1_000_000;
    println!(
        "{keys} keys of 8 bytes, values of 16 bytes; {ops} random puts in commits of {BATCH}, \
         {ops} random gets"
    );
    println!(
        "{:<38} {:>10} {:>18} {:>10}",
        "store", "load (s)", "commit (ns/put)", "get (ns)"
    );
    for f in [
        btree(keys, ops),
        redb_store(keys, ops)?,
        fjall_store(keys, ops)?,
    ] {
        println!(
            "{:<38} {:>10.2} {:>18.0} {:>10.0}",
            f.name, f.load_s, f.commit_ns_per_put, f.get_ns
        );
    }
    Ok(())
}
