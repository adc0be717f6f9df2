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
import sys, time
from pixclient import client, place
port = int(sys.argv[1])
def rollback(admin):
    s, f = admin
    t = time.perf_counter()
    s.sendall(b"ROLLBACK griefer 60\n")
    line = f.readline()
    return line.strip(), (time.perf_counter() - t) * 1000
art = client(port, "artist")
grief = client(port, "griefer")
admin = client(port, auth="boss")
for kind in ["art", "blank"]:
    for rnd in range(3):
        x0, y0 = 100 + 250 * rnd, 100 if kind == "art" else 600
        square = [(x, y) for x in range(x0, x0 + 100) for y in range(y0, y0 + 100)]
        if kind == "art":
            place(art, [(x, y, (x + y) % 16) for x, y in square])
        place(grief, [(x, y, 3) for x, y in square])
        line, ms = rollback(admin)
        print(f"{kind} round {rnd+1}: {line} in {ms:.0f} ms")
