#!/usr/bin/python3
"""Profiles which code of `tandem` its long-running processes touch, and writes the list of
those functions for the linker (src/cli/code-order.txt, lld --symbol-ordering-file).

    /usr/bin/python3 scripts/code_order.py [--binary build/src/cli/tandem] [--out src/cli/code-order.txt]

Why: the kernel maps a file page into a process together with the cached pages of its
64 KiB neighbourhood ("fault-around"). Scattered over the binary, the few hundred KiB of
code an agent runs make most of the binary's text resident in it (7.3 of 9.4 MiB). Laid
out together, they do not (docs/benchmarks.md, "Memory").

How (root): a profiling build (build-code-order/, every function aligned to its own page
with -falign-functions=4096) is copied twice onto a fresh loop-mounted ext4 volume with
read-ahead off and an empty page cache, so only pages some process really executed get
cached, and fault-around can only map those; the portals run the second copy. A `tandem up` deployment runs from that copy through
bootstrap, client load through the portals, the REST and metrics endpoints, archiving, a
switchover, a failover with a rejoin, pause and resume. Then every resident text page of
each agent, portal and WAL archiver is attributed to the function on it (nm -S). The list
holds the agents' functions first, then the portals', then the archivers'. gRPC, protobuf
and Abseil come as archives built without -ffunction-sections: for them the unit is a
whole object file's code, whichever of its functions is listed.

A stale list is harmless: names that no longer exist are ignored, and new functions land in
the cold part. Re-run after larger changes to the agent or portal.
"""
import argparse
import bisect
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def free_base(count=40):
    for _ in range(200):
        base = random.randrange(20000, 31000)
        ok = True
        for p in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    sys.exit("no free port range")


class ColdCopy:
    """The binary on a loop-mounted volume with read-ahead off and nothing cached."""

    def __init__(self, binary, work):
        self.image = os.path.join(work, "code.img")
        self.mnt = os.path.join(work, "mnt")
        os.makedirs(self.mnt)
        size = 2 * os.path.getsize(binary) + (64 << 20)
        sh("truncate", "-s", str(size), self.image)
        sh("mkfs.ext4", "-q", "-F", self.image)
        self.dev = sh("losetup", "--find", "--show", self.image).stdout.strip()
        sh("mount", self.dev, self.mnt)
        with open(f"/sys/block/{os.path.basename(self.dev)}/queue/read_ahead_kb", "w") as f:
            f.write("0")
        # Two copies: the portals run the second one, so that code only they touch is never
        # cached in the agents' copy (fault-around would map it into the agents as well).
        self.path = os.path.join(self.mnt, "tandem")
        self.portal_path = os.path.join(self.mnt, "portal", "tandem")
        os.makedirs(os.path.dirname(self.portal_path))
        for path in (self.path, self.portal_path):
            sh("cp", binary, path)
        os.sync()
        for path in (self.path, self.portal_path):
            sh("dd", f"if={path}", "iflag=nocache", "count=0", "status=none")

    def close(self):
        sh("umount", self.mnt, check=False)
        sh("losetup", "-d", self.dev, check=False)


