//! The behaviours of Sluice's Pingora patches (vendor/PATCHES.md), each observed from outside:
//! on the wire, and in the system calls Sluice makes (strace attached to the running process).

use crate::common::*;
use std::io::{Read, Write};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EVENTS: usize = 20;

/// An upstream that answers every request on a connection with an SSE stream of `EVENTS`
/// events, head, chunks and end in one write, so Sluice reads them in one read.
async fn one_write_sse_upstream() -> u16 {
    let events: Vec<String> = (0..EVENTS)
        .map(|i| format!("data: {{\"n\":{i}}}\n\n"))
        .collect();
    one_write_upstream("text/event-stream", &events).await
}

/// An upstream that answers every request on a connection with `chunks` as a chunked body of
/// `content_type`, all of it in one write.
async fn one_write_upstream(content_type: &str, chunks: &[String]) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    for chunk in chunks {
        answer.push_str(&format!("{:X}\r\n{chunk}\r\n", chunk.len()));
    }
    answer.push_str("0\r\n\r\n");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // A request: its head and its Content-Length body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn config(upstream: u16) -> String {
    format!(
        r#"providers:
  - {{ name: up, kind: http, base_url: "http://127.0.0.1:{upstream}", credentials: none }}
routes:
  - {{ prefix: /up, provider: up, auth: none }}
"#
    )
}

/// One request on a raw connection; the response's chunk sizes (the chunked framing Sluice
/// wrote), its decoded body.
fn chunks_of_one_request(port: u16) -> (Vec<usize>, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = r#"{"stream":true}"#;
    write!(
        s,
        "POST /up/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, mut rest) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let (mut sizes, mut decoded) = (Vec::new(), String::new());
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            break;
        }
        sizes.push(size);
        decoded.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    (sizes, decoded)
}

/// Patch "one task per upstream read": every SSE event the upstream sent in one write reaches
/// the client in one chunk (one downstream write), unchanged and in order; unpatched Pingora
/// writes one chunk per upstream chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_read_together_are_written_together() {
    let upstream = one_write_sse_upstream().await;
    let sluice = Sluice::start(&config(upstream));
    let port = sluice.port;
    let (sizes, body) = tokio::task::spawn_blocking(move || chunks_of_one_request(port))
        .await
        .unwrap();
    let want: String = (0..EVENTS)
        .map(|i| format!("data: {{\"n\":{i}}}\n\n"))
        .collect();
    assert_eq!(body, want, "the events, in order");
    assert_eq!(sizes.len(), 1, "one chunk for one upstream read: {sizes:?}");
}

/// strace on the running Sluice: the `sendto`s and `getpeername`s it makes while `work` runs.
fn syscalls_during(pid: u32, work: impl FnOnce()) -> Vec<String> {
    traced(pid, "trace=sendto,getpeername,writev", "4096", work)
}

