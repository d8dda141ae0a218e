"""The routing tests' app: its version at /, and a WebSocket at /ws that echoes each text
message with the version in front (RFC 6455, standard library only). On SIGTERM it closes
every WebSocket with 1001 (going away), as a well-behaved app does, then exits."""

import base64
import hashlib
import http.server
import signal
import struct
import sys
import threading

VERSION = open("/app/VERSION").read().strip()
ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
GOING_AWAY = struct.pack("!H", 1001)
OPEN_SOCKETS: set = set()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.upgrade()
            self.sending = threading.Lock()
            OPEN_SOCKETS.add(self)
            try:
                self.echo()
            finally:
                OPEN_SOCKETS.discard(self)
            self.close_connection = True  # the socket was the WebSocket's: nothing follows
            return
        body = VERSION.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def upgrade(self):
        key = self.headers["Sec-WebSocket-Key"] + ACCEPT_GUID
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
        self.end_headers()
        self.wfile.flush()

    def echo(self):
        while (frame := self.read_frame()) is not None:
            opcode, data = frame
            if opcode == CLOSE:
                self.send_frame(CLOSE, data[:2])
                return
            if opcode == PING:
                self.send_frame(PONG, data)
            elif opcode == TEXT:
                self.send_frame(TEXT, f"{VERSION}: {data.decode()}".encode())

    def read_frame(self):
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.rfile.read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.rfile.read(8))[0]
        mask = self.rfile.read(4) if head[1] & 0x80 else bytes(4)
        data = bytes(byte ^ mask[i % 4] for i, byte in enumerate(self.rfile.read(length)))
        return head[0] & 0x0F, data

    def send_frame(self, opcode: int, data: bytes):
        size = len(data)
        header = bytes([0x80 | opcode, size]) if size < 126 else bytes([0x80 | opcode, 126]) + struct.pack("!H", size)
        with self.sending:
            self.wfile.write(header + data)
            self.wfile.flush()

    def log_message(self, *args):
        pass


def going_away(*_):
    for handler in list(OPEN_SOCKETS):
        try:
            handler.send_frame(CLOSE, GOING_AWAY)
        except OSError:
            pass
    sys.exit(0)


signal.signal(signal.SIGTERM, going_away)
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
