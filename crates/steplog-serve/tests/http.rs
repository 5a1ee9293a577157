//! The web view's API through real HTTP: a server on 127.0.0.1 over a real store, asked by a
//! plain HTTP/1.1 client (raw bytes, so hostile paths and headers reach the server as sent).
//! What a page and a script rely on: status codes, JSON shapes, exact M4 points, errors
//! that name what was wrong, and the guard (Host, read-only, token, origin).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::{json, Value};
use steplog::{Store, Stream};
use steplog_serve::ServeOptions;

/// A server on a free loopback port, stopped when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(store: Store, opts: ServeOptions) -> Server {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                steplog_serve::serve(listener, store, &opts, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        Server {
            addr: addr_rx.recv().unwrap(),
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Sends `request` (a request line and headers, without the blank line) and a body.
    fn raw(&self, head: &str, body: &[u8]) -> Resp {
        let mut s = TcpStream::connect(self.addr).unwrap();
        let mut req = head.replace("{host}", &self.addr.to_string()).into_bytes();
        req.extend_from_slice(
            format!(
                "\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(body);
        s.write_all(&req).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        Resp::parse(&out)
    }

    fn get(&self, path: &str) -> Resp {
        self.raw(&format!("GET {path} HTTP/1.1\r\nHost: {{host}}"), b"")
    }

    /// A GET that must succeed; its JSON.
    fn json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: {{host}}");
        for (k, v) in headers {
            head.push_str(&format!("\r\n{k}: {v}"));
        }
        self.raw(&head, body.to_string().as_bytes())
    }

    /// The write token, as the page reads it from itself.
    fn token(&self) -> String {
        let page = self.get("/").text();
        let at = page.find("name=\"steplog-token\" content=\"").unwrap() + 30;
        page[at..at + 32].to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn parse(raw: &[u8]) -> Resp {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        Resp {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The error message of a refused request, checking its status and JSON shape.
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let j = self.json();
        assert!(j["kind"].is_string(), "{j}");
        j["error"].as_str().unwrap().to_owned()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + n]);
        b = &b[end + 2 + n + 2..];
    }
}

/// `s` URL-encoded as a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The run name with every character a path would trip on.
const ODD: &str = "sweep/lr=0.1 & more ☃";

/// A store of W&B's rewind example: r1 logs 300 steps (a one-step spike at 137), is rewound
/// to 200 and logs a different future; a fork of it at 250 under an awkward name; a console
/// with five lines at one step; and a few short runs to sort and filter.
fn example(dir: &std::path::Path) -> Store {
    let store = Store::open(dir).unwrap();
    let mut w = store
        .run("r1")
        .config(json!({"lr": 0.1, "opt": {"name": "adam"}}))
        .start()
        .unwrap();
    for i in 0..300u64 {
        let loss = if i == 137 { 1e6 } else { 1.0 / (i + 1) as f64 };
        w.log_at(i, [("loss", loss), ("acc", i as f64 / 300.0)])
            .unwrap();
        w.log_row(Stream::Console, Some(i), [("text", format!("line at {i}"))])
            .unwrap();
    }
    for k in 0..4 {
        w.log_row(Stream::Console, Some(299), [("text", format!("extra {k}"))])
            .unwrap();
    }
    w.finish().unwrap();
    let mut w = store.run("r1").resume_from(200).start().unwrap();
    for i in 201..300u64 {
        w.log_at(i, [("loss", -(i as f64)), ("acc", 0.5)]).unwrap();
    }
    w.finish().unwrap();
    store.run(ODD).fork_from("r1", 250).apply().unwrap();
    for (n, lr) in [("short-a", 0.3), ("short-b", 0.01), ("short-c", 0.1)] {
        let mut w = store.run(n).config(json!({"lr": lr})).start().unwrap();
        for i in 0..5u64 {
            w.log_at(i, [("loss", lr * i as f64)]).unwrap();
        }
        w.finish().unwrap();
    }
    store
}

fn server(dir: &std::path::Path, write: bool) -> Server {
    Server::start(
        example(dir),
        ServeOptions {
            allow_write: write,
            allowed_hosts: vec![],
        },
    )
}

