//! The parts of `scripts/bench.sh` that wrk cannot do, in one small client (HTTP/1.1 over plain
//! TCP, keep-alive, no pipelining):
//!
//! - `fill`: closed-loop send-code to `count` distinct numbers, writing each number with the
//!   `authenticationId` it was answered with (wrk cannot tie an answer to its request), so the
//!   benchmark has a pool of live challenges to validate and a store of known size to weigh;
//! - `open`: open-loop latency at a fixed arrival rate. Request `i` is due at `start + i/rate`
//!   on connection `i mod connections` (wrk2's schedule). When a request goes out late because
//!   its connection was still waiting for the previous answer, its latency counts from when it
//!   was due, so a stalled server cannot hide its queue (no coordinated omission); when it goes
//!   out late only because this client's 1 ms timer woke late, it counts from when it was sent;
//! - `ready`: start-up time, from spawning a command to the first `200` of `/health/ready`.
//!
//! Output is one JSON object on stdout. Run `cargo run --release --example loadgen -- --help`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Load client of scripts/bench.sh")]
struct Cli {
    /// Runtime threads of `fill` and `open` (on a 2-core machine one thread tops out near
    /// 60,000 requests/s, below the echo server's half rate).
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Closed loop: send-code to `count` distinct numbers; writes `+NUMBER<TAB>ID` lines.
    Fill {
        #[arg(long)]
        addr: SocketAddr,
        /// Bearer token.
        #[arg(long)]
        token: String,
        /// First number (digits, no `+`); request i goes to first + i.
        #[arg(long)]
        first: u64,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 64)]
        connections: u64,
        /// Where the number/id pairs go.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Open loop at a fixed arrival rate; prints latency percentiles.
    Open {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        path: String,
        /// Bearer token (none for the echo server).
        #[arg(long)]
        token: Option<String>,
        /// Requests per second.
        #[arg(long)]
        rate: f64,
        /// Seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 64)]
        connections: u64,
        /// send-code bodies to distinct numbers from this one on (digits, no `+`).
        #[arg(long, conflicts_with = "bodies")]
        numbers_from: Option<u64>,
        /// One body per line, each sent once (e.g. validate-code bodies).
        #[arg(long)]
        bodies: Option<std::path::PathBuf>,
    },
    /// Spawns the command after `--` and polls `http://ADMIN/health/ready` until it answers 200.
    Ready {
        #[arg(long)]
        admin: SocketAddr,
        /// Start-ups measured; the figures are their minimum and median.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let out = match cli.command {
        Mode::Ready {
            admin,
            runs,
            command,
        } => ready(admin, runs, &command)?,
        mode => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads.max(1))
            .enable_all()
            .build()?
            .block_on(run(mode))?,
    };
    println!("{out}");
    Ok(())
}

async fn run(mode: Mode) -> anyhow::Result<Value> {
    match mode {
        Mode::Fill {
            addr,
            token,
            first,
            count,
            connections,
            out,
        } => fill(addr, &token, first, count, connections, &out).await,
        Mode::Open {
            addr,
            path,
            token,
            rate,
            duration,
            connections,
            numbers_from,
            bodies,
        } => {
            let bodies = match (numbers_from, bodies) {
                (Some(first), None) => Bodies::Numbers(first),
                (None, Some(file)) => Bodies::Lines(
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?
                        .lines()
                        .map(str::to_owned)
                        .collect(),
                ),
                (None, None) => Bodies::Echo,
                (Some(_), Some(_)) => bail!("--numbers-from and --bodies exclude each other"),
            };
            let target = Target {
                addr,
                path,
                auth: token
                    .map(|t| format!("Authorization: Bearer {t}\r\n"))
                    .unwrap_or_default(),
            };
            open_loop(
                Arc::new(target),
                Arc::new(bodies),
                rate,
                duration,
                connections,
            )
            .await
        }
        Mode::Ready { .. } => bail!("ready runs without a runtime"),
    }
}