/// The system calls of `pid` in `filter` (strace's `-e`) while `work` runs, strings cut at
/// `strings` characters.
fn traced(pid: u32, filter: &str, strings: &str, work: impl FnOnce()) -> Vec<String> {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut strace = std::process::Command::new("strace")
        .args(["-f", "-s", strings, "-e", filter, "-o"])
        .arg(out.path())
        .args(["-p", &pid.to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("strace (scripts/test.sh installs it)");
    // Traced once strace says it attached ("Process N attached with K threads").
    let stderr = strace.stderr.take().expect("strace stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    for line in lines.by_ref() {
        if line.map_or(true, |l| l.contains("attached")) {
            break;
        }
    }
    // Drained in the background so strace never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    work();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait();
    std::fs::read_to_string(out.path())
        .unwrap()
        .lines()
        .filter(|l| !l.contains("EAGAIN"))
        .map(str::to_owned)
        .collect()
}

/// Patches "request head with its body", "last chunk with the last piece" and "no getpeername
/// per reuse", in Sluice's system calls: a JSON request goes upstream in one send (head and
/// body), a reused upstream connection is not checked with `getpeername`, and the SSE answer's
/// body and its end leave in one send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_system_calls_per_request() {
    let upstream = one_write_sse_upstream().await;
    let sluice = Sluice::start(&config(upstream));
    let port = sluice.port;
    // A first request opens the upstream connection; the traced ones reuse it.
    let first = tokio::task::spawn_blocking(move || chunks_of_one_request(port));
    first.await.unwrap();
    let pid = sluice.proc.child.id();
    let calls = tokio::task::spawn_blocking(move || {
        syscalls_during(pid, || {
            chunks_of_one_request(port);
        })
    })
    .await
    .unwrap();
    let text = calls.join("\n");
    let upstream_sends: Vec<&String> = calls
        .iter()
        .filter(|l| l.contains("\"POST /events HTTP/1.1"))
        .collect();
    assert_eq!(upstream_sends.len(), 1, "{text}");
    assert!(
        upstream_sends[0].contains(r#"{\"stream\":true}"#),
        "the request head and body in one send: {text}"
    );
    assert!(
        !calls.iter().any(|l| l.contains("getpeername(")),
        "getpeername on a reused connection: {text}"
    );
    let last = calls
        .iter()
        .find(|l| l.contains("0\\r\\n\\r\\n\"") && !l.contains("POST "))
        .unwrap_or_else(|| panic!("no send ends the body: {text}"));
    assert!(
        last.contains("data: {\\\"n\\\":19}"),
        "the last event and the body's end in one send: {text}"
    );
    // Patch "a head leaves with the body after it": the answer's head, read with its body,
    // is not flushed on its own (unpatched: a send for the head of every streamed answer).
    let head = calls
        .iter()
        .find(|l| l.contains("HTTP/1.1 200"))
        .unwrap_or_else(|| panic!("no send carries the answer's head: {text}"));
    assert!(
        head.contains("data: {\\\"n\\\":0}"),
        "the head and the body read with it in one send: {text}"
    );
}

/// What each `recvfrom` of `pid` asked for while `work` ran.
fn read_sizes_during(pid: u32, work: impl FnOnce()) -> Vec<usize> {
    traced(pid, "trace=recvfrom", "8", work)
        .iter()
        .filter_map(|l| {
            // `recvfrom(12, "HTTP/1.1"..., 4096, 0, NULL, NULL) = 300`
            let args = l.split_once("recvfrom(")?.1;
            let after_data = args.rsplit_once(", 0, NULL, NULL)")?.0;
            after_data.rsplit(", ").next()?.trim().parse().ok()
        })
        .collect()
}

/// Patch "small buffers until reads fill them": an SSE answer of small events is read with
/// heads asked for 1 KiB and body reads of 4 KiB (unpatched: 4 KiB heads and 64 KiB body
/// reads, each buffer held for as long as the stream lasts); a large body still gets 64 KiB
/// reads once reads fill the smaller ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffers_start_small_and_grow_when_reads_fill_them() {
    let sse = one_write_sse_upstream().await;
    let big: Vec<String> = (0..64).map(|i| format!("{i:02x}").repeat(8192)).collect();
    let large = one_write_upstream("application/json", &big).await;
    let dynamic = format!(
        r#"providers:
  - {{ name: up, kind: http, base_url: "http://127.0.0.1:{sse}", credentials: none }}
  - {{ name: large, kind: http, base_url: "http://127.0.0.1:{large}", credentials: none }}
routes:
  - {{ prefix: /up, provider: up, auth: none }}
  - {{ prefix: /large, provider: large, auth: none }}
"#
    );
    let sluice = Sluice::start(&dynamic);
    let (port, pid) = (sluice.port, sluice.proc.child.id());
    let sizes = tokio::task::spawn_blocking(move || {
        read_sizes_during(pid, || {
            chunks_of_one_request(port);
        })
    })
    .await
    .unwrap();
    assert!(!sizes.is_empty(), "no reads traced");
    assert!(
        sizes.iter().all(|&n| n <= 4096),
        "a read asked for more than 4 KiB on a small stream: {sizes:?}"
    );
    assert!(
        sizes.contains(&1024),
        "heads are read 1 KiB at first: {sizes:?}"
    );
    let client = client();
    let url = sluice.url("/large/file");
    let sizes = read_sizes_during(pid, || {
        let body = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(
                    async move { client.get(url).send().await.unwrap().bytes().await.unwrap() },
                )
        });
        assert_eq!(body.join().unwrap().len(), 64 * 16384);
    });
    assert!(
        sizes.contains(&65536),
        "reads grow to 64 KiB when they fill their buffer: {sizes:?}"
    );
}
