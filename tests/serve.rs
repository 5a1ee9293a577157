//! `steplog serve` as a process: it prints its address first, answers there, stops cleanly
//! on SIGTERM, refuses an address it cannot listen on, and warns when exposed.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

/// Starts `steplog serve` with `args`; returns the child and the address of its first line.
fn start(store: &std::path::Path, args: &[&str]) -> (Child, String) {
    let mut child = cli(store)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn steplog serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split(" at http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    (child, addr)
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn stop(mut child: Child) -> (std::process::ExitStatus, String) {
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

#[test]
fn serve_prints_its_address_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    cli_in(
        dir.path(),
        &["log", "r1"],
        "{\"loss\": 1}\n{\"loss\": 0.5}\n",
    );
    let (child, addr) = start(dir.path(), &["--bind", "127.0.0.1:0"]);
    let runs = get(&addr, "/api/runs");
    assert!(runs.starts_with("HTTP/1.1 200"), "{runs}");
    assert!(
        runs.contains("\"name\":\"r1\"") && runs.contains("\"rows\":2"),
        "{runs}"
    );
    assert!(get(&addr, "/").contains("steplog-token"));
    let (status, err) = stop(child);
    assert!(status.success(), "{status:?}: {err}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn an_address_in_use_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    cli_in(dir.path(), &["log", "r1"], "{\"loss\": 1}\n");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = cli(dir.path())
        .args(["serve", "--bind", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    let out = cli(dir.path())
        .args(["serve", "--bind", "localhost"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an address without a port is refused"
    );
}

#[test]
fn a_non_loopback_address_is_served_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    cli_in(dir.path(), &["log", "r1"], "{\"loss\": 1}\n");
    let (child, addr) = start(dir.path(), &["--bind", "0.0.0.0:0", "--allow-write"]);
    assert!(
        addr.starts_with("127.0.0.1:"),
        "the address printed is this machine's: {addr}"
    );
    let r = get(&addr, "/api/runs");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let (status, err) = stop(child);
    assert!(status.success());
    assert!(
        err.contains("warning: listening on 0.0.0.0") && err.contains("rewind and fork"),
        "{err}"
    );
}
