"""Clients of Sluice's HTTPS listener (the CA to trust comes from SSL_CERT_FILE).

usage: edge_client.py httpx URL TOKEN           httpx2 with http2=True: chat and a streamed chat
       edge_client.py handshakes PORT STOPFILE  fresh TLS connections one after another until
                                                STOPFILE exists: successes, failures, leaves seen
       edge_client.py sni PORT NAME             the names of the certificate served for NAME
       edge_client.py proxied PORT SOURCE HEADER TLS TOKEN ID
                                                from address SOURCE: the PROXY header (hex),
                                                then (TLS: 1) TLS, then a chat request: its status
       edge_client.py idle-h2 PORT PREFACE          an h2 connection that sends nothing (PREFACE 0) or
                                                only the preface (1): seconds until it is closed
       edge_client.py stall PORT STREAMS KIND       h2 streams that stall: `window` (the client
                                                takes no answer: window 0) or `body` (a body is
                                                announced and never sent); seconds until every
                                                stream was ended by the server
       edge_client.py resume PORT CERT KEY ADVANCE_URL
                                                a request with a client certificate, the clock
                                                moved (ADVANCE_URL), then one on the resumed TLS
                                                session: both statuses, and whether it resumed
       edge_client.py flood KIND PORT TOKEN     HTTP/2 floods: rapid-reset, continuation, ping,
                                                settings, empty-data
(prints one JSON object)
"""
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import time

CHAT = {"model": "gpt-mock", "messages": [{"role": "user", "content": "hello"}]}


def httpx_mode(url, token):
    import httpx2

    out = {}
    with httpx2.Client(http2=True, timeout=20) as client:
        headers = {"authorization": f"Bearer {token}"}
        r = client.post(url, json=CHAT, headers=headers)
        out["status"], out["http_version"] = r.status_code, r.http_version
        out["chat"] = r.json()["choices"][0]["message"]["content"]
        events = 0
        with client.stream("POST", url, json={**CHAT, "stream": True}, headers=headers) as s:
            out["stream_version"] = s.http_version
            for line in s.iter_lines():
                if line.startswith("data:"):
                    events += 1
        out["stream_events"] = events
    print(json.dumps(out))


def tls_context(verify=True, alpn=("http/1.1",)):
    ctx = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def handshakes_mode(port, stopfile):
    ctx = tls_context()
    ok, failures, leaves = 0, [], {}
    while not os.path.exists(stopfile):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    leaf = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
                    tls.sendall(b"GET /edge-probe HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    status = tls.recv(64)
                    if not status.startswith(b"HTTP/1.1 "):
                        raise RuntimeError(f"no HTTP answer: {status!r}")
            ok += 1
            leaves[leaf] = leaves.get(leaf, 0) + 1
        except Exception as e:  # every failure is reported, not raised
            failures.append(repr(e))
    print(json.dumps({"ok": ok, "failed": len(failures), "failures": failures[:5], "leaves": leaves}))


def sni_mode(port, name):
    from cryptography import x509

    ctx = tls_context(verify=False)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    print(json.dumps({"names": san.value.get_values_for_type(x509.DNSName)}))


def proxied_mode(port, source, header, use_tls, token, request_id):
    raw = socket.socket()
    raw.settimeout(10)
    raw.bind((source, 0))
    raw.connect(("127.0.0.1", port))
    raw.sendall(bytes.fromhex(header))
    try:
        conn = tls_context().wrap_socket(raw, server_hostname="localhost") if use_tls == "1" else raw
    except (ssl.SSLError, OSError) as e:
        print(json.dumps({"status": None, "error": repr(e)}))
        return
    body = json.dumps(CHAT).encode()
    conn.sendall(
        b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        + f"Authorization: Bearer {token}\r\nx-request-id: {request_id}\r\n".encode()
        + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    answer = b""
    try:
        while chunk := conn.recv(65536):
            answer += chunk
    except (ConnectionResetError, ssl.SSLError, socket.timeout):
        pass
    status = answer.split(b" ")[1].decode() if answer.startswith(b"HTTP/1.1 ") else None
    print(json.dumps({"status": status}))


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_connect(port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = tls_context(alpn=("h2",)).wrap_socket(raw, server_hostname="localhost")
    assert tls.selected_alpn_protocol() == "h2", tls.selected_alpn_protocol()
    tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
    return tls


def request_block(token):
    import hpack

    return hpack.Encoder().encode(
        [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", os.environ.get("EDGE_PATH", "/openai/v1/models")),
            ("authorization", f"Bearer {token}"),
        ]
    )


def read_until_closed(tls, seconds):
    """Reads frames until the server closes; returns the GOAWAY error code, if one came."""
    tls.settimeout(seconds)
    buf, goaway = b"", None
    deadline = time.time() + seconds
    try:
        while time.time() < deadline:
            data = tls.recv(65536)
            if not data:
                break
            buf += data
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                kind, payload = buf[3], buf[9 : 9 + length]
                if kind == 7:  # GOAWAY
                    goaway = int.from_bytes(payload[4:8], "big")
                buf = buf[9 + length :]
    except (socket.timeout, ssl.SSLError, OSError):
        pass
    return goaway


def send_until_refused(tls, frames, limit_bytes):
    """Sends `frames` over and over until the server closes or stops reading; bytes sent."""
    sent = 0
    tls.settimeout(3)
    try:
        while sent < limit_bytes:
            tls.sendall(frames)
            sent += len(frames)
    except (socket.timeout, ssl.SSLError, OSError) as e:
        return sent, type(e).__name__
    return sent, None


def idle_h2_mode(port, preface):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = tls_context(alpn=("h2",)).wrap_socket(raw, server_hostname="localhost")
    assert tls.selected_alpn_protocol() == "h2", tls.selected_alpn_protocol()
    start = time.time()
    if preface == "1":
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
    read_until_closed(tls, 10)
    print(json.dumps({"closed_after": round(time.time() - start, 2)}))


def stall_mode(port, streams, kind):
    import hpack

    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = tls_context(alpn=("h2",)).wrap_socket(raw, server_hostname="localhost")
    window = 0 if kind == "window" else 65535
    tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, struct.pack(">HI", 4, window)))
    method = "GET" if kind == "window" else "POST"
    start = time.time()
    for i in range(streams):
        headers = [(":method", method), (":scheme", "https"), (":authority", "localhost"), (":path", "/nope")]
        if kind == "body":
            headers.append(("content-length", "100"))
        flags = 0x5 if kind == "window" else 0x4  # END_HEADERS, and END_STREAM without a body
        tls.sendall(frame(1, flags, 1 + 2 * i, hpack.Encoder().encode(headers)))
    ended, buf = set(), b""
    tls.settimeout(1)
    while len(ended) < streams and time.time() - start < 15:
        try:
            data = tls.recv(65536)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError):
            break
        if not data:
            break
        buf += data
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            length, kind_, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            if kind_ == 3 or (kind_ in (0, 1) and flags & 0x1):
                ended.add(stream)
            if kind_ == 7:
                ended.update(1 + 2 * i for i in range(streams))
            buf = buf[9 + length :]
    print(json.dumps({"ended": len(ended), "after": round(time.time() - start, 2)}))