fn names(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_runs_table_pages_sorts_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    let all = s.json("/api/runs?keys=loss");
    assert_eq!(all["total"], 5);
    assert_eq!(names(&all), ["r1", "short-a", "short-b", "short-c", ODD]);
    let r1 = &all["runs"][0];
    assert_eq!(r1["status"], "finished");
    assert_eq!(r1["rows"], 300);
    assert_eq!(r1["last_step"], 299);
    assert_eq!(r1["how"], "rewound from v1 at step 200");
    assert_eq!(r1["config"]["opt"]["name"], "adam");
    assert_eq!(r1["metrics"]["loss"]["last"], -299.0);
    assert!(!r1["metrics"]["loss"]["spark"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(all["keys"].as_array().unwrap().contains(&json!("acc")));
    assert_eq!(all["config_keys"], json!(["lr", "opt"]));

    // Pages: offset and limit, the total unchanged.
    let p = s.json("/api/runs?offset=3&limit=1");
    assert_eq!(
        (p["total"].clone(), names(&p)),
        (json!(5), vec!["short-c".to_owned()])
    );
    assert_eq!(names(&s.json("/api/runs?offset=99")), Vec::<String>::new());
    // Sorts: a metric's last value, rows, descending; runs without it last.
    let by_loss = s.json("/api/runs?sort=metric%3Aloss&order=desc");
    assert_eq!(names(&by_loss)[..3], ["short-a", "short-c", "short-b"]);
    assert_eq!(
        names(&s.json("/api/runs?sort=rows&order=desc"))[..2],
        ["r1", ODD]
    );
    // Filters: a name substring (any case), config values (nested by /), metric bounds.
    assert_eq!(names(&s.json("/api/runs?filter=SHORT-")).len(), 3);
    assert_eq!(
        names(&s.json("/api/runs?config=lr%3D0.1")),
        ["r1", "short-c", ODD]
    );
    assert_eq!(
        names(&s.json("/api/runs?config=opt%2Fname%3Dadam&filter=r1")),
        ["r1"]
    );
    // Last losses: short-a 1.2, short-c 0.4, short-b 0.04, the others negative.
    assert_eq!(
        names(&s.json("/api/runs?metric=loss%3E%3D0.4")),
        ["short-a", "short-c"]
    );
    assert_eq!(names(&s.json("/api/runs?metric=loss%3E0.4")), ["short-a"]);
    assert_eq!(
        names(&s.json("/api/runs?metric=loss%3E0&metric=loss%3C1")),
        ["short-b", "short-c"]
    );
}

#[test]
fn a_version_its_lineage_and_its_streams() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    let head = s.json("/api/version?ref=r1");
    assert_eq!(head["id"], "v2");
    assert_eq!(head["parent"], "v1");
    assert_eq!(head["parent_step"], 200);
    assert_eq!(head["summary"]["rows"], 300);
    assert_eq!(head["summary"]["keys"]["loss"]["last"], -299.0);
    assert_eq!(head["summary"]["keys"]["loss"]["kind"], "float");
    assert_eq!(head["streams"], json!(["history", "console"]));
    // The archived version reads its own rows, spike and all.
    let old = s.json("/api/version?ref=v1");
    assert_eq!(old["status"], "archived");
    assert_eq!(old["summary"]["keys"]["loss"]["max"], 1e6);
    assert_eq!(old["summary"]["keys"]["loss"]["max_step"], 137);
    // A reference with a step, URL-encoded with the run's odd name.
    let cut = s.json(&format!(
        "/api/version?ref={}",
        enc(&format!("{ODD}?_step=100"))
    ));
    assert_eq!(cut["run"], ODD);
    assert_eq!(cut["step"], 100);
    assert_eq!(cut["summary"]["last_step"], 100);
    assert_eq!(cut["how"], "forked from v2 at step 250");

    let tree = s.json(&format!("/api/lineage?ref={}", enc(ODD)));
    assert_eq!(tree["focus"], "v3");
    let vs = tree["versions"].as_array().unwrap();
    let ids: Vec<_> = vs.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["v1", "v2", "v3"]);
    assert_eq!(vs[0]["children"], json!(["v2"]));
    assert_eq!(
        (vs[1]["depth"].clone(), vs[2]["depth"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(vs[0]["rows"], 300);
    assert_eq!(vs[2]["rows"], 251);
}

#[test]
fn series_are_exact_m4_so_a_one_step_spike_shows_at_every_zoom() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    for (from, to, width) in [(0, 299, 3), (0, 299, 1000), (100, 180, 7), (137, 137, 1)] {
        let r = s.json(&format!(
            "/api/series?ref=v1&key=loss&from={from}&to={to}&width={width}"
        ));
        let steps: Vec<u64> = serde_json::from_value(r["steps"].clone()).unwrap();
        let values: Vec<f64> = serde_json::from_value(r["values"].clone()).unwrap();
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
        assert!(steps.iter().all(|&x| (from..=to).contains(&x)));
        assert!(steps.len() <= 4 * width, "at most 4 points per bucket");
        let at = steps
            .iter()
            .position(|&x| x == 137)
            .expect("the spike's step");
        assert_eq!(values[at], 1e6, "range {from}..={to} at {width}");
        // Every point is a logged one.
        for (st, v) in steps.iter().zip(&values) {
            let want = if *st == 137 {
                1e6
            } else {
                1.0 / (*st + 1) as f64
            };
            assert_eq!(*v, want, "step {st}");
        }
        if width as u64 > to - from {
            assert_eq!(
                steps,
                (from..=to).collect::<Vec<_>>(),
                "one bucket per step"
            );
        }
    }
    // The head reads its own future after the rewind.
    let r = s.json("/api/series?ref=r1&key=loss&from=290&width=100");
    assert_eq!(r["steps"][0], 290);
    assert_eq!(r["values"][0], -290.0);
    // A key with no value in range is an empty series; a key never logged is a 404.
    let r = s.json("/api/series?ref=short-a&key=loss&from=100");
    assert_eq!(r["steps"], json!([]));
    let e = s.get("/api/series?ref=r1&key=los").error(404);
    assert!(e.contains("no key 'los'") && e.contains("'loss'"), "{e}");
}

#[test]
fn console_rows_page_through_lines_that_share_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    let mut from = 297u64;
    let mut skip = 0u64;
    let mut seen = Vec::new();
    loop {
        let p = s.json(&format!(
            "/api/rows?ref=v1&stream=console&from={from}&skip={skip}&limit=2"
        ));
        for r in p["rows"].as_array().unwrap() {
            seen.push(r["values"]["text"].as_str().unwrap().to_owned());
        }
        if p["next"].is_null() {
            break;
        }
        from = p["next"]["from"].as_u64().unwrap();
        skip = p["next"]["skip"].as_u64().unwrap();
    }
    let want: Vec<String> = ["line at 297", "line at 298", "line at 299"]
        .into_iter()
        .map(String::from)
        .chain((0..4).map(|k| format!("extra {k}")))
        .collect();
    assert_eq!(seen, want, "every line once, in order, across pages");
    // The head's console is its parent's up to the rewind step: nothing after 200.
    let p = s.json("/api/rows?ref=r1&stream=console&from=199");
    assert_eq!(p["rows"].as_array().unwrap().len(), 2);
    let h = s.json("/api/rows?ref=r1&stream=history&from=299");
    assert_eq!(
        h["rows"][0],
        json!({"step": 299, "values": {"acc": 0.5, "loss": -299.0}})
    );
}

#[test]
fn state_polls_see_committed_rows_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = example(dir.path());
    let s = Server::start(store.clone(), ServeOptions::default());
    let mut w = store.run("live").start().unwrap();
    w.log_at(0, [("x", 1.0)]).unwrap();
    w.commit().unwrap();
    let st = s.json("/api/state?ref=live&ref=nope&ref=v1");
    assert_eq!(st["states"][0]["status"], "running");
    assert_eq!(st["states"][0]["last_step"], 0);
    assert!(st["states"][1]["error"].as_str().unwrap().contains("nope"));
    assert_eq!(st["states"][2]["status"], "archived");
    w.log_at(1, [("x", 2.0)]).unwrap();
    w.commit().unwrap();
    assert_eq!(s.json("/api/state?ref=live")["states"][0]["last_step"], 1);
    assert_eq!(
        names(&s.json("/api/runs?filter=live"))[0],
        "live",
        "a new run is listed without a restart"
    );
    w.finish().unwrap();
    assert_eq!(
        s.json("/api/state?ref=live")["states"][0]["status"],
        "finished"
    );
}

