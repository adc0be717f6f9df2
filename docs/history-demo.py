import socket, random, math, sys
port = int(sys.argv[1])
def client(name):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rw", buffering=1)
    f.write(f"JOIN {name}\n"); f.flush()
    while not f.readline().startswith("OK"): pass
    return s, f
def place(c, pts):
    s, f = c
    s.sendall("".join(f"SET {x} {y} {col}\n" for x, y, col in pts).encode())
    n = 0
    while n < len(pts):
        l = f.readline()
        if l.startswith("OK") or l.startswith("ERR"): n += 1
random.seed(7)
al, bob, cy = client("alice"), client("bob"), client("cy")
# a blue sky gradient band, a green hill, a sun, a heart, a house; then noise
sky = [(x, y, 12 if y < 20 else 11) for y in range(0, 34) for x in range(64)]
random.shuffle(sky); place(al, sky)
hill = [(x, y, 10) for x in range(64) for y in range(34, 64) if y > 40 - 8*math.cos(x/10)]
random.shuffle(hill); place(bob, hill)
sun = [(x, y, 8) for x in range(64) for y in range(64) if (x-50)**2 + (y-10)**2 <= 36]
place(cy, sun)
heart = []
for y in range(64):
    for x in range(64):
        u, v = (x-16)/7.0, -(y-22)/7.0
        if (u*u + v*v - 1)**3 - u*u*v**3 <= 0: heart.append((x, y, 5))
place(al, heart)
house = [(x, y, 7) for x in range(36, 52) for y in range(40, 54)] + [(x, y, 3) for x in range(42, 46) for y in range(46, 54)]
house += [(x, y, 15) for y in range(32, 40) for x in range(36 + (40 - y), 52 - (40 - y))]
place(bob, house)
for i in range(3):
    pts = [(random.randrange(64), random.randrange(64), random.randrange(16)) for _ in range(300)]
    place(cy, pts)
    place(al, [(x, y, c) for x, y, c in heart])
for c in (al, bob, cy):
    c[1].write("QUIT\n"); c[1].flush()
print("done")