fn send_code_body(number: u64) -> String {
    format!("{{\"phoneNumber\":\"+{number}\",\"message\":\"{{{{code}}}} is your code\"}}")
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends `request` and reads one answer: its status and body.
    async fn round_trip(&mut self, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let result = self.exchange(request).await;
        if result.is_err() {
            // A broken connection is not reused.
            self.stream = None;
            self.buf.clear();
        }
        result
    }

    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let stream = self.stream.as_mut().ok_or_else(|| anyhow!("no stream"))?;
        stream.write_all(request).await?;
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line"))?;
        let mut length = 0usize;
        let mut close = false;
        for line in head.split("\r\n").skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse()?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked answers are not supported");
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        while self.buf.len() < head_end + length {
            read_more(stream, &mut self.buf).await?;
        }
        let body = self.buf[head_end..head_end + length].to_vec();
        self.buf.drain(..head_end + length);
        if close {
            self.stream = None;
            self.buf.clear();
        }
        Ok((status, body))
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        bail!("connection closed");
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Target {
    addr: SocketAddr,
    path: String,
    /// The `Authorization` header line, or nothing.
    auth: String,
}

impl Target {
    fn request(&self, body: &str) -> Vec<u8> {
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\n\r\n{body}",
            self.path,
            self.addr,
            self.auth,
            body.len()
        )
        .into_bytes()
    }
}

/// Answers by class; only `ok` (2xx) counts as served.
#[derive(Default)]
struct Tally {
    ok: u64,
    client_error: u64,
    server_error: u64,
    other: u64,
    io_errors: u64,
}

impl Tally {
    fn add(&mut self, status: u16) {
        match status {
            200..=299 => self.ok += 1,
            400..=499 => self.client_error += 1,
            500..=599 => self.server_error += 1,
            _ => self.other += 1,
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.ok += o.ok;
        self.client_error += o.client_error;
        self.server_error += o.server_error;
        self.other += o.other;
        self.io_errors += o.io_errors;
    }

    fn json(&self) -> Value {
        json!({
            "ok_2xx": self.ok,
            "status_4xx": self.client_error,
            "status_5xx": self.server_error,
            "status_other": self.other,
            "io_errors": self.io_errors,
        })
    }
}

async fn fill(
    addr: SocketAddr,
    token: &str,
    first: u64,
    count: u64,
    connections: u64,
    out: &std::path::Path,
) -> anyhow::Result<Value> {
    let target = Arc::new(Target {
        addr,
        path: "/one-time-password-sms/v1/send-code".into(),
        auth: format!("Authorization: Bearer {token}\r\n"),
    });
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let target = Arc::clone(&target);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut conn = Conn::new(target.addr);
                let mut tally = Tally::default();
                let mut pairs = String::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let number = first + i;
                    match conn
                        .round_trip(&target.request(&send_code_body(number)))
                        .await
                    {
                        Ok((status, body)) => {
                            tally.add(status);
                            if status == 200 {
                                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                                if let Some(id) = v["authenticationId"].as_str() {
                                    pairs.push_str(&format!("+{number}\t{id}\n"));
                                }
                            }
                        }
                        Err(_) => tally.io_errors += 1,
                    }
                }
                (tally, pairs)
            })
        })
        .collect();
    let mut tally = Tally::default();
    let mut file = std::fs::File::create(out)?;
    for t in tasks {
        let (part, pairs) = t.await?;
        tally.merge(&part);
        file.write_all(pairs.as_bytes())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(json!({
        "mode": "fill",
        "requests": count,
        "seconds": elapsed,
        "ok_per_second": tally.ok as f64 / elapsed,
        "answers": tally.json(),
    }))
}

enum Bodies {
    /// The echo server's body.
    Echo,
    /// send-code to distinct numbers from this one.
    Numbers(u64),
    /// Prepared bodies, each sent once.
    Lines(Vec<String>),
}

impl Bodies {
    fn get(&self, i: u64) -> Option<String> {
        match self {
            Bodies::Echo => Some(send_code_body(34_600_000_000 + i % 1000)),
            Bodies::Numbers(first) => Some(send_code_body(first + i)),
            Bodies::Lines(lines) => usize::try_from(i).ok().and_then(|i| lines.get(i)).cloned(),
        }
    }
}