#[test]
fn bad_parameters_are_4xx_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    let cases: &[(&str, u16, &str)] = &[
        ("/api/runs?limit=0", 400, "'limit' is 0"),
        ("/api/runs?limit=abc", 400, "'abc', not a whole number"),
        ("/api/runs?limit=1001", 400, "outside 1 to 1000"),
        ("/api/runs?offset=-1", 400, "'offset'"),
        ("/api/runs?sort=bogus", 400, "'sort' is 'bogus'"),
        ("/api/runs?order=up", 400, "asc, desc"),
        ("/api/runs?config=lr", 400, "PATH=VALUE"),
        ("/api/runs?metric=loss~1", 400, "KEY<X"),
        ("/api/runs?metric=loss%3Cx", 400, "with X a number"),
        ("/api/runs?limitt=5", 400, "unknown parameter 'limitt'"),
        ("/api/runs?limit=1&limit=2", 400, "more than once"),
        ("/api/version", 400, "'ref' is required"),
        ("/api/version?ref=", 400, "'ref' is empty"),
        ("/api/version?ref=nope", 404, "no run named 'nope'"),
        ("/api/version?ref=v99", 404, "v99"),
        ("/api/version?ref=r1%3F_step%3Dx", 400, "r1?_step=x"),
        ("/api/lineage?ref=nope", 404, "nope"),
        ("/api/series?ref=r1", 400, "'key' is required"),
        ("/api/series?ref=r1&key=loss&from=9&to=3", 400, "after 'to'"),
        ("/api/series?ref=r1&key=loss&width=0", 400, "'width' is 0"),
        ("/api/series?ref=r1&key=loss&width=99999999", 400, "'width'"),
        (
            "/api/series?ref=r1&key=loss&to=18446744073709551615",
            400,
            "'to'",
        ),
        (
            "/api/rows?ref=r1&stream=logs",
            400,
            "history, system, console",
        ),
        ("/api/rows?ref=r1&limit=100000", 400, "'limit'"),
        ("/api/state", 400, "1 to 100 'ref'"),
        ("/api/nothing", 404, "/api/nothing"),
    ];
    for (path, status, needle) in cases {
        let e = s.get(path).error(*status);
        assert!(e.contains(needle), "GET {path}: {e}");
    }
    let many: String = (0..101).map(|i| format!("ref=r{i}&")).collect();
    s.get(&format!("/api/state?{many}")).error(400);
}

