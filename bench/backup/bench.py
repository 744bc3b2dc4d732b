#!/usr/bin/python3
"""Backup benchmark driver (see run.sh). One PostgreSQL 15 with a pgbench database; each
tool backs it up and restores it; then WAL archiving throughput after a burst.

Per run: wall seconds, MB/s (database bytes / wall), stored bytes and compression ratio,
CPU seconds of the tool's processes (rusage of the child) plus the server processes that
served it (walsender, archiver children: /proc of the postmaster's children, sampled).
Results go to bench/backup/results.json and a Markdown table on stdout."""
import argparse
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def free_port():
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def run(cmd, user=None, check=True, env=None, capture=True):
    if user:
        cmd = ["runuser", "-u", user, "--"] + cmd
    r = subprocess.run(cmd, capture_output=capture, text=True, env=env, cwd="/")
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
            except OSError:
                pass
    return total


def proc_cpu(pid, reaped=True):
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        # utime + stime (+ cutime + cstime: archive_command children are reaped by the archiver)
        return sum(int(parts[i]) for i in ((11, 12, 13, 14) if reaped else (11, 12))) / TICK
    except (OSError, IndexError, ValueError):
        return None


def matching(pattern):
    """Pids whose command line contains `pattern` (bytes)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if pattern in f.read():
                    out.append(int(name))
        except OSError:
            pass
    return out


def children(ppid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            if int(parts[1]) == ppid:
                out.append(int(name))
        except (OSError, IndexError, ValueError):
            pass
    return out


class ServerCpu:
    """CPU used by the postmaster's children while a measurement runs (sampled every
    100 ms, so short-lived processes such as the walsender are counted), and by processes
    whose command line contains `also` (pgBackRest's detached async archiver and its
    workers, which are neither the postmaster's children nor ours; their own CPU only, as
    each is sampled itself)."""

    def __init__(self, postmaster_pid, also=None):
        self.pm = postmaster_pid
        self.also = also
        self.base = self.sample()
        self.last = dict(self.base)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def sample(self):
        out = {}
        for p in children(self.pm):
            c = proc_cpu(p)
            if c is not None:
                out[p] = c
        for p in matching(self.also) if self.also else []:
            c = proc_cpu(p, reaped=False)
            if c is not None and p not in out:
                out[p] = c
        return out

    def _loop(self):
        while not self.stop.is_set():
            self.last.update(self.sample())
            time.sleep(0.1)

    def finish(self):
        self.stop.set()
        self.thread.join()
        self.last.update(self.sample())
        return sum(v - self.base.get(p, 0.0) for p, v in self.last.items())


class Measure:
    """Wall time, CPU of the command (children rusage) and of the server."""

    def __init__(self, bench):
        self.bench = bench

    def __call__(self, cmd, user=None, env=None):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        srv = ServerCpu(self.bench.postmaster_pid())
        t0 = time.monotonic()
        r = run(cmd, user=user, env=env)
        wall = time.monotonic() - t0
        server = srv.finish()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {"wall_s": round(wall, 2), "client_cpu_s": round(client, 2), "server_cpu_s": round(server, 2),
                "output": r.stdout}


class Bench:
    def __init__(self, args):
        self.args = args
        self.tandem = os.path.abspath(args.tandem)
        self.work = args.workdir
        self.data = f"{self.work}/pgdata"
        self.sock = f"{self.work}/run"
        self.port = free_port()
        self.results = {"backup": [], "restore": [], "wal": []}
        self.s3 = None

    # ---------- setup ----------
    def sh_postgres(self, *paths):
        for p in paths:
            os.makedirs(p, exist_ok=True)
            shutil.chown(p, "postgres", "postgres")

    def postmaster_pid(self):
        with open(f"{self.data}/postmaster.pid") as f:
            return int(f.readline())

    def sql(self, q):
        return run([f"{PG_BIN}/psql", "-h", self.sock, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                    "-Atqc", q]).stdout.strip()

    def set_archive(self, command, extra=None, settle=True):
        lines = [f"archive_command = '{command}'"] + [f"{k} = '{v}'" for k, v in (extra or {}).items()]
        with open(f"{self.data}/archive.conf", "w") as f:
            f.write("\n".join(lines) + "\n")
        self.sql("SELECT pg_reload_conf()")
        if settle:
            time.sleep(0.5)

    def setup(self):
        marker = f"{self.work}/pgbench-scale-{self.args.scale}"
        reuse = self.args.reuse and os.path.exists(marker)
        if reuse:
            log(f"reusing the pgbench database in {self.data}")
            for d in ("repo-file", "pgbr-repo", "pgbr-spool", "restore", "pgbb", "s3"):
                shutil.rmtree(f"{self.work}/{d}", ignore_errors=True)
        elif os.path.exists(self.work):
            shutil.rmtree(self.work)
        os.makedirs(self.work, exist_ok=True)
        os.chmod(self.work, 0o755)
        self.sh_postgres(self.data, self.sock, f"{self.work}/repo-file", f"{self.work}/pgbr-repo",
                         f"{self.work}/pgbr-spool", f"{self.work}/restore", f"{self.work}/pgbb")
        os.chmod(self.data, 0o700)
        if not reuse:
            run([f"{PG_BIN}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres"], user="postgres")
        with open(f"{self.data}/postgresql.conf", "a") as f:
            f.write(f"""