def text_pages(pid, path):
    """Link-time addresses of the resident pages of `path`'s executable mapping in pid."""
    pages = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pm:
        for line in maps:
            f = line.split()
            if len(f) < 6 or f[5] != path or f[1] != "r-xp":
                continue
            start, end = (int(x, 16) for x in f[0].split("-"))
            offset = int(f[2], 16)
            for va in range(start, end, 4096):
                pm.seek(va // 4096 * 8)
                if struct.unpack("Q", pm.read(8))[0] >> 63:
                    pages.append(offset + va - start)
    return pages


def load_segment_bias(path):
    """vaddr - offset of the executable LOAD segment."""
    for line in sh("readelf", "-lW", path).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[-2]:
            return int(f[2], 16) - int(f[1], 16)
    sys.exit(f"{path}: no executable LOAD segment")


def functions(path):
    """(start, end, mangled name) of every defined function with a size, by address."""
    out = []
    for line in sh("nm", "-S", "--defined-only", "--no-demangle", path).stdout.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tTwWiu":
            start, size = int(f[0], 16), int(f[1], 16)
            if size:
                out.append((start, start + size, f[3]))
    out.sort()
    return out


def symbols_on(pages, bias, funcs):
    starts = [s for s, _, _ in funcs]
    names = set()
    for off in pages:
        lo, hi = off + bias, off + bias + 4096
        i = bisect.bisect_right(starts, lo) - 1
        i = max(i, 0)
        while i < len(funcs) and funcs[i][0] < hi:
            if funcs[i][1] > lo:
                names.add((funcs[i][0], funcs[i][2]))
            i += 1
    return names


def move_portals(d, portal_binary):
    """Restarts the deployment's portals from portal_binary (same arguments, log and pid file)."""
    run = os.path.join(d, "run")
    for f in sorted(os.listdir(run)):
        if not f.startswith("portal") or not f.endswith(".pid"):
            continue
        name = f[:-4]
        pid = int(open(os.path.join(run, f)).read())
        argv = open(f"/proc/{pid}/cmdline").read().rstrip("\0").split("\0")
        os.kill(pid, 15)
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)
        out = open(os.path.join(d, "logs", f"{name}-stdout.log"), "a")
        child = subprocess.Popen([portal_binary, *argv[1:]], cwd=d, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=out, start_new_session=True,
                                 env=dict(os.environ, GNUTLS_NO_IMPLICIT_INIT="1"))
        with open(os.path.join(run, f), "w") as pf:
            pf.write(f"{child.pid}\n")


def workload(tandem, portal_binary, d, base):
    env = dict(os.environ, PGCONNECT_TIMEOUT="10")
    run = lambda *a, **kw: subprocess.run([tandem, *a], env=env, capture_output=True, text=True, **kw)
    log("tandem up")
    r = run("up", "--dir", d, "--base-port", str(base), "--detach", timeout=300)
    if r.returncode != 0:
        sys.exit(f"tandem up failed: {r.stdout}{r.stderr}")
    move_portals(d, portal_binary)
    time.sleep(2)
    dep = json.load(open(os.path.join(d, "deployment.json")))
    env["PGPASSFILE"] = dep["pgpass_file"]
    conn = dep["connection_string"]
    p = dep["portals"][0]
    ro = (f"host={p['host']} port={p['ro_port']} user=admin dbname=postgres sslmode=verify-full "
          f"sslrootcert={dep['ca_cert']}")
    bench = lambda c, *a: subprocess.run(["pgbench", *a, c], env=env, capture_output=True, text=True)
    log("client load through the portals")
    bench(conn, "-i", "-s", "2", "-q")
    bench(conn, "-T", "8", "-c", "4", "-j", "2")
    bench(ro, "-S", "-T", "4", "-c", "2")
    bench(conn, "-S", "-C", "-T", "3", "-c", "2")

    def http_all():
        for m in dep["members"]:
            for ep in ("primary", "replica", "read-only", "health", "sync", "async", "cluster", "history",
                       "metrics", "replica?lag=1MB"):
                try:
                    urllib.request.urlopen(f"{m['api_url']}/{ep}", timeout=5).read()
                except Exception:
                    pass
        for p in dep["portals"]:
            try:
                urllib.request.urlopen(f"{p['http_url']}/metrics", timeout=5).read()
            except Exception:
                pass

    http_all()
    run("ctl", "list", "--dir", d)

    def leader():
        for _ in range(120):
            for m in dep["members"]:
                try:
                    urllib.request.urlopen(f"{m['api_url']}/primary", timeout=2)
                    return m["name"]
                except Exception:
                    pass
            time.sleep(0.5)
        sys.exit("no leader")

    def healthy_pair():
        for _ in range(240):
            r = run("ctl", "list", "--dir", d, "--json")
            try:
                ms = json.loads(r.stdout)["members"]
                if sum(1 for m in ms if m.get("state") in ("running", "streaming")) == 2:
                    return
            except Exception:
                pass
            time.sleep(0.5)

    log("WAL switches (archiving)")
    for _ in range(4):
        bench(conn, "-T", "2", "-c", "2")
        subprocess.run(["psql", "-qAtc", "checkpoint", conn], env=env, capture_output=True)
    first = leader()
    other = next(m["name"] for m in dep["members"] if m["name"] != first)
    log(f"switchover {first} -> {other}")
    run("ctl", "switchover", "--dir", d, "--candidate", other, timeout=120)
    healthy_pair()
    bench(conn, "-T", "4", "-c", "4")
    http_all()
    now = leader()
    log(f"failover: kill -9 the agent of {now}")
    pid = int(open(os.path.join(d, "run", f"{now}.pid")).read())
    os.kill(pid, 9)
    time.sleep(1)
    leader()
    bench(conn, "-T", "4", "-c", "4")
    log("rejoin: start the killed member again")
    run("up", "--dir", d, "--detach", timeout=300)
    healthy_pair()
    log("pause / resume")
    run("ctl", "pause", "--dir", d)
    time.sleep(3)
    run("ctl", "resume", "--dir", d)
    bench(conn, "-T", "4", "-c", "4")
    bench(ro, "-S", "-T", "3", "-c", "2")
    http_all()
    time.sleep(5)