#[test]
fn hostile_paths_and_parameters_never_reach_files_or_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/vendor/uplot/../../../src/lib.rs",
        "/vendor/uplot/%2e%2e%2f%2e%2e%2fsrc%2flib.rs",
        "/app.js/..",
        "//etc/passwd",
        "/api/runs/../../manifest",
    ] {
        let r = s.get(path);
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
        assert!(
            !r.text().contains("[package]") && !r.text().contains("root:"),
            "{path}"
        );
    }
    // Every route, each parameter fed hostile values (the others set to good ones): a 4xx
    // or a 200, never a 5xx.
    let hostile = [
        "",
        "%00",
        "%ff%fe",
        "..%2f..%2fetc%2fpasswd",
        "v",
        "v0",
        "v18446744073709551616",
        "r1%3F_step%3D-1",
        "r1%3F_step%3D99999999999999999999",
        "%3F",
        "-1",
        "1e9",
        "NaN",
        "%E2%98%83",
        "a%0d%0aSet-Cookie:%20x=1",
        "18446744073709551615",
        "9223372036854775808",
    ];
    let routes: &[(&str, &[(&str, &str)])] = &[
        (
            "runs",
            &[
                ("offset", "0"),
                ("limit", "5"),
                ("sort", "name"),
                ("order", "asc"),
                ("filter", "r"),
                ("config", "lr%3D0.1"),
                ("metric", "loss%3C9"),
                ("keys", "loss"),
            ],
        ),
        ("version", &[("ref", "r1")]),
        ("lineage", &[("ref", "r1")]),
        (
            "series",
            &[
                ("ref", "r1"),
                ("key", "loss"),
                ("from", "0"),
                ("to", "299"),
                ("width", "50"),
            ],
        ),
        (
            "rows",
            &[
                ("ref", "r1"),
                ("stream", "console"),
                ("from", "0"),
                ("to", "299"),
                ("skip", "0"),
                ("limit", "5"),
            ],
        ),
        ("state", &[("ref", "r1")]),
    ];
    let mut answered = 0;
    for (route, params) in routes {
        let good: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            s.get(&format!("/api/{route}?{}", good.join("&"))).status,
            200,
            "{route}"
        );
        for (i, (name, _)) in params.iter().enumerate() {
            for v in hostile {
                let mut q = good.clone();
                q[i] = format!("{name}={v}");
                let path = format!("/api/{route}?{}", q.join("&"));
                let r = s.get(&path);
                assert!(r.status < 500, "GET {path}: {} {}", r.status, r.text());
                assert!(r.header("set-cookie").is_none());
                let _ = r.json();
                answered += usize::from(r.status == 200);
            }
        }
    }
    assert!(
        answered > 50,
        "hostile values that are valid are answered ({answered})"
    );
    // A long query is refused or answered, never a crash.
    let long = "x".repeat(60_000);
    assert!(s.get(&format!("/api/runs?filter={long}")).status < 500);
}

