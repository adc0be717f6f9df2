# Times ROLLBACK on a server with a long history (run it after
# random_place.py filled a 1000x1000 canvas): the wall time from sending
# ROLLBACK to its OK.
#   art:   an artist draws a 100x100 square, a griefer paints over it;
#          every pixel's colour before the griefer is the artist's, the
#          newest placements there.
#   blank: the griefer paints a 100x100 square of the random history,
#          where about 45% of the pixels were never placed before: those
#          need the whole history to tell they were blank.
# Three rounds of each, each round on a square of its own.
import socket, sys, time
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
def rollback(admin):
    s, f = admin
    t = time.perf_counter()
    s.sendall(b"ROLLBACK griefer 60\n")
    line = f.readline()
    return line.strip(), (time.perf_counter() - t) * 1000
art = client("artist")
grief = client("griefer")
admin = client(auth="boss")
for kind in ["art", "blank"]:
    for rnd in range(3):
        x0, y0 = 100 + 250 * rnd, 100 if kind == "art" else 600
        square = [(x, y) for x in range(x0, x0 + 100) for y in range(y0, y0 + 100)]
        if kind == "art":
            place(art, [(x, y, (x + y) % 16) for x, y in square])
        place(grief, [(x, y, 3) for x, y in square])
        line, ms = rollback(admin)
        print(f"{kind} round {rnd+1}: {line} in {ms:.0f} ms")