def processes_of(path):
    """pid -> role ('agent', 'portal', 'other') of the processes running `path`."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{pid}/exe") != path:
                continue
            argv = open(f"/proc/{pid}/cmdline").read().split("\0")
        except OSError:
            continue
        role = argv[1] if len(argv) > 1 and argv[1] in ("agent", "portal") else "other"
        out[int(pid)] = role
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", help="a profiling build of tandem (default: build it in build-code-order/)")
    ap.add_argument("--out", default=os.path.join(ROOT, "src/cli/code-order.txt"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (loop mount, /proc/PID/pagemap)")
    if not args.binary:
        build = os.path.join(ROOT, "build-code-order")
        log(f"building the profiling binary in {build}")
        subprocess.run(["cmake", "-S", ROOT, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                        "-DTANDEM_CODE_ORDER=OFF", "-DTANDEM_BUILD_TESTS=OFF", "-DTANDEM_BUILD_BENCH=OFF",
                        "-DCMAKE_CXX_FLAGS=-falign-functions=4096"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["ninja", "-C", build, "tandem"], check=True, stdout=subprocess.DEVNULL)
        args.binary = os.path.join(build, "src/cli/tandem")
    work = tempfile.mkdtemp(prefix="tandem-code-order-")
    os.chmod(work, 0o755)  # the postgres user runs inside it
    copy = ColdCopy(os.path.abspath(args.binary), work)
    d = os.path.join(work, "deployment")
    try:
        workload(copy.path, copy.portal_path, d, free_base())
        procs = processes_of(copy.path)
        procs.update(processes_of(copy.portal_path))
        bias = load_segment_bias(copy.path)
        funcs = functions(copy.path)
        by_role = {"agent": set(), "portal": set(), "other": set()}
        for pid, role in procs.items():
            pages = text_pages(pid, copy.portal_path if role == "portal" else copy.path)
            log(f"pid {pid} ({role}): {len(pages) * 4} KiB of text resident")
            by_role[role] |= symbols_on(pages, bias, funcs)
    finally:
        subprocess.run([copy.path, "down", "--dir", d], capture_output=True)
        copy.close()
        subprocess.run(["rm", "-rf", work])
    seen = set()
    sizes = {n: e - s for s, e, n in funcs}
    lines = ["# Functions of `tandem` its agents, portals and WAL archivers run, for lld's",
             "# --symbol-ordering-file. Generated by scripts/code_order.py; do not edit."]
    for role in ("agent", "portal", "other"):
        chosen = [name for _, name in sorted(by_role[role]) if name not in seen]
        seen.update(chosen)
        lines += chosen
        total = sum(sizes.get(n, 0) for n in chosen)
        log(f"{role}: {len(chosen)} functions, {total // 1024} KiB")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