#[test]
fn the_page_and_its_files_are_served_with_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page.text().contains("name=\"steplog-write\" content=\"0\""));
    assert!(!page.text().contains("{{TOKEN}}"));
    for (path, ty) in [
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
        ("/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
        ("/vendor/uplot/LICENSE", "text/plain"),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(ty), "{path}");
        assert!(!r.body.is_empty());
    }
    assert!(s
        .get("/vendor/uplot/LICENSE")
        .text()
        .contains("Leon Sorokin"));
    assert_eq!(s.get("/api/runs").header("cache-control"), Some("no-store"));
}

#[test]
fn only_the_servers_own_host_names_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    let port = s.addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "LocalHost".into(),
    ] {
        let r = s.raw(&format!("GET /api/runs HTTP/1.1\r\nHost: {host}"), b"");
        assert_eq!(r.status, 200, "{host}");
    }
    // A page of another site whose name was rebound to 127.0.0.1 sends its own name.
    for host in [
        "evil.example",
        "evil.example:6007",
        "127.0.0.1.evil.example",
        "",
    ] {
        let e = s
            .raw(&format!("GET /api/runs HTTP/1.1\r\nHost: {host}"), b"")
            .error(403);
        assert!(e.contains("--allow-host"), "{e}");
    }
    let other = tempfile::tempdir().unwrap();
    let named = Server::start(
        example(other.path()),
        ServeOptions {
            allow_write: false,
            allowed_hosts: vec!["box.lan".into()],
        },
    );
    let r = named.raw("GET /api/runs HTTP/1.1\r\nHost: box.lan:6007", b"");
    assert_eq!(r.status, 200);
}

#[test]
fn a_read_only_server_refuses_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    let token = s.token();
    for path in ["/api/rewind", "/api/fork", "/api/runs", "/"] {
        let e = s
            .post(
                path,
                &[
                    ("Content-Type", "application/json"),
                    ("X-Steplog-Token", &token),
                ],
                &json!({"run": "r1", "step": 5}),
            )
            .error(403);
        assert!(
            e.contains("read-only") && e.contains("--allow-write"),
            "{path}: {e}"
        );
    }
    assert_eq!(s.json("/api/version?ref=r1")["id"], "v2", "nothing changed");
}