port = {self.port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '{self.sock}'
shared_buffers = 512MB
max_wal_size = 8GB
wal_level = replica
max_wal_senders = 10
archive_mode = on
archive_command = '/bin/true'
include_if_exists = 'archive.conf'
""")
        self.key = f"{self.work}/backup.key"
        with open(self.key, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(self.key, 0o600)
        shutil.chown(self.key, "postgres", "postgres")
        self.creds = f"{self.work}/s3.credentials"
        with open(self.creds, "w") as f:
            f.write("[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n")
        os.chmod(self.creds, 0o600)
        shutil.chown(self.creds, "postgres", "postgres")
        open(f"{self.work}/postgresql.log", "a").close()
        shutil.chown(f"{self.work}/postgresql.log", "postgres", "postgres")
        run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", f"{self.work}/postgresql.log", "-w", "-t", "300", "start"],
            user="postgres")
        if not reuse:
            log(f"pgbench -i -s {self.args.scale} on port {self.port}")
            run([f"{PG_BIN}/pgbench", "-i", "-q", "-s", str(self.args.scale), "-h", self.sock, "-p", str(self.port),
                 "-U", "postgres", "postgres"])
            open(marker, "w").close()
        self.sql("DROP TABLE IF EXISTS burst")
        self.sql("CHECKPOINT")
        self.db_bytes = du(self.data) - du(f"{self.data}/pg_wal")
        log(f"data directory without pg_wal: {self.db_bytes / 1e6:.0f} MB")
        # Warm the page cache the same way for everyone.
        run(["tar", "-cf", "/dev/null", self.data])
        self.start_s3()
        self.pgbr_conf = f"{self.work}/pgbackrest.conf"
        with open(self.pgbr_conf, "w") as f:
            f.write(f"""[global]
repo1-path={self.work}/pgbr-repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass={os.urandom(24).hex()}
repo1-retention-full=10
compress-type=zst
start-fast=y
log-level-console=warn
log-level-file=off
spool-path={self.work}/pgbr-spool
lock-path={self.work}/pgbr-spool

[bench]
pg1-path={self.data}
pg1-port={self.port}
pg1-socket-path={self.sock}
pg1-user=postgres
""")
        shutil.chown(self.pgbr_conf, "postgres", "postgres")
        os.chmod(self.pgbr_conf, 0o600)
        run(["pgbackrest", f"--config={self.pgbr_conf}", "--stanza=bench", "stanza-create"], user="postgres")

    def start_s3(self):
        node = shutil.which("node")
        if not node:
            log("node not found: skipping the S3 runs")
            return
        self.s3_port = free_port()
        os.makedirs(f"{self.work}/s3", exist_ok=True)
        # HTTPS, as S3 is used in practice (and as pgBackRest requires): a CA of the bench's
        # own and a certificate for 127.0.0.1; tandem verifies it through ?ca_file=.
        tls = f"{self.work}/s3-tls"
        os.makedirs(tls, exist_ok=True)
        with open(f"{tls}/san.ext", "w") as f:
            f.write("subjectAltName = IP:127.0.0.1\n")
        for cmd in (["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-days", "2", "-subj", "/CN=bench S3 CA", "-keyout", f"{tls}/ca.key", "-out", f"{tls}/ca.crt"],
                    ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
                     "/CN=127.0.0.1", "-keyout", f"{tls}/server.key", "-out", f"{tls}/server.csr"],
                    ["openssl", "x509", "-req", "-in", f"{tls}/server.csr", "-CA", f"{tls}/ca.crt", "-CAkey",
                     f"{tls}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{tls}/san.ext", "-out",
                     f"{tls}/server.crt"]):
            run(cmd)
        os.chmod(f"{tls}/ca.crt", 0o644)
        os.chmod(tls, 0o755)
        self.s3_ca = f"{tls}/ca.crt"
        env = dict(os.environ, NODE_PATH=f"{self.args.root}/node_modules")
        self.s3 = subprocess.Popen([node, "--openssl-legacy-provider", f"{self.args.root}/scripts/s3rver.js", "--dir",
                                    f"{self.work}/s3", "--port", str(self.s3_port), "--bucket", "tandem", "--key",
                                    f"{tls}/server.key", "--cert", f"{tls}/server.crt"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                   cwd=self.args.root)
        line = self.s3.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"s3rver did not start: {line}")

    def cleanup(self):
        run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "fast", "stop"], user="postgres", check=False)
        if self.s3:
            self.s3.send_signal(signal.SIGTERM)
            self.s3.wait(10)
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    # ---------- backups ----------
    def s3_url(self):
        return f"s3://tandem/bench?endpoint=https://127.0.0.1:{self.s3_port}&ca_file={self.s3_ca}"

    def repo_args(self, s3):
        if s3:
            return ["--store", self.s3_url(), "--key-file", self.key, "--credentials-file", self.creds]
        return ["--store", f"file://{self.work}/repo-file", "--key-file", self.key]

    def tandem_archive_command(self):
        cmds = [" ".join([self.tandem, "wal-push"] + self.repo_args(False) + ["%p"])]
        if self.s3:
            url = self.s3_url()
            cmds.append(f"{self.tandem} wal-push --store \"{url}\" --key-file {self.key} "
                        f"--credentials-file {self.creds} %p")
        return " && ".join(cmds)

    def record_backup(self, name, m, stored):
        m["name"] = name
        m["db_mb"] = round(self.db_bytes / 1e6)
        m["mb_s"] = round(self.db_bytes / 1e6 / m["wall_s"], 1)
        m["stored_mb"] = round(stored / 1e6, 1)
        m["ratio"] = round(self.db_bytes / stored, 2) if stored else None
        m["cpu_s"] = round(m["client_cpu_s"] + m["server_cpu_s"], 2)
        m.pop("output", None)
        self.results["backup"].append(m)
        log(f"backup {name}: {m['wall_s']}s, {m['mb_s']} MB/s, stored {m['stored_mb']} MB (ratio {m['ratio']}), "
            f"cpu {m['cpu_s']}s (client {m['client_cpu_s']}, server {m['server_cpu_s']})")

    def bench_backups(self):
        measure = Measure(self)
        self.set_archive(self.tandem_archive_command().replace("'", "''"))
        self.tandem_ids = {}
        variants = [(False, [], "tandem file://"), (False, ["--zstd-workers", "2"], "tandem file:// zstd workers=2")]
        if self.s3:
            variants += [(True, [], "tandem s3rver https"),
                         (True, ["--zstd-workers", "2"], "tandem s3rver https zstd workers=2")]
        for s3, extra, name in variants:
            m = measure([self.tandem, "backup", "create", "--json", "--pg-host", self.sock, "--pg-port",
                         str(self.port), "--pg-user", "postgres"] + extra + self.repo_args(s3))
            manifest = json.loads(m["output"])
            self.tandem_ids.setdefault(s3, manifest["id"])
            self.record_backup(name, m, manifest["stored_bytes"])
        for label, extra in (("pg_basebackup -Ft", []),
                             ("pg_basebackup -Ft server-zstd", ["--compress=server-zstd"]),
                             ("pg_basebackup -Ft server-zstd:workers=2", ["--compress=server-zstd:workers=2"])):
            out = f"{self.work}/pgbb/{len(self.results['backup'])}"
            m = measure([f"{PG_BIN}/pg_basebackup", "-D", out, "-Ft", "-X", "none", "-c", "fast", "-h", self.sock,
                         "-p", str(self.port), "-U", "postgres"] + extra, user="postgres")
            self.record_backup(label, m, du(out))
            self.pgbb_dirs = getattr(self, "pgbb_dirs", {})
            self.pgbb_dirs[label] = out
        self.set_archive(f"pgbackrest --config={self.pgbr_conf} --stanza=bench archive-push %p")
        self.pgbr_sets = {}
        for pm in (1, 2):
            before = du(f"{self.work}/pgbr-repo/backup")
            m = measure(["pgbackrest", f"--config={self.pgbr_conf}", "--stanza=bench", "--type=full",
                         f"--process-max={pm}", "backup"], user="postgres")
            info = json.loads(run(["pgbackrest", f"--config={self.pgbr_conf}", "--stanza=bench", "--output=json",
                                   "info"], user="postgres").stdout)
            label = info[0]["backup"][-1]["label"]
            self.pgbr_sets[pm] = label
            stored = du(f"{self.work}/pgbr-repo/backup") - before
            self.record_backup(f"pgBackRest zstd+aes process-max {pm}", m, stored)

    # ---------- restores ----------
    def record_restore(self, name, m, target):
        m["name"] = name
        m["mb_s"] = round(self.db_bytes / 1e6 / m["wall_s"], 1)
        m["restored_mb"] = round(du(target) / 1e6)
        m["cpu_s"] = round(m["client_cpu_s"], 2)
        m.pop("output", None)
        m.pop("server_cpu_s", None)
        self.results["restore"].append(m)
        log(f"restore {name}: {m['wall_s']}s, {m['mb_s']} MB/s, cpu {m['cpu_s']}s, {m['restored_mb']} MB")
        shutil.rmtree(target, ignore_errors=True)

    def bench_restores(self):
        measure = Measure(self)
        base = f"{self.work}/restore"
        for s3, bid in self.tandem_ids.items():
            target = f"{base}/tandem-{'s3' if s3 else 'file'}"
            m = measure([self.tandem, "backup", "extract", bid, target] + self.repo_args(s3))
            self.record_restore("tandem s3rver https" if s3 else "tandem file://", m, target)
        for label, out in self.pgbb_dirs.items():
            target = f"{base}/pgbb"
            os.makedirs(target)
            shutil.chown(target, "postgres", "postgres")
            tar = ["tar", "-xf", f"{out}/base.tar", "-C", target]
            if "zstd" in label:
                tar = ["tar", "--use-compress-program=zstd -T0", "-xf", f"{out}/base.tar.zst", "-C", target]
            m = measure(tar, user="postgres")
            self.record_restore(f"tar -x ({label})", m, target)
        for pm, label in self.pgbr_sets.items():
            target = f"{base}/pgbr"
            os.makedirs(target, mode=0o700)
            shutil.chown(target, "postgres", "postgres")
            m = measure(["pgbackrest", f"--config={self.pgbr_conf}", "--stanza=bench", f"--pg1-path={target}",
                         f"--set={label}", f"--process-max={pm}", "restore"], user="postgres")
            self.record_restore(f"pgBackRest restore process-max {pm}", m, target)

    # ---------- WAL archiving ----------
    def ready_count(self):
        d = f"{self.data}/pg_wal/archive_status"
        return sum(1 for f in os.listdir(d) if f.endswith(".ready"))

    def archiver_start(self):
        return self.sql("SELECT coalesce(max(backend_start)::text, '') FROM pg_stat_activity "
                        "WHERE backend_type = 'archiver'")

    def burst(self, module=None):
        """Fills pg_wal with ready segments while archiving fails. With `module` (the path of
        tandem_archive.so), the failing setting is the module with no socket and /bin/false as
        its fallback, so that switching to the method is a reload like for archive_command
        (changing archive_library restarts PostgreSQL's archiver, at most once per 10 s);
        that restart is waited for here, before the clock starts."""
        before = self.archiver_start()
        library = self.sql("SHOW archive_library")
        if module:
            self.set_archive("", {"archive_library": module, "tandem_archive.socket": "",
                                  "tandem_archive.fallback_command": "/bin/false"})
        else:
            self.set_archive("/bin/false")
        self.sql("CREATE TABLE IF NOT EXISTS burst (id bigint, pad text)")
        target = self.args.burst
        while self.ready_count() < target:
            self.sql("INSERT INTO burst SELECT g, md5(g::text) || md5((g+1)::text) FROM generate_series(1, 300000) g")
            self.sql("SELECT pg_switch_wal()")
        if library != (module or ""):
            t0 = time.monotonic()
            while self.archiver_start() in ("", before):
                time.sleep(0.2)
                if time.monotonic() - t0 > 120:
                    raise RuntimeError("PostgreSQL's archiver did not restart after archive_library changed")
        return self.ready_count()

    def bench_wal(self):
        """Each method drains the same kind of burst; the clock starts when archive_command
        is switched from /bin/false to the method's command (and, for the tandem archiver,
        when `tandem wal-archiver` is started: it does not run during the burst, as
        pgBackRest's async process does not either). Ends when no .ready file is left.
        The archive module method is switched by a reload too (see burst()): the module's
        socket and fallback command are set, and the archiver started."""
        spool = f"{self.work}/tandem-spool"
        self.sh_postgres(spool)
        pgbr = f"pgbackrest --config={self.pgbr_conf} --stanza=bench"
        tandem_push = " ".join([self.tandem, "wal-push"] + self.repo_args(False))
        module = os.path.join(os.path.dirname(self.tandem), "tandem_archive.so")
        sock = f"{self.sock}/wal-archiver.sock"
        # (name, archive_command, run `tandem wal-archiver`, archive module settings or None)
        methods = [("tandem wal-push (file://), no archiver", f"{tandem_push} %p", False, None),
                   ("tandem wal-push + wal-archiver (file://, 2 workers)", f"{tandem_push} --spool-dir {spool} %p",
                    True, None),
                   ("pgBackRest archive-push sync", f"{pgbr} --archive-async=n archive-push %p", False, None),
                   ("pgBackRest archive-push async (process-max 2)",
                    f"{pgbr} --archive-async=y --process-max=2 archive-push %p", False, None),
                   ("tandem archive module + wal-archiver (file://, 2 workers)", "", True,
                    {"archive_library": module, "tandem_archive.socket": sock,
                     "tandem_archive.fallback_command": f"{tandem_push} --spool-dir {spool} %p"})]
        if not os.path.exists(module):
            log(f"{module} not built: skipping the archive module method")
        only = [m for m in self.args.wal_methods.split(",") if m]
        self.sql("CREATE TABLE IF NOT EXISTS burst (id bigint, pad text)")
        for round_no in range(1, self.args.wal_rounds + 1):
            for i, (name, command, archiver, settings) in enumerate(methods):
                if only and str(i + 1) not in only:
                    continue
                if settings and not os.path.exists(module):
                    continue
                self.sql("TRUNCATE burst")
                self.sql("CHECKPOINT")
                n = self.burst(module if settings else None)
                srv = ServerCpu(self.postmaster_pid(), b"archive-push:" if "async" in name else None)
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.monotonic()
                proc = None
                if archiver:
                    sock_args = ["--socket", sock] if settings else ["--no-socket"]
                    # setpriv, not runuser: runuser would kill the archiver on SIGTERM (no clean
                    # stop) and its CPU would not reach our RUSAGE_CHILDREN.
                    proc = subprocess.Popen(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                                             self.tandem, "wal-archiver"] +
                                            self.repo_args(False) + ["--pgdata", self.data, "--spool-dir", spool] +
                                            sock_args,
                                            stdout=subprocess.DEVNULL, stderr=open(f"{self.work}/wal-archiver.log", "a"),
                                            cwd="/")
                self.set_archive(command, settings, settle=False)
                while self.ready_count() > 0:
                    time.sleep(0.02)
                    if time.monotonic() - t0 > 900:
                        raise RuntimeError(f"{name}: archiving did not finish")
                wall = time.monotonic() - t0
                if proc:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
                cpu = srv.finish()
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                tool = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                r = {"name": name, "round": round_no, "segments": n, "wall_s": round(wall, 2),
                     "segments_s": round(n / wall, 1), "cpu_s": round(cpu + tool, 2),
                     "load": round(os.getloadavg()[0], 1)}
                self.results["wal"].append(r)
                log(f"wal {name} (round {round_no}): {n} segments in {r['wall_s']}s = {r['segments_s']}/s, "
                    f"cpu {r['cpu_s']}s, load {r['load']}")

    def report(self):
        print("\n| backup | wall s | MB/s | stored MB | ratio | CPU s (client + server) |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in self.results["backup"]:
            print(f"| {r['name']} | {r['wall_s']} | {r['mb_s']} | {r['stored_mb']} | {r['ratio']} | "
                  f"{r['cpu_s']} ({r['client_cpu_s']} + {r['server_cpu_s']}) |")
        print("\n| restore | wall s | MB/s | CPU s |")
        print("|---|---:|---:|---:|")
        for r in self.results["restore"]:
            print(f"| {r['name']} | {r['wall_s']} | {r['mb_s']} | {r['cpu_s']} |")
        print("\n| WAL archiving after a burst | round | segments | wall s | segments/s | CPU s | load |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in self.results["wal"]:
            print(f"| {r['name']} | {r['round']} | {r['segments']} | {r['wall_s']} | {r['segments_s']} | "
                  f"{r['cpu_s']} | {r['load']} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--scale", type=int, default=100)
    ap.add_argument("--burst", type=int, default=64, help="WAL segments in the archiving burst")
    ap.add_argument("--workdir", default="/var/tmp/tandem-bench-backup")
    ap.add_argument("--only", default="backup,restore,wal")
    ap.add_argument("--wal-rounds", type=int, default=3, help="rounds of the WAL methods (interleaved)")
    ap.add_argument("--wal-methods", default="", help="comma-separated 1-based subset of the WAL methods")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (and the database) afterwards")
    ap.add_argument("--reuse", action="store_true", help="reuse a database a --keep run left in --workdir")
    args = ap.parse_args()
    b = Bench(args)
    try:
        b.setup()
        only = [o for o in args.only.split(",") if o]
        if not only:
            return
        if "backup" in only or "restore" in only:
            b.bench_backups()
        if "restore" in only:
            b.bench_restores()
        if "wal" in only:
            b.bench_wal()
        b.results["machine"] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}
        b.results["db_mb"] = round(b.db_bytes / 1e6)
        # A partial run (--only) does not overwrite the figures of a full one.
        out = "results.json" if set(only) == {"backup", "restore", "wal"} else f"results-{'-'.join(only)}.json"
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), out), "w") as f:
            json.dump(b.results, f, indent=2)
        b.report()
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
