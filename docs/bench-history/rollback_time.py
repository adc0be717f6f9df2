# Times ROLLBACK of a griefer's 10,000 pixels on a running server: the
# wall time from sending ROLLBACK to its OK, three rounds.
import socket, random, sys, time
port = int(sys.argv[1])
def client(name=None, auth=None):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rw", buffering=1 << 20)
    if auth:
        s.sendall(f"AUTH {auth}\n".encode()); assert f.readline().startswith("OK")
    if name:
        s.sendall(f"JOIN {name}\n".encode())
        while not f.readline().startswith("OK"): pass
    return s, f
def place(c, pts):
    s, f = c
    for i in range(0, len(pts), 2000):
        chunk = pts[i:i+2000]
        s.sendall("".join(f"SET {x} {y} {col}\n" for x, y, col in chunk).encode())
        n = 0
        while n < len(chunk):
            l = f.readline()
            if l.startswith("OK"): n += 1
            elif l.startswith("ERR"): raise SystemExit(l)
random.seed(1)
art = client("artist")
grief = client("griefer")
admin = client(auth="boss")
for rnd in range(3):
    place(art, [(random.randrange(256), random.randrange(256), random.randrange(16)) for _ in range(30000)])
    place(grief, [(x, y, 3) for x in range(100) for y in range(100)])
    s, f = admin
    t = time.perf_counter()
    s.sendall(b"ROLLBACK griefer\n")
    line = f.readline()
    dt = time.perf_counter() - t
    print(f"round {rnd+1}: {line.strip()} in {dt*1000:.0f} ms")
