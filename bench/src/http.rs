//! A minimal keep-alive HTTP/1.1 JSON client over one `TcpStream` with `TCP_NODELAY`, for
//! the latency scenario. Each request goes out in a single write, so neither Nagle's
//! algorithm nor delayed ACKs can add tens of milliseconds to what is being measured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use anyhow::{Context, bail};

/// One connection to the admin API.
#[derive(Debug)]
pub struct Conn {
    host: String,
    reader: BufReader<TcpStream>,
    out: Vec<u8>,
}

impl Conn {
    /// Connects to `base` (`http://127.0.0.1:PORT`).
    pub fn connect(base: &str) -> anyhow::Result<Conn> {
        let host = base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let s = TcpStream::connect(&host).with_context(|| format!("cannot connect to {host}"))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            host,
            reader: BufReader::with_capacity(1 << 16, s),
            out: Vec::with_capacity(1 << 16),
        })
    }

    /// `POST path` with a JSON body; returns the response body.
    pub fn post(&mut self, path: &str, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.out.clear();
        write!(
            self.out,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )?;
        self.out.extend_from_slice(body);
        self.reader.get_mut().write_all(&self.out)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut len = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse::<usize>().ok();
            }
        }
        let len = len.context("response without Content-Length")?;
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body)?;
        if status >= 400 {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }
}
