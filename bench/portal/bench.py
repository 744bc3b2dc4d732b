#!/usr/bin/env python3
"""Portal throughput benchmark (see docs/benchmarks.md, section "Portal").

One `tandem up --detach` deployment on free ports, `pgbench -i -s 10` once, then interleaved
rounds of `pgbench -S` (select-only, 8 clients, 2 threads) against the same data:
  - directly to the leader's PostgreSQL,
  - through a Tandem portal (portal1 with tls.allow_plaintext for the plaintext runs;
    portal2 unchanged, TLS required, for the TLS runs),
  - through HAProxy 2.6 in TCP mode with Patroni's usual health checks against the agents,
each in plaintext and with TLS (the members get ssl=on through `tandem ctl edit-config`;
HAProxy passes TLS through), and with `pgbench -C` (a new connection per transaction).
Besides TPS and latency it records the CPU time the proxy process used per transaction.

Run as root through bench/portal/run.sh. Every process it starts is stopped by pid at the
end (`tandem down` for the deployment).
"""
import argparse
import datetime
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
HAPROXY = "/usr/sbin/haproxy"
DOC_BEGIN = "## Portal throughput"


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def run(argv, timeout=120, check=True, env=None):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_range(count):
    """First of `count` consecutive free ports below the ephemeral range."""
    for _ in range(500):
        base = random.randrange(20000, 32000 - count)
        if all(port_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def stop_pid(pid, grace=10.0):
    if pid is None or not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + grace
    while time.time() < deadline and alive(pid):
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def cpu_seconds(pid):
    """utime + stime of a process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(pred, timeout, what, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - retried until the deadline
            pass
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


class Bench:
    def __init__(self, args):
        self.args = args
        self.tandem = args.tandem
        self.dir = tempfile.mkdtemp(prefix="tandem-portal-bench-", dir="/var/tmp")
        os.chmod(self.dir, 0o755)
        self.base_port = None
        self.haproxy_pid = None
        self.haproxy_port = None
        self.dep = None
        self.pgpass = os.path.join(self.dir, "bench.pgpass")
        self.portal1 = None  # portal1 as restarted by the bench (a child of this process)

    # -- deployment -----------------------------------------------------------------------
    def up(self):
        self.base_port = free_port_range(40)
        log(f"tandem up --dir {self.dir} --base-port {self.base_port} --detach")
        run([self.tandem, "up", "--dir", self.dir, "--base-port", str(self.base_port), "--detach"], timeout=300)
        with open(os.path.join(self.dir, "deployment.json")) as f:
            self.dep = json.load(f)
        if not self.dep.get("portals"):
            raise RuntimeError("deployment.json lists no portals: this tandem has no `tandem portal` yet")
        with open(self.dep["admin"]["password_file"]) as f:
            password = f.read().strip()
        fd = os.open(self.pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            pw = password.replace("\\", "\\\\").replace(":", "\\:")
            f.write(f"127.0.0.1:*:*:admin:{pw}\nlocalhost:*:*:admin:{pw}\n")

    def status(self):
        p = run([self.tandem, "ctl", "list", "--dir", self.dir, "--json"], timeout=30)
        return json.loads(p.stdout)

    def leader(self):
        s = self.status()
        leader = s.get("leader")
        if not leader:
            raise RuntimeError("no leader")
        return next(m for m in self.dep["members"] if m["name"] == leader)

    def psql(self, port, sql, sslmode="disable", host="127.0.0.1"):
        env = self.env(sslmode)
        p = run([f"{PG_BIN}/psql", "-X", "-At", "-h", host, "-p", str(port), "-U", "admin", "-d", "postgres", "-c", sql],
                timeout=60, env=env)
        return p.stdout.strip()

    def env(self, sslmode):
        env = dict(os.environ)
        env.update({"PGPASSFILE": self.pgpass, "PGSSLMODE": sslmode, "PGCONNECT_TIMEOUT": "10",
                    "PGAPPNAME": "tandem-portal-bench"})
        return env

    def portal(self, name):
        return next(p for p in self.dep["portals"] if p["name"] == name)

    def portal_pid(self, name):
        return read_pid(os.path.join(self.dir, "run", f"{name}.pid"))

    def allow_plaintext_on_portal1(self):
        """Restarts portal1 with tls.allow_plaintext (HAProxy is measured in plaintext too).
        `tandem up` would rewrite the config, so the bench starts `tandem portal` itself, with
        the deployment's config file plus that one setting, and records its pid."""
        path = os.path.join(self.dir, "config", "portal1.yaml")
        with open(path) as f:
            text = f.read()
        if "allow_plaintext" not in text:
            text = text.replace("\ntls:\n", "\ntls:\n  allow_plaintext: true\n", 1)
            with open(path, "w") as f:
                f.write(text)
        stop_pid(self.portal_pid("portal1"))
        log_file = open(os.path.join(self.dir, "logs", "portal1-bench-stdout.log"), "ab")
        self.portal1 = subprocess.Popen([self.tandem, "portal", "--config", path], stdout=log_file,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        with open(os.path.join(self.dir, "run", "portal1.pid"), "w") as f:
            f.write(f"{self.portal1.pid}\n")
        port = self.portal("portal1")["port"]
        wait_until(lambda: self.psql(port, "select 1") == "1", 60, "portal1 to accept plaintext")
        log(f"portal1 restarted with tls.allow_plaintext (pid {self.portal1.pid})")

    def enable_member_tls(self):
        """ssl=on on every member with a certificate of the bench's own (owned by postgres)."""
        ssl_dir = os.path.join(self.dir, "bench-ssl")
        os.makedirs(ssl_dir, exist_ok=True)
        os.chmod(ssl_dir, 0o755)
        crt, key = os.path.join(ssl_dir, "server.crt"), os.path.join(ssl_dir, "server.key")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        shutil.chown(crt, "postgres", "postgres")
        shutil.chown(key, "postgres", "postgres")
        os.chmod(key, 0o600)
        run([self.tandem, "ctl", "edit-config", "--dir", self.dir, "--set", "parameters.ssl=on",
             "--set", f"parameters.ssl_cert_file={crt}", "--set", f"parameters.ssl_key_file={key}"], timeout=60)
        for m in self.dep["members"]:
            wait_until(lambda m=m: self.psql(m["pg_port"], "show ssl") == "on", 90, f"ssl=on on {m['name']}")

    # -- HAProxy --------------------------------------------------------------------------
    def start_haproxy(self):
        self.haproxy_port = free_port_range(1)
        cfg = os.path.join(self.dir, "haproxy.cfg")
        pidfile = os.path.join(self.dir, "haproxy.pid")
        servers = []
        for m in self.dep["members"]:
            api_port = int(m["api_url"].rsplit(":", 1)[1])
            servers.append(f"    server {m['name']} {m['host']}:{m['pg_port']} maxconn 100 check port {api_port}")
        with open(cfg, "w") as f:
            f.write("\n".join([
                "# Patroni's documented HAProxy setup, health-checking the Tandem agents' /primary.",
                "global", "    maxconn 1000", "",
                "defaults", "    mode tcp", "    retries 2", "    timeout connect 4s", "    timeout client 30m",
                "    timeout server 30m", "    timeout check 5s", "",
                "listen primary", f"    bind 127.0.0.1:{self.haproxy_port}",
                # Patroni's sample uses OPTIONS /primary; Tandem's agents answer /primary to GET
                # and HEAD only (405 for OPTIONS), with the same meaning.
                "    option httpchk GET /primary",
                "    http-check expect status 200",
                "    default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions",
                *servers, ""]))
        run([HAPROXY, "-c", "-f", cfg])
        run([HAPROXY, "-f", cfg, "-D", "-p", pidfile])
        self.haproxy_pid = read_pid(pidfile)
        log(f"haproxy {self.haproxy_version()} pid {self.haproxy_pid} on port {self.haproxy_port}")
        wait_until(lambda: self.psql(self.haproxy_port, "select pg_is_in_recovery()") == "f", 60,
                   "HAProxy to mark the leader up")

    @staticmethod
    def haproxy_version():
        out = run([HAPROXY, "-v"]).stdout
        return out.split()[2] if out else "?"

    # -- measurements ---------------------------------------------------------------------
    def pgbench(self, port, sslmode, connect_per_tx, seconds, host="127.0.0.1"):
        argv = [f"{PG_BIN}/pgbench", "-n", "-S", "-c", str(self.args.clients), "-j", str(self.args.threads),
                "-T", str(seconds), "-h", host, "-p", str(port), "-U", "admin", "postgres"]
        if connect_per_tx:
            argv.insert(1, "-C")
        p = run(argv, timeout=seconds + 120, env=self.env(sslmode))
        out = p.stdout
        result = {}
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("tps = "):
                result["tps"] = float(line.split()[2])
            elif line.startswith("latency average = "):
                result["latency_ms"] = float(line.split()[3])
            elif line.startswith("average connection time = "):
                result["connect_ms"] = float(line.split()[4])
            elif line.startswith("number of transactions actually processed:"):
                result["transactions"] = int(line.split(":")[1].split("/")[0])
            elif line.startswith("number of failed transactions:"):
                result["failed"] = int(line.split(":")[1].split()[0])
        if "tps" not in result:
            raise RuntimeError(f"pgbench printed no tps:\n{out}\n{p.stderr}")
        return result

    def targets(self):
        leader = self.leader()
        p1, p2 = self.portal("portal1"), self.portal("portal2")
        portal_pids = {"portal1": self.portal_pid("portal1"), "portal2": self.portal_pid("portal2")}
        # name -> (port, sslmode, -C, pid whose CPU is the proxy's, host)
        t = {
            "direct": (leader["pg_port"], "disable", False, None, "127.0.0.1"),
            "portal": (p1["port"], "disable", False, portal_pids["portal1"], "127.0.0.1"),
            "haproxy": (self.haproxy_port, "disable", False, self.haproxy_pid, "127.0.0.1"),
            "direct_tls": (leader["pg_port"], "require", False, None, "127.0.0.1"),
            "portal_tls": (p2["port"], "require", False, portal_pids["portal2"], "localhost"),
            "haproxy_tls": (self.haproxy_port, "require", False, self.haproxy_pid, "127.0.0.1"),
            "direct_C": (leader["pg_port"], "disable", True, None, "127.0.0.1"),
            "portal_C": (p1["port"], "disable", True, portal_pids["portal1"], "127.0.0.1"),
            "haproxy_C": (self.haproxy_port, "disable", True, self.haproxy_pid, "127.0.0.1"),
            "direct_tls_C": (leader["pg_port"], "require", True, None, "127.0.0.1"),
            "portal_tls_C": (p2["port"], "require", True, portal_pids["portal2"], "localhost"),
            "haproxy_tls_C": (self.haproxy_port, "require", True, self.haproxy_pid, "127.0.0.1"),
        }
        if self.args.only:
            t = {k: v for k, v in t.items() if k in self.args.only.split(",")}
        return t

    def measure(self):
        targets = self.targets()
        for name, (port, sslmode, _, _, host) in targets.items():
            ssl = self.psql(port, "select ssl from pg_stat_ssl where pid = pg_backend_pid()", sslmode, host)
            expect = "t" if sslmode == "require" and not name.startswith("portal") else "f"
            if ssl != expect:  # through the portal, the portal -> member hop is plaintext
                raise RuntimeError(f"{name}: the member sees ssl={ssl}, expected {expect}")
        results = {k: [] for k in targets}
        names = list(targets)
        for r in range(self.args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]  # rotate so no target always goes first
            for name in order:
                port, sslmode, per_tx, pid, host = targets[name]
                cpu0 = cpu_seconds(pid) if pid else None
                res = self.pgbench(port, sslmode, per_tx, self.args.seconds, host)
                if pid:
                    res["proxy_cpu_s"] = cpu_seconds(pid) - cpu0
                    res["proxy_cpu_us_per_tx"] = res["proxy_cpu_s"] * 1e6 / max(1, res.get("transactions", 1))
                res["load1"] = os.getloadavg()[0]
                results[name].append(res)
                log(f"round {r + 1}/{self.args.rounds} {name:14s} tps {res['tps']:9.1f}  latency "
                    f"{res.get('latency_ms', 0):6.3f} ms" + (f"  proxy CPU {res['proxy_cpu_us_per_tx']:.1f} us/tx"
                                                             if pid else "") + f"  load {res['load1']:.1f}")
        return results

    def cleanup(self):
        stop_pid(self.haproxy_pid)
        if self.portal1 is not None:
            stop_pid(self.portal1.pid)
            self.portal1.wait(timeout=30)
        if self.base_port is not None:
            pids = []
            run_dir = os.path.join(self.dir, "run")
            if os.path.isdir(run_dir):
                pids = [read_pid(os.path.join(run_dir, f)) for f in os.listdir(run_dir) if f.endswith(".pid")]
            for m in (self.dep or {}).get("members", []):
                pids.append(read_pid(os.path.join(self.dir, "members", m["name"], "data", "postmaster.pid")))
            p = run([self.tandem, "down", "--dir", self.dir], timeout=180, check=False)
            if p.returncode != 0:
                log(f"tandem down exited {p.returncode}: {p.stderr.strip()}")
            for pid in pids:
                if pid is not None and alive(pid):
                    log(f"pid {pid} still running after tandem down; stopping it")
                    stop_pid(pid)
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            log(f"kept {self.dir}")


def summarize(results):
    """Median per target (TPS, latency, proxy CPU per transaction) and the ratios."""
    med = {}
    for name, rs in results.items():
        if not rs:
            continue
        m = {"tps": statistics.median(r["tps"] for r in rs), "latency_ms": statistics.median(r["latency_ms"] for r in rs),
             "tps_all": [round(r["tps"], 1) for r in rs]}
        if "proxy_cpu_us_per_tx" in rs[0]:
            m["proxy_cpu_us_per_tx"] = statistics.median(r["proxy_cpu_us_per_tx"] for r in rs)
        med[name] = m

    def ratio(a, b):
        return med[a]["tps"] / med[b]["tps"] if a in med and b in med and med[b]["tps"] > 0 else None

    ratios = {
        "portal/haproxy": ratio("portal", "haproxy"),
        "portal/direct": ratio("portal", "direct"),
        "haproxy/direct": ratio("haproxy", "direct"),
        "portal_tls/direct_tls": ratio("portal_tls", "direct_tls"),
        "portal_tls/haproxy_tls": ratio("portal_tls", "haproxy_tls"),
        "portal_C/haproxy_C": ratio("portal_C", "haproxy_C"),
        "portal_C/direct_C": ratio("portal_C", "direct_C"),
        "portal_tls_C/direct_tls_C": ratio("portal_tls_C", "direct_tls_C"),
        "portal_tls_C/haproxy_tls_C": ratio("portal_tls_C", "haproxy_tls_C"),
    }
    return med, {k: v for k, v in ratios.items() if v is not None}


LABELS = {
    "direct": "direct to the leader", "portal": "Tandem portal", "haproxy": "HAProxy",
    "direct_tls": "direct to the leader, TLS", "portal_tls": "Tandem portal, TLS (terminated)",
    "haproxy_tls": "HAProxy, TLS passed through",
    "direct_C": "direct, `-C`", "portal_C": "Tandem portal, `-C`", "haproxy_C": "HAProxy, `-C`",
    "direct_tls_C": "direct, TLS, `-C`", "portal_tls_C": "Tandem portal, TLS, `-C`",
    "haproxy_tls_C": "HAProxy, TLS passed through, `-C`",
}


def render(meta, med, ratios):
    lines = [DOC_BEGIN, "",
             f"Run started {meta['started']} with `{meta['command']}`: {meta['rounds']} interleaved rounds of "
             f"`pgbench -S -c {meta['clients']} -j {meta['threads']} -T {meta['seconds']}` per row on one "
             f"`tandem up` deployment (2 members, 2 portals, 3 etcd; `pgbench -i -s 10`), HAProxy "
             f"{meta['haproxy']}, {meta['cpus']} CPUs shared by pgbench, PostgreSQL, the proxy and the agents. "
             f"Load average during the run: {meta['load_min']:.1f}–{meta['load_max']:.1f}. Figures are medians "
             "over the rounds; raw values in bench/portal/results.json.", "",
             "| Path | TPS (median) | latency avg (ms) | proxy CPU per transaction (µs) | TPS per round |",
             "|---|---:|---:|---:|---|"]
    for name, label in LABELS.items():
        if name not in med:
            continue
        m = med[name]
        cpu = f"{m['proxy_cpu_us_per_tx']:.1f}" if "proxy_cpu_us_per_tx" in m else "–"
        lines.append(f"| {label} | {m['tps']:.0f} | {m['latency_ms']:.3f} | {cpu} | "
                     f"{', '.join(str(round(x)) for x in m['tps_all'])} |")
    lines += ["", "| Ratio (TPS) | Value | Target |", "|---|---:|---|"]
    targets = {"portal/haproxy": "≥ 1.0 (aim 1.2)", "portal_tls/direct_tls": "≥ 1.0",
               "portal_C/haproxy_C": "≥ 0.9 (within 10 %)"}
    for k, v in ratios.items():
        lines.append(f"| {k} | {v:.2f} | {targets.get(k, '')} |")
    lines.append("")
    return "\n".join(lines)


def write_doc(path, section, notes):
    """Replaces the generated part of the portal section, keeping the hand-written notes."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    block = section + "\n" + notes
    if DOC_BEGIN in text:
        start = text.index(DOC_BEGIN)
        nxt = text.find("\n## ", start + len(DOC_BEGIN))
        text = text[:start] + block + (text[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated targets (e.g. direct,portal,haproxy)")
    ap.add_argument("--keep", action="store_true", help="keep the deployment directory and its logs")
    ap.add_argument("--doc", default="", help="markdown file whose portal section is rewritten")
    ap.add_argument("--notes", default="", help="markdown appended after the generated tables")
    ap.add_argument("--json", default="", help="where to write the raw results")
    ap.add_argument("--command", default="bench/portal/run.sh")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.py: run as root (PostgreSQL runs as the postgres user)")

    b = Bench(args)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        b.up()
        leader = b.leader()
        log(f"leader {leader['name']} on port {leader['pg_port']}; pgbench -i -s 10")
        run([f"{PG_BIN}/pgbench", "-i", "-s", "10", "-q", "-h", "127.0.0.1", "-p", str(leader["pg_port"]), "-U",
             "admin", "postgres"], timeout=600, env=b.env("disable"))
        b.enable_member_tls()
        b.allow_plaintext_on_portal1()
        b.start_haproxy()
        results = b.measure()
    finally:
        b.cleanup()
    med, ratios = summarize(results)
    loads = [r["load1"] for rs in results.values() for r in rs]
    meta = {"started": started, "command": args.command, "rounds": args.rounds, "seconds": args.seconds,
            "clients": args.clients, "threads": args.threads, "haproxy": Bench.haproxy_version(),
            "cpus": os.cpu_count(), "load_min": min(loads), "load_max": max(loads)}
    section = render(meta, med, ratios)
    print(section)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "median": med, "ratios": ratios, "raw": results}, f, indent=1)
    if args.doc:
        notes = open(args.notes).read() if args.notes else ""
        write_doc(args.doc, section, notes)
        log(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
