//! Real Redis servers for tests: a single node, or a Cluster made with `redis-cli --cluster
//! create`, each on free loopback ports, each with its own temporary directory, stopped when
//! dropped. The Debian `redis-server` package provides both binaries (`.ci/run` installs it); a
//! missing binary is an error, never a skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer PING, and a Cluster to report `cluster_state:ok`.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// One `redis-server` process on 127.0.0.1.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a standalone server without persistence.
    pub fn start() -> std::io::Result<RedisServer> {
        RedisServer::spawn(&[])
    }

    /// Starts a standalone server on `port` (to bring one back where a killed one was).
    pub fn start_on(port: u16) -> std::io::Result<RedisServer> {
        RedisServer::spawn_on(port, &[])
    }

    /// Starts a server that also listens with TLS (certificate, key and the CA that signs
    /// client certificates, all PEM files) and requires client certificates; returns it and
    /// its TLS port.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> std::io::Result<(RedisServer, u16)> {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let tls_port = probe.local_addr()?.port();
        drop(probe);
        let tls_port_arg = tls_port.to_string();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let (cert, key, ca) = (path(cert), path(key), path(ca));
        let server = RedisServer::spawn(&[
            "--tls-port",
            &tls_port_arg,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "yes",
        ])?;
        Ok((server, tls_port))
    }

    fn spawn(extra: &[&str]) -> std::io::Result<RedisServer> {
        RedisServer::spawn_on(free_port_pair()?, extra)
    }

    fn spawn_on(port: u16, extra: &[&str]) -> std::io::Result<RedisServer> {
        let dir = std::env::temp_dir().join(format!("otpgw-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let port_arg = port.to_string();
        let mut args = vec![
            "--port",
            port_arg.as_str(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ];
        args.extend_from_slice(extra);
        let child = Command::new("redis-server")
            .args(&args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("redis-server (apt install redis-server): {e}"),
                )
            })?;
        let server = RedisServer {
            child,
            port,
            dir,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        server.wait_for(|| ping(port), "PING")?;
        Ok(server)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a killed server again on its port, directory and options, as an orchestrator
    /// restarts a crashed pod: a Cluster node rejoins with its `nodes.conf` (a failed-over
    /// master comes back as its successor's replica). Returns once it answers PING.
    pub fn restart(&mut self) -> std::io::Result<()> {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut again = RedisServer::spawn_on(self.port, &extra)?;
        std::mem::swap(self, &mut again);
        // `again` now holds the dead process; its directory is ours again, so keep it.
        again.dir = PathBuf::new();
        Ok(())
    }

    fn wait_for(&self, ready: impl Fn() -> bool, what: &str) -> std::io::Result<()> {
        let until = Instant::now() + READY_WITHIN;
        while Instant::now() < until {
            if ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::other(format!(
            "redis on port {} did not answer {what} in time",
            self.port
        )))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A Redis Cluster of `masters` masters, each with `replicas` replicas.
#[derive(Debug)]
pub struct RedisCluster {
    /// Every node, masters first as `redis-cli` assigns them.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes and joins them with `redis-cli --cluster create`.
    pub fn start(masters: usize, replicas: usize) -> std::io::Result<RedisCluster> {
        let nodes = (0..masters * (1 + replicas))
            .map(|_| {
                RedisServer::spawn(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        let cluster = RedisCluster { nodes };
        for node in &cluster.nodes {
            let port = node.port;
            node.wait_for(|| cluster_ok(port), "cluster_state:ok")?;
        }
        // `cluster_state:ok` comes before the replicas' first sync; until it ends a `WAIT`
        // counts no replica. Masters are listed first.
        for node in &cluster.nodes[masters..] {
            let port = node.port;
            node.wait_for(|| replica_synced(port), "master_link_status:up")?;
        }
        Ok(cluster)
    }

    /// `redis://` URLs of every node (any one is enough to discover the others).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// A port `p` such that `p` and its Cluster bus port `p + 10000` are both free now.
fn free_port_pair() -> std::io::Result<u16> {
    for _ in 0..200 {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = probe.local_addr()?.port();
        drop(probe);
        // Ports above 55535 have no room for the bus port; map them into 20000..50000.
        let port = if port > 55_000 {
            20_000 + port % 30_000
        } else {
            port
        };
        let free = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
        if free(port) && free(port + 10_000) {
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no free port pair for redis"))
}

fn command(port: u16, cmd: &str) -> Option<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(cmd.as_bytes()).ok()?;
    let mut reader = BufReader::new(s);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    // A bulk string: `$len`, then the payload.
    if let Some(len) = first
        .trim()
        .strip_prefix('$')
        .and_then(|l| l.parse::<usize>().ok())
    {
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).ok()?;
        return Some(String::from_utf8_lossy(&body).into_owned());
    }
    Some(first)
}

fn ping(port: u16) -> bool {
    command(port, "PING\r\n").is_some_and(|r| r.starts_with("+PONG"))
}

fn replica_synced(port: u16) -> bool {
    command(port, "INFO replication\r\n").is_some_and(|r| {
        r.contains("role:slave")
            && r.contains("master_link_status:up")
            && !r.contains("master_sync_in_progress:1")
    })
}

fn cluster_ok(port: u16) -> bool {
    command(port, "CLUSTER INFO\r\n").is_some_and(|r| r.contains("cluster_state:ok"))
}
