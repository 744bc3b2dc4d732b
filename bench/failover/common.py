"""Helpers shared by the failover benchmark: ports, processes, memory, SQL."""
import os
import random
import socket
import subprocess
import time

import psycopg2

PG_BIN = "/usr/lib/postgresql/15/bin"
ETCD_BIN = "/usr/bin/etcd"


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def port_free(port):
    """True when nothing listens on 127.0.0.1:port (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_range(count, taken=()):
    """First port of `count` consecutive free ports, below the kernel's ephemeral range
    (so outgoing connections never take them) and away from well-known ports."""
    for _ in range(500):
        base = random.randrange(20000, 32000 - count)
        ports = range(base, base + count)
        if any(p in taken for p in ports):
            continue
        if all(port_free(p) for p in ports):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def alive(pid):
    """Running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def read_pid(path):
    """The integer on the first line of a pid file, or None."""
    try:
        with open(path) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def memory_kb(pid):
    """{"rss": VmRSS, "anon": RssAnon, "pss": Pss} of a process in kB, or None when it is gone.
    RSS counts every resident page of shared libraries; PSS divides shared pages among the
    processes that map them."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "RssAnon:")):
                    out["rss" if line.startswith("VmRSS") else "anon"] = int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["pss"] = int(line.split()[1])
    except OSError:
        return None
    return out if "rss" in out else None


def stop_pid(pid, grace=30.0, popen=None):
    """SIGTERM, wait up to `grace` seconds, then SIGKILL. Reaps it when it is our child."""
    if pid is None or not alive(pid):
        if popen is not None:
            popen.poll()
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            return
        if not alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    if popen is not None:
        popen.wait(timeout=10)


def wait_until(what, predicate, timeout, interval=0.2):
    """Polls `predicate` until it returns a truthy value; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the thing we wait for may be down for a while
            last_exc = e
        time.sleep(interval)
    detail = f" (last error: {last_exc})" if last_exc else ""
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


def connect(port, user, timeout=2, host="127.0.0.1"):
    """An autocommit connection to one server (password from PGPASSFILE)."""
    conn = psycopg2.connect(host=host, port=port, user=user, dbname="postgres", connect_timeout=timeout,
                            application_name="failover-bench")
    conn.autocommit = True
    return conn


def query(port, user, sql, args=None):
    conn = connect(port, user)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def replication_ok(leader_port, user, replica_count=1):
    """The leader is a writable primary and `replica_count` standbys stream from it synchronously."""
    rows = query(leader_port, user,
                 "SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_stat_replication "
                 "WHERE state = 'streaming' AND sync_state = 'sync')")
    in_recovery, sync_streaming = rows[0]
    return not in_recovery and sync_streaming >= replica_count


def run(argv, timeout=120, check=True, env=None):
    """Runs a command and returns its CompletedProcess (stdout/stderr as text)."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def tail(path, lines=30):
    """The last `lines` lines of a text file ('' when missing)."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def make_dir(path, mode=0o755, owner=None):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner[0], owner[1])


def postgres_ids():
    import pwd
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid
