//! The runtime stage of the container image (Dockerfile) holds only the binary, its
//! configuration under /etc/otp-gateway/ and what `gcr.io/distroless/cc-debian12` provides:
//! glibc, libgcc_s, CA certificates, no shell, no writable directory. These tests run the
//! binary the way the chart runs it and show it needs nothing else:
//!
//! - its dynamic libraries are glibc's and libgcc_s, which the cc image has;
//! - with an empty environment (no `HOME`, `USER`, `TMPDIR`, `RUST_LOG`), an empty `HOME`
//!   directory, an empty `SSL_CERT_DIR`, the working directory `/`, a configuration file
//!   and a signing key in a temporary `/etc/otp-gateway`-like tree, and secrets passed as
//!   `OTPGW_*` variables in the chart's formats (`OTPGW_AUTH__CLIENTS` an inline array), it
//!   becomes ready on a real SMPP session, issues a token, sends a code and exits 0 on
//!   SIGTERM;
//! - where `strace` is available (scripts/packaging-check.sh installs it and requires it with
//!   `OTPGW_PACKAGING_TRACE=required`), every file it opened successfully is the config, the
//!   key, its own libraries, or kernel/device files (/proc, /sys, /dev/urandom), and it never
//!   opened anything for writing nor created, renamed or removed a file: a read-only root
//!   filesystem is enough.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_otp-gateway");

/// What distroless cc-debian12 ships besides CA certificates (glibc and libgcc_s).
const IMAGE_LIBRARIES: &[&str] = &[
    "linux-vdso.so.1",
    "libgcc_s.so.1",
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "linux-vdso.so.1",
];

// A client as the chart's Secret holds it (cheap hash: 1000 iterations of "packaging-secret-1").
const CLIENTS: &str = r#"[{id="pack-app",secret="pbkdf2-sha256$1000$cGFja2FnaW5nLXNhbHQtMDE$RV9uEGbIkFwuAcnCgCgbO4V9mI6OJgdXI8JRbRwJnnI",scopes=["one-time-password-sms:send-validate"]}]"#;

/// Kills the process when a failed assertion unwinds past it, so no gateway outlives the test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
}

#[test]
fn the_binary_links_only_what_the_distroless_cc_image_provides() {
    let out = Command::new("ldd")
        .arg(BIN)
        .output()
        .expect("ldd (Debian libc-bin) is needed for this test");
    assert!(out.status.success(), "ldd failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let name = line.split_whitespace().next().unwrap();
        let name = Path::new(name).file_name().unwrap().to_str().unwrap();
        assert!(
            IMAGE_LIBRARIES.contains(&name),
            "{name} is not in the distroless cc image ({line})"
        );
    }
}

fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    std::thread::spawn(move || {
        BufReader::new(err)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx2.send(l)))
    });
    rx
}

fn wait_for(rx: &mpsc::Receiver<String>, lines: &mut Vec<String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines.iter().any(|l| l.contains(what)) {
        assert!(Instant::now() < deadline, "no `{what}` in {lines:#?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
    }
}

/// `host:port` after the first `http://` (or `@`) of the first line holding `marker`.
fn addr_after(lines: &[String], marker: &str) -> String {
    let line = lines.iter().find(|l| l.contains(marker)).unwrap();
    let at = line
        .find("http://")
        .map(|i| i + 7)
        .or_else(|| line.find('@').map(|i| i + 1));
    let rest = &line[at.unwrap()..];
    rest.chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect()
}

/// One HTTP/1.1 request with `Connection: close`; the status and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    (status, body)
}

fn trace_mode() -> Option<PathBuf> {
    let required = std::env::var("OTPGW_PACKAGING_TRACE").as_deref() == Ok("required");
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("strace"))
            .find(|s| s.is_file())
    });
    match (&found, required) {
        (None, true) => panic!("OTPGW_PACKAGING_TRACE=required but strace is not installed"),
        (None, false) => eprintln!(
            "strace not found: the file-access half of this test is skipped (scripts/packaging-check.sh runs it)"
        ),
        _ => {}
    }
    found
}

#[test]
fn serves_with_only_its_config_an_empty_home_and_no_writes() {
    let root = std::env::temp_dir().join(format!("otpgw-packaging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let etc = root.join("etc/otp-gateway");
    let secrets = root.join("etc/otp-gateway-secrets");
    let home = root.join("home");
    let certs = root.join("certs");
    for d in [&etc, &secrets, &home, &certs] {
        std::fs::create_dir_all(d).unwrap();
    }
    let key = Command::new(BIN).arg("signing-key").output().unwrap();
    assert!(key.status.success());
    std::fs::write(secrets.join("signing-key.pem"), key.stdout).unwrap();
    let config = etc.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"0s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [auth]\nsigning_key_file = \"{}\"\n[log]\nformat = \"json\"\n",
            secrets.join("signing-key.pem").display()
        ),
    )
    .unwrap();

    // The SMSC, a separate process as in production.
    let mut smsc = Command::new(BIN)
        .args([
            "smsc-sim",
            "--listen",
            "127.0.0.1:0",
            "--password",
            "pack-pw",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let smsc_rx = lines_of(&mut smsc);
    let _smsc = KillOnDrop(smsc);
    let mut smsc_lines = Vec::new();
    wait_for(&smsc_rx, &mut smsc_lines, "listening on smpp://");
    let smsc_addr = addr_after(&smsc_lines, "listening on smpp://");

    let trace = trace_mode();
    let trace_file = root.join("trace");
    let mut cmd = match &trace {
        Some(strace) => {
            let mut c = Command::new(strace);
            c.arg("-f")
                .arg("-qq")
                .arg("-o")
                .arg(&trace_file)
                .args(["-e", "trace=%file", "-e", "signal=none", "--"])
                .arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let mut gw = cmd
        .args(["serve", "--config"])
        .arg(&config)
        .env_clear()
        .env("HOME", &home)
        .env("SSL_CERT_DIR", &certs)
        .env(
            "OTPGW_SMPP__URL",
            format!("smpp://otpgw:pack-pw@{smsc_addr}"),
        )
        .env("OTPGW_AUTH__CLIENTS", CLIENTS)
        .env(
            "OTPGW_OTP__HASH_KEY",
            "packaging-hash-key-of-at-least-32-bytes",
        )
        .env("OTPGW_ADMIN__TOKEN", "packaging-admin-token")
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut gw);
    let mut gw = KillOnDrop(gw);
    let mut lines = Vec::new();
    // The banner: "is up", then "  API      http://…", …, "  admin    http://…/health/ready".
    wait_for(&rx, &mut lines, "/health/ready");
    let api = addr_after(&lines, "/one-time-password-sms/v1");
    let admin = addr_after(&lines, "/health/ready");

    let deadline = Instant::now() + Duration::from_secs(30);
    while http(&admin, "GET", "/health/ready", &[], "").0 != 200 {
        assert!(Instant::now() < deadline, "never ready: {lines:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = http(
        &api,
        "POST",
        "/oauth2/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "grant_type=client_credentials&scope=one-time-password-sms:send-validate&client_id=pack-app&client_secret=packaging-secret-1",
    );
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let (status, body) = http(
        &api,
        "POST",
        "/one-time-password-sms/v1/send-code",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        r#"{"phoneNumber":"+34600000001","message":"{{code}} is your code"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(&admin, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);

    // SIGTERM to the gateway itself (under strace, the tracer's child).
    let pid = match trace {
        Some(_) => {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", gw.0.id())).unwrap();
            children.split_whitespace().next().unwrap().to_owned()
        }
        None => gw.0.id().to_string(),
    };
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = gw.0.wait().unwrap();
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        lines.push(l);
    }
    assert!(status.success(), "exit {status:?}: {lines:#?}");

    if trace.is_some() {
        check_trace(&std::fs::read_to_string(&trace_file).unwrap(), &root);
    }
    std::fs::remove_dir_all(&root).ok();
}

/// Every successful open is allowed, and nothing is written, created or removed.
fn check_trace(trace: &str, root: &Path) {
    let root = root.to_str().unwrap();
    let exe = std::fs::canonicalize(BIN).unwrap();
    let allowed_read = |p: &str| {
        p.starts_with(&format!("{root}/etc/"))
            || p == BIN
            || Path::new(p) == exe
            || [
                "/proc/",
                "/sys/",
                "/lib/",
                "/lib64/",
                "/usr/lib/",
                "/usr/lib64/",
            ]
            .iter()
            .any(|d| p.starts_with(d))
            || [
                "/dev/urandom",
                "/dev/random",
                "/dev/null",
                "/etc/ld.so.cache",
            ]
            .contains(&p)
    };
    let mut problems = Vec::new();
    let mut opened = std::collections::BTreeSet::new();
    for line in trace.lines() {
        // "PID syscall(args) = result"
        let Some((_, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let name = call.split('(').next().unwrap_or("");
        let path = call.split('"').nth(1).unwrap_or("");
        let failed = call.contains(") = -1");
        match name {
            "open" | "openat" | "openat2" | "creat" => {
                let writes = call.contains("O_WRONLY")
                    || call.contains("O_RDWR")
                    || call.contains("O_CREAT")
                    || name == "creat";
                if writes && path != "/dev/null" {
                    problems.push(format!("opened for writing: {line}"));
                } else if !failed {
                    opened.insert(path.replace(root, "<root>"));
                    if !allowed_read(path) {
                        problems.push(format!("needs a file outside the image's list: {line}"));
                    }
                }
            }
            "mkdir" | "mkdirat" | "rename" | "renameat" | "renameat2" | "unlink" | "unlinkat"
            | "rmdir" | "link" | "linkat" | "symlink" | "symlinkat" | "truncate" | "chmod"
            | "fchmodat" | "chown" | "fchownat" | "mknod" | "mknodat" | "utimensat" => {
                problems.push(format!("changes the filesystem: {line}"))
            }
            _ => {}
        }
    }
    assert!(
        !opened.is_empty(),
        "the trace recorded no open at all:\n{trace}"
    );
    eprintln!("strace: opened for reading only {opened:?}; nothing written");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
