# Times ROLLBACK of a griefer's 10,000 pixels on a running server: the
# wall time from sending ROLLBACK to its OK, three rounds.
import random, sys, time
from pixclient import client, place
port = int(sys.argv[1])
random.seed(1)
art = client(port, "artist")
grief = client(port, "griefer")
admin = client(port, auth="boss")
for rnd in range(3):
    place(art, [(random.randrange(256), random.randrange(256), random.randrange(16)) for _ in range(30000)])
    place(grief, [(x, y, 3) for x in range(100) for y in range(100)])
    s, f = admin
    t = time.perf_counter()
    s.sendall(b"ROLLBACK griefer\n")
    line = f.readline()
    dt = time.perf_counter() - t
    print(f"round {rnd+1}: {line.strip()} in {dt*1000:.0f} ms")