#[test]
fn writes_need_the_token_json_and_the_servers_origin() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), true);
    let token = s.token();
    let json_ct = ("Content-Type", "application/json");
    let body = json!({"run": "r1", "step": 100});
    // No token, a wrong one, another origin, a form post: refused, nothing changed.
    s.post("/api/rewind", &[json_ct], &body).error(403);
    s.post(
        "/api/rewind",
        &[json_ct, ("X-Steplog-Token", "0123")],
        &body,
    )
    .error(403);
    let e = s
        .post(
            "/api/rewind",
            &[
                json_ct,
                ("X-Steplog-Token", &token),
                ("Origin", "http://evil.example"),
            ],
            &body,
        )
        .error(403);
    assert!(e.contains("evil.example"), "{e}");
    s.post(
        "/api/rewind",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Steplog-Token", &token),
        ],
        &body,
    )
    .error(415);
    assert_eq!(s.json("/api/version?ref=r1")["id"], "v2");

    // With all three: a rewind (the old head archived, still readable) and a fork.
    let origin = format!("http://{}", s.addr);
    let ok = [json_ct, ("X-Steplog-Token", &token), ("Origin", &origin)];
    let r = s.post("/api/rewind", &ok, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["archived"], "v2");
    let head = s.json("/api/version?ref=r1");
    assert_eq!(
        (head["parent"].clone(), head["summary"]["last_step"].clone()),
        (json!("v2"), json!(100))
    );
    assert_eq!(s.json("/api/version?ref=v2")["summary"]["last_step"], 299);
    let f = s.post(
        "/api/fork",
        &ok,
        &json!({"from": "v2", "step": 280, "name": "from-the-page"}),
    );
    assert_eq!(f.status, 200, "{}", f.text());
    assert_eq!(
        s.json("/api/version?ref=from-the-page")["summary"]["last_step"],
        280
    );

    // What the engine refuses is a 4xx naming it.
    let cases: &[(&str, Value, u16, &str)] = &[
        (
            "/api/rewind",
            json!({"run": "r1", "step": 5000}),
            400,
            "5000",
        ),
        (
            "/api/rewind",
            json!({"run": "nope", "step": 1}),
            404,
            "nope",
        ),
        (
            "/api/rewind",
            json!({"run": "v1", "step": 1}),
            400,
            "version id",
        ),
        ("/api/rewind", json!({"run": "r1"}), 400, "step"),
        (
            "/api/rewind",
            json!({"run": "r1", "step": 1, "extra": 1}),
            400,
            "extra",
        ),
        ("/api/rewind", json!({"run": "r1", "step": -1}), 400, "body"),
        (
            "/api/fork",
            json!({"from": "v2", "step": 1, "name": "from-the-page"}),
            409,
            "from-the-page",
        ),
        (
            "/api/fork",
            json!({"from": "v2", "step": 1, "name": "v7"}),
            400,
            "v7",
        ),
        (
            "/api/fork",
            json!({"from": "v2", "step": 1, "name": "a?b"}),
            400,
            "a?b",
        ),
    ];
    for (path, body, status, needle) in cases {
        let e = s.post(path, &ok, body).error(*status);
        assert!(e.contains(needle), "POST {path} {body}: {e}");
    }
    let e = s
        .raw(
            &format!(
                "POST /api/fork HTTP/1.1\r\nHost: {{host}}\r\nContent-Type: application/json\r\nX-Steplog-Token: {token}"
            ),
            b"{not json",
        )
        .error(400);
    assert!(e.contains("body"), "{e}");
}

