# What the rollback timing scripts share: text-mode clients of a running
# server on 127.0.0.1 that join or authenticate, and pipelined SETs.
import socket


def client(port, name=None, auth=None):
    """Connects; gives the admin password if `auth`, joins as `name` if given."""
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rw", buffering=1 << 20)
    if auth:
        s.sendall(f"AUTH {auth}\n".encode()); assert f.readline().startswith("OK")
    if name:
        s.sendall(f"JOIN {name}\n".encode())
        while not f.readline().startswith("OK"): pass
    return s, f


def place(c, pts):
    """Places (x, y, colour) pixels as `c`, 2,000 in flight; stops on an ERR."""
    s, f = c
    for i in range(0, len(pts), 2000):
        chunk = pts[i:i+2000]
        s.sendall("".join(f"SET {x} {y} {col}\n" for x, y, col in chunk).encode())
        n = 0
        while n < len(chunk):
            l = f.readline()
            if l.startswith("OK"): n += 1
            elif l.startswith("ERR"): raise SystemExit(l)