def resume_mode(port, cert, key, advance_url):
    import urllib.request

    ctx = tls_context()
    ctx.load_cert_chain(cert, key)

    def get(session=None):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                tls.sendall(b"GET /openai/v1/models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
                return answer.split(b" ")[1].decode(), tls.session, tls.session_reused

    first, session, _ = get()
    urllib.request.urlopen(urllib.request.Request(advance_url, method="POST")).read()
    second, _, reused = get(session)
    print(json.dumps({"first": first, "resumed": second, "reused": reused}))


def flood_mode(kind, port, token):
    tls = h2_connect(port)
    out = {"kind": kind}
    if kind == "rapid-reset":
        block = request_block(token)
        burst = b""
        for i in range(1000):
            stream = 1 + 2 * i
            burst += frame(1, 0x5, stream, block)  # HEADERS, END_STREAM | END_HEADERS
            burst += frame(3, 0, stream, struct.pack(">I", 8))  # RST_STREAM CANCEL
        out["sent"], out["stopped_by"] = send_until_refused(tls, burst, len(burst))
        out["goaway"] = read_until_closed(tls, 5)
    elif kind == "continuation":
        import hpack

        junk = hpack.Encoder().encode([("x-junk-%d" % i, "y" * 1000) for i in range(15)])
        first = frame(1, 0x1, 1, request_block(token))  # HEADERS, END_STREAM, no END_HEADERS
        tls.sendall(first)
        out["sent"], out["stopped_by"] = send_until_refused(tls, frame(9, 0, 1, junk), 64 << 20)
        out["goaway"] = read_until_closed(tls, 5)
    elif kind in ("ping", "settings", "empty-data"):
        if kind == "ping":
            unit = frame(6, 0, 0, b"12345678")
        elif kind == "settings":
            unit = frame(4, 0, 0, struct.pack(">HI", 3, 100))
        else:
            tls.sendall(frame(1, 0x4, 1, request_block(token)))
            unit = frame(0, 0, 1, b"")
        out["sent"], out["stopped_by"] = send_until_refused(tls, unit * 1000, 256 << 20)
        out["goaway"] = read_until_closed(tls, 3)
    else:
        sys.exit(f"unknown flood {kind}")
    tls.close()
    print(json.dumps(out))


mode = sys.argv[1]
if mode == "httpx":
    httpx_mode(sys.argv[2], sys.argv[3])
elif mode == "handshakes":
    handshakes_mode(int(sys.argv[2]), sys.argv[3])
elif mode == "sni":
    sni_mode(int(sys.argv[2]), sys.argv[3])
elif mode == "proxied":
    proxied_mode(int(sys.argv[2]), *sys.argv[3:8])
elif mode == "idle-h2":
    idle_h2_mode(int(sys.argv[2]), sys.argv[3])
elif mode == "stall":
    stall_mode(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
elif mode == "resume":
    resume_mode(int(sys.argv[2]), *sys.argv[3:6])
elif mode == "flood":
    flood_mode(sys.argv[2], int(sys.argv[3]), sys.argv[4])
else:
    sys.exit(f"unknown mode {mode}")