async fn open_loop(
    target: Arc<Target>,
    bodies: Arc<Bodies>,
    rate: f64,
    duration: f64,
    connections: u64,
) -> anyhow::Result<Value> {
    if rate <= 0.0 || duration <= 0.0 || connections == 0 {
        bail!("rate, duration and connections must be positive");
    }
    // Whole requests only: the last one is due before the end.
    let total = (rate * duration).floor() as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let tasks: Vec<_> = (0..connections)
        .map(|k| {
            let target = Arc::clone(&target);
            let bodies = Arc::clone(&bodies);
            tokio::spawn(async move {
                let mut conn = Conn::new(target.addr);
                let mut tally = Tally::default();
                let mut latencies_us: Vec<u32> = Vec::new();
                let mut exhausted = 0u64;
                let mut late_by_server = 0u64;
                let mut previous_done = start;
                let mut i = k;
                while i < total {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    i += connections;
                    let Some(body) = bodies.get(i - connections) else {
                        exhausted += 1;
                        continue;
                    };
                    let request = target.request(&body);
                    tokio::time::sleep_until(due).await;
                    let sent = tokio::time::Instant::now();
                    // Due while the previous answer was still outstanding: the wait is the
                    // server's and counts. Otherwise any lateness is this client's timer.
                    let origin = if previous_done > due {
                        late_by_server += 1;
                        due
                    } else {
                        sent
                    };
                    match conn.round_trip(&request).await {
                        Ok((status, _)) => tally.add(status),
                        Err(_) => tally.io_errors += 1,
                    }
                    let done = tokio::time::Instant::now();
                    previous_done = done;
                    let us = done.duration_since(origin).as_micros();
                    latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                }
                (tally, latencies_us, exhausted, late_by_server)
            })
        })
        .collect();
    let mut tally = Tally::default();
    let mut all = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut exhausted = 0;
    let mut late_by_server = 0;
    for t in tasks {
        let (part, lat, ex, late) = t.await?;
        tally.merge(&part);
        all.extend(lat);
        exhausted += ex;
        late_by_server += late;
    }
    let elapsed = (tokio::time::Instant::now() - start).as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all[idx.min(all.len() - 1)]) / 1000.0
    };
    Ok(json!({
        "mode": "open",
        "path": target.path,
        "rate": rate,
        "duration_s": duration,
        "connections": connections,
        "requests": all.len(),
        "achieved_per_second": all.len() as f64 / elapsed,
        "bodies_exhausted": exhausted,
        "sent_late_behind_an_answer": late_by_server,
        "answers": tally.json(),
        "latency_ms": {
            "p50": pct(0.50),
            "p90": pct(0.90),
            "p99": pct(0.99),
            "p99_9": pct(0.999),
            "max": pct(1.0),
        },
    }))
}

/// Milliseconds from spawn to the first 200 of `/health/ready`, per run.
fn ready(admin: SocketAddr, runs: usize, command: &[String]) -> anyhow::Result<Value> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| anyhow!("no command given"))?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {program}"))?;
        let result = loop {
            if started.elapsed() > Duration::from_secs(10) {
                break Err(anyhow!("not ready within 10 s"));
            }
            if let Ok(Some(status)) = child.try_wait() {
                break Err(anyhow!("exited before ready: {status}"));
            }
            if probe_ready(admin) {
                break Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let _ = child.kill();
        let _ = child.wait();
        times.push(result?.as_secs_f64() * 1e3);
        // Let the port be released before the next start.
        std::thread::sleep(Duration::from_millis(100));
    }
    times.sort_by(f64::total_cmp);
    Ok(json!({
        "mode": "ready",
        "runs_ms": times,
        "min_ms": times.first(),
        "median_ms": times.get(times.len() / 2),
    }))
}

fn probe_ready(admin: SocketAddr) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&admin, Duration::from_millis(50)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let request =
        format!("GET /health/ready HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}
