"""A stand-in for the remote databases a job reaches through its egress
proxy: HTTP and HTTPS (a self-signed certificate made here with openssl) on
loopback, plus one more port where nothing is served.

Prints "PORTS <http> <https> <spare>" once listening, then serves until
killed. Endpoints (both schemes):
  GET  /gene/SYMBOL  a small JSON record, as a REST database answers
  GET  /bytes/N      N bytes of 'x'
  GET  /count        "count N": how many times /count was asked
  POST /echo         the request body back
  GET  /late         "late", then the connection stays open 1 s before
                     it closes (an answer whole long before its end)
  GET  /hold         a 200 head and 10 of 1,000,000 promised bytes, then
                     waits until the other side closes; /events lists when
  GET  /events       what /hold saw, one line each
"""
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

lock = threading.Lock()
count = 0
events = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self):
        global count
        path = self.path
        if path.startswith("/gene/"):
            sym = path[6:]
            body = json.dumps({"symbol": sym, "chromosome": "17", "source": "stand-in"}).encode()
            return self.reply(200, body, "application/json")
        if path.startswith("/bytes/"):
            return self.reply(200, b"x" * int(path[7:]))
        if path.startswith("/count"):
            with lock:
                count += 1
                n = count
            return self.reply(200, b"count %d\n" % n)
        if path == "/late":
            self.reply(200, b"late\n")
            self.wfile.flush()
            time.sleep(1.0)
            return
        if path == "/events":
            with lock:
                body = "".join(e + "\n" for e in events).encode()
            return self.reply(200, body)
        if path == "/hold":
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            t0 = time.monotonic()
            self.connection.settimeout(60)
            try:
                while self.connection.recv(4096):
                    pass
                what = "eof"
            except OSError as e:
                what = "error %s" % e
            with lock:
                events.append("hold %s after %.2f s" % (what, time.monotonic() - t0))
            self.close_connection = True
            return
        return self.reply(404, b"no such path\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.path == "/echo":
            return self.reply(200, b"echo:" + body)
        return self.reply(404, b"no such path\n")


def serve(server):
    server.serve_forever()


def main():
    tmp = tempfile.mkdtemp(prefix="viv-egress-srv-")
    key, crt = os.path.join(tmp, "key.pem"), os.path.join(tmp, "crt.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))  # held, never listening: a port nothing answers on
    for s in (plain, tls):
        s.daemon_threads = True
        threading.Thread(target=serve, args=(s,), daemon=True).start()
    print("PORTS %d %d %d" % (plain.server_address[1], tls.server_address[1], spare.getsockname()[1]), flush=True)
    try:
        sys.stdin.read()  # until the test closes our stdin (or kills us)
    finally:
        for f in (key, crt):
            os.unlink(f)
        os.rmdir(tmp)


main()