#[test]
fn pages_of_other_sites_and_wrong_methods_get_json_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), true);
    // A browser marks requests another site's page makes: refused before any work.
    for site in ["cross-site", "same-site"] {
        let e = s
            .raw(
                &format!("GET /api/runs HTTP/1.1\r\nHost: {{host}}\r\nSec-Fetch-Site: {site}"),
                b"",
            )
            .error(403);
        assert!(e.contains("another site"), "{e}");
    }
    for site in ["same-origin", "none"] {
        let r = s.raw(
            &format!("GET /api/runs HTTP/1.1\r\nHost: {{host}}\r\nSec-Fetch-Site: {site}"),
            b"",
        );
        assert_eq!(r.status, 200, "{site}");
    }
    // An address as Host is never a rebound name: answered.
    let r = s.raw("GET /api/runs HTTP/1.1\r\nHost: 192.168.7.7:6007", b"");
    assert_eq!(r.status, 200);
    // A route asked with the wrong method: a 405 in JSON.
    let token = s.token();
    let e = s
        .post(
            "/api/runs",
            &[
                ("Content-Type", "application/json"),
                ("X-Steplog-Token", &token),
            ],
            &json!({}),
        )
        .error(405);
    assert!(e.contains("/api/runs"), "{e}");
    s.get("/api/rewind").error(405);
    // A body over the limit: a 413 in JSON.
    let big = json!({"run": "r1", "step": 1, "config": {"x": "y".repeat(3 << 20)}});
    s.post(
        "/api/rewind",
        &[
            ("Content-Type", "application/json"),
            ("X-Steplog-Token", &token),
        ],
        &big,
    )
    .error(413);
    // HEAD of a static file.
    let r = s.raw("HEAD /app.js HTTP/1.1\r\nHost: {host}", b"");
    assert_eq!(r.status, 200);
}

#[test]
fn any_host_name_and_writes_cannot_be_combined() {
    let dir = tempfile::tempdir().unwrap();
    let e = steplog_serve::router(
        example(dir.path()),
        &ServeOptions {
            allow_write: true,
            allowed_hosts: vec!["*".into()],
        },
    )
    .expect_err("refused");
    assert!(e.to_string().contains("--allow-write"), "{e}");
}

#[test]
fn a_reference_with_a_step_is_charted_up_to_it_and_metric_filters_take_odd_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = example(dir.path());
    let mut w = store.run("odd").start().unwrap();
    w.log_at(0, [("a<b", 5.0), ("c=d", 1.0)]).unwrap();
    w.finish().unwrap();
    let s = Server::start(store, ServeOptions::default());
    let r = s.json(&format!(
        "/api/series?ref={}&key=loss&width=1000",
        enc("r1?_step=120")
    ));
    assert_eq!(r["to"], 120);
    assert_eq!(r["steps"].as_array().unwrap().last().unwrap(), 120);
    assert_eq!(names(&s.json("/api/runs?metric=a%3Cb%3E3")), ["odd"]);
    assert_eq!(names(&s.json("/api/runs?metric=a%3Cb%3C%3D5")), ["odd"]);
    assert_eq!(names(&s.json("/api/runs?metric=c%3Dd%3D1")), ["odd"]);
    assert!(names(&s.json("/api/runs?metric=a%3Cb%3C5")).is_empty());
    // Ties by name from A to Z in both orders: short-a and short-b both have 5 rows.
    let asc = names(&s.json("/api/runs?sort=rows&order=asc&filter=short"));
    let desc = names(&s.json("/api/runs?sort=rows&order=desc&filter=short"));
    assert_eq!(asc, ["short-a", "short-b", "short-c"]);
    assert_eq!(desc, asc, "equal rows: by name both ways");
}

#[test]
fn a_rewind_of_a_run_a_writer_holds_is_a_conflict_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = example(dir.path());
    let s = Server::start(
        store.clone(),
        ServeOptions {
            allow_write: true,
            allowed_hosts: vec![],
        },
    );
    let token = s.token();
    let ok = [
        ("Content-Type", "application/json"),
        ("X-Steplog-Token", token.as_str()),
    ];
    let mut w = store
        .run("r1")
        .resume(steplog::Resume::Must)
        .start()
        .unwrap();
    let e = s
        .post("/api/rewind", &ok, &json!({"run": "r1", "step": 10}))
        .error(409);
    assert!(e.contains("r1"), "{e}");
    assert_eq!(s.json("/api/version?ref=r1")["status"], "running");
    w.log_at(300, [("loss", 0.0)]).unwrap();
    w.finish().unwrap();
    // Once the writer is gone, the same rewind goes through.
    let r = s.post("/api/rewind", &ok, &json!({"run": "r1", "step": 10}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.json("/api/version?ref=r1")["summary"]["last_step"], 10);
}
