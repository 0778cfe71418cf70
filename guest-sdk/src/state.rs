//! Durable keyed state, scoped to the deployment and the partition (`docs/abi.md`, "State").
//!
//! What a handler writes is applied together with its offset: after a crash the handler
//! sees exactly the state of the last committed record, so a record handled again never
//! applies its change twice. Within an invocation a handler reads its own writes. Keys are
//! non-empty byte strings of at most 32 KiB; values are bytes, with JSON helpers.
//!
//! ```no_run
//! use rill_guest::prelude::*;
//!
//! fn count(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
//!     let key = rec.key().unwrap_or(b"none");
//!     let seen: u64 = ctx.state().get_json(key)?.unwrap_or(0);
//!     ctx.state().put_json(key, &(seen + 1))
//! }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::abi;
use crate::{Error, Result};

/// The state of this instance's partition. Get it with [`crate::Context::state`].
#[derive(Debug, Default)]
pub struct State {
    /// Scratch buffer for values read.
    buf: Vec<u8>,
    /// Serialized JSON for `put_json`.
    json: Vec<u8>,
}

/// `state_*` result: the key is empty or too long.
const STATE_ERR_KEY: i32 = -3;

fn key_error(key: &[u8]) -> Error {
    Error::msg(format_args!(
        "invalid state key of {} bytes: keys are 1 to 32768 bytes",
        key.len()
    ))
}

impl State {
    /// The value of `key`, if it has one.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_ref(key)?.map(<[u8]>::to_vec))
    }

    /// The value of `key`, borrowed from a scratch buffer until the next call.
    pub fn get_ref(&mut self, key: &[u8]) -> Result<Option<&[u8]>> {
        if self.buf.len() < 256 {
            self.buf.resize(256, 0);
        }
        loop {
            let n = abi::state_get(key, &mut self.buf);
            match n {
                -1 => return Ok(None),
                STATE_ERR_KEY => return Err(key_error(key)),
                n if n < 0 => {
                    return Err(Error::msg(format_args!("state_get failed with code {n}")));
                }
                n if n as usize <= self.buf.len() => return Ok(Some(&self.buf[..n as usize])),
                n => self.buf.resize(n as usize, 0),
            }
        }
    }

    /// The value of `key` decoded from JSON, if it has one.
    pub fn get_json<T: DeserializeOwned>(&mut self, key: &[u8]) -> Result<Option<T>> {
        match self.get_ref(key)? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(v)?)),
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        check(key, abi::state_put(key, Some(value)))
    }

    /// Sets `key` to `value` serialized as JSON.
    pub fn put_json<T: Serialize + ?Sized>(&mut self, key: &[u8], value: &T) -> Result<()> {
        self.json.clear();
        serde_json::to_writer(&mut self.json, value)?;
        check(key, abi::state_put(key, Some(&self.json)))
    }

    /// Removes `key` (a tombstone in the changelog).
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        check(key, abi::state_put(key, None))
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub fn scan_prefix(&mut self, prefix: &[u8]) -> Scan {
        Scan::new(prefix.to_vec(), prefix_end(prefix))
    }

    /// The entries whose keys are in `[from, to)` (`to = None`: to the end), in key order.
    pub fn range(&mut self, from: &[u8], to: Option<&[u8]>) -> Scan {
        Scan::new(from.to_vec(), to.map(<[u8]>::to_vec))
    }
}

fn check(key: &[u8], rc: i32) -> Result<()> {
    match rc {
        0 => Ok(()),
        STATE_ERR_KEY => Err(key_error(key)),
        n => Err(Error::msg(format_args!("state_put failed with code {n}"))),
    }
}

/// The first key after every key starting with `prefix`; `None` if there is none (the
/// prefix is empty or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// An iterator over state entries, fetched from the host a page at a time.
#[derive(Debug)]
pub struct Scan {
    from: Vec<u8>,
    to: Option<Vec<u8>>,
    page: Vec<u8>,
    at: usize,
    filled: usize,
    done: bool,
}

impl Scan {
    fn new(from: Vec<u8>, to: Option<Vec<u8>>) -> Scan {
        Scan {
            from,
            to,
            page: vec![0; 16 << 10],
            at: 0,
            filled: 0,
            done: false,
        }
    }

    fn fetch(&mut self) -> Result<()> {
        loop {
            let n = abi::state_scan(&self.from, self.to.as_deref(), &mut self.page);
            if n >= 0 {
                self.at = 0;
                self.filled = n as usize;
                self.done = n == 0;
                return Ok(());
            }
            if n > -9 {
                return Err(Error::msg(format_args!("state_scan failed with code {n}")));
            }
            self.page.resize((-(n as i64)) as usize, 0);
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

impl Iterator for Scan {
    /// A key and its value.
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.at >= self.filled {
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
            if self.done {
                return None;
            }
        }
        let b = &self.page[..self.filled];
        let kl = u32_at(b, self.at);
        let key = b[self.at + 4..self.at + 4 + kl].to_vec();
        let v = self.at + 4 + kl;
        let vl = u32_at(b, v);
        let value = b[v + 4..v + 4 + vl].to_vec();
        self.at = v + 4 + vl;
        // The next page starts just after this key.
        self.from.clear();
        self.from.extend_from_slice(&key);
        self.from.push(0);
        Some(Ok((key, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
