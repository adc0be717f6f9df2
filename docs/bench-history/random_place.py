# Places N random pixels (random x, y in a W x H canvas, random colour) as
# one user, pipelined 2,000 at a time, reading every line the server sends.
import socket, random, sys
port, name, n, w, h = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rnd = random.Random(name)
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("r", buffering=1 << 20)
s.sendall(f"JOIN {name}\n".encode())
while not f.readline().startswith("OK"): pass
done = 0
while done < n:
    k = min(2000, n - done)
    s.sendall("".join(f"SET {rnd.randrange(w)} {rnd.randrange(h)} {rnd.randrange(16)}\n" for _ in range(k)).encode())
    got = 0
    while got < k:
        l = f.readline()
        if l.startswith("OK"): got += 1
        elif l.startswith("ERR"): raise SystemExit(l)
    done += k
print(name, done)
