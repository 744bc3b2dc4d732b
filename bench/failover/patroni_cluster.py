"""A Patroni 3.0.2 cluster of two members on its own three-member etcd, for comparison.

Owned by the benchmark's main thread, which starts every process here (etcd as root,
Patroni as the postgres user) and stops them by pid.
"""
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request

import yaml

import common
from common import log


class EtcdCluster:
    """Three etcd members on loopback, like the ones `tandem up` starts."""

    def __init__(self, base_dir, base_port):
        self.dir = base_dir
        self.nodes = [(f"e{i + 1}", base_port + 2 * i, base_port + 2 * i + 1) for i in range(3)]
        self.procs = []

    def endpoints(self):
        return [f"127.0.0.1:{c}" for _, c, _ in self.nodes]

    def start(self):
        initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, _, p in self.nodes)
        for name, client, peer in self.nodes:
            data = os.path.join(self.dir, name)
            common.make_dir(data, 0o700)
            out = open(os.path.join(self.dir, f"{name}.log"), "ab")
            self.procs.append(subprocess.Popen(
                [common.ETCD_BIN, "--name", name, "--data-dir", data,
                 "--listen-client-urls", f"http://127.0.0.1:{client}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", initial, "--initial-cluster-token", "bench",
                 "--initial-cluster-state", "new", "--logger=zap"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir))
            out.close()

        def all_healthy():
            for _, client, _ in self.nodes:
                with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=2) as r:
                    if json.load(r).get("health") != "true":
                        return False
            return True

        common.wait_until("etcd to be healthy", all_healthy, 60)

    def stop(self):
        for p in self.procs:
            common.stop_pid(p.pid, grace=10, popen=p)
        self.procs = []

    def pids(self):
        return [p.pid for p in self.procs]


class PatroniCluster:
    system = "patroni"
    user = "postgres"

    def __init__(self, label, base_dir, ttl, loop_wait, retry_timeout):
        self.label = label
        self.dir = os.path.join(base_dir, label.lower().replace(" ", "-").replace("(", "").replace(")", "")
                                .replace("/", "-").replace(",", ""))
        self.ttl, self.loop_wait, self.retry_timeout = ttl, loop_wait, retry_timeout
        self.settings = f"ttl {ttl}, loop_wait {loop_wait}, retry_timeout {retry_timeout}, synchronous_mode on"
        self.failover_timeout = 60 + 2 * ttl + 2 * loop_wait
        self.base_port = None
        self.etcd = None
        self.procs = {}
        self.pgpass = os.path.join(self.dir, "client.pgpass")
        self.scope = "bench"

    # -- life cycle ---------------------------------------------------------------------
    def start(self):
        ids = common.postgres_ids()
        common.make_dir(self.dir, 0o755)
        self.base_port = common.free_port_range(22)
        self.etcd = EtcdCluster(os.path.join(self.dir, "etcd"), self.base_port)
        common.make_dir(self.etcd.dir, 0o755)
        self.etcd.start()
        superuser_pw, repl_pw = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
        for name in self.members():
            common.make_dir(self._member_dir(name), 0o755, ids)
            common.make_dir(os.path.join(self._member_dir(name), "run"), 0o700, ids)
            path = self._config_path(name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                yaml.safe_dump(self._config(name, superuser_pw, repl_pw), f, sort_keys=False)
            os.chown(path, ids[0], ids[1])
        with open(os.open(self.pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(f"127.0.0.1:*:*:postgres:{superuser_pw}\n")
        log(f"{self.label}: etcd on {self.base_port}..{self.base_port + 5}, "
            f"PostgreSQL on {self.base_port + 10}/{self.base_port + 11}, REST API on {self.base_port + 20}/{self.base_port + 21}")
        self._spawn("pg1")
        common.wait_until("pg1 to bootstrap and lead", lambda: self._cluster_view().get("pg1", {}).get("role") == "leader",
                          120, interval=0.5)
        self._spawn("pg2")

    def stop(self):
        if self.base_port is None:
            return
        for name in list(self.procs):
            p = self.procs.pop(name)
            common.stop_pid(p.pid, grace=60, popen=p)  # Patroni stops its PostgreSQL on SIGTERM
        for name in self.members():
            pm = self.postmaster_pid(name)
            if pm is not None and common.alive(pm) and self._is_postgres(pm):
                log(f"{self.label}: postmaster {pm} of {name} outlived Patroni; stopping it")
                common.stop_pid(pm, grace=20)
        if self.etcd is not None:
            self.etcd.stop()

    # -- state ---------------------------------------------------------------------------
    def members(self):
        return {"pg1": self.base_port + 10, "pg2": self.base_port + 11}

    def _api_port(self, name):
        return self.base_port + 20 + (0 if name == "pg1" else 1)

    def _cluster_view(self):
        """name -> member entry of GET /cluster, from the first agent that answers."""
        last = None
        for name in self.members():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self._api_port(name)}/cluster", timeout=2) as r:
                    return {m["name"]: m for m in json.load(r).get("members", [])}
            except (OSError, ValueError) as e:
                last = e
        raise RuntimeError(f"no Patroni REST API answered: {last}")

    def leader(self):
        for name, m in self._cluster_view().items():
            if m.get("role") == "leader":
                return name
        return None

    def healthy(self):
        view = self._cluster_view()
        leaders = [n for n, m in view.items() if m.get("role") == "leader" and m.get("state") == "running"]
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        for n in self.members():
            if n == leader:
                continue
            m = view.get(n)
            if m is None or m.get("role") != "sync_standby" or m.get("state") not in ("running", "streaming"):
                return None
        if not common.replication_ok(self.members()[leader], self.user):
            return None
        return leader

    def agent_pids(self):
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def postmaster_pid(self, name):
        return common.read_pid(os.path.join(self._member_dir(name), "data", "postmaster.pid"))

    # -- events --------------------------------------------------------------------------
    def kill_processes(self, name):
        return self.procs[name].pid, self.postmaster_pid(name)

    def reap(self, name):
        self.procs.pop(name).wait(timeout=10)

    def restart_member(self, name):
        self._spawn(name)

    def switchover(self, leader, candidate):
        body = json.dumps({"leader": leader, "candidate": candidate}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self._api_port(leader)}/switchover", data=body,
                                     method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                answer = r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"POST /switchover: HTTP {e.code}: {e.read().decode()}")
        if "Successfully" not in answer:
            raise RuntimeError(f"POST /switchover: {answer}")

    def log_tails(self, lines=40):
        return "\n".join(f"--- {self._log_path(n)} (last {lines} lines)\n{common.tail(self._log_path(n), lines)}"
                         for n in self.members())

    # -- internals -----------------------------------------------------------------------
    def _member_dir(self, name):
        return os.path.join(self.dir, name)

    def _config_path(self, name):
        return os.path.join(self._member_dir(name), "patroni.yml")

    def _log_path(self, name):
        return os.path.join(self.dir, f"{name}.log")

    def _is_postgres(self, pid):
        try:
            return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "postgres"
        except OSError:
            return False

    def _spawn(self, name):
        out = open(self._log_path(name), "ab")
        env = {"PATH": "/usr/bin:/bin", "HOME": "/var/lib/postgresql", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        self.procs[name] = subprocess.Popen(
            ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "/usr/bin/patroni",
             self._config_path(name)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=self._member_dir(name), env=env)
        out.close()
        time.sleep(0.2)
        if self.procs[name].poll() is not None:
            raise RuntimeError(f"patroni {name} exited at once:\n{common.tail(self._log_path(name))}")

    def _config(self, name, superuser_pw, repl_pw):
        member_dir = self._member_dir(name)
        pg_port, api_port = self.members()[name], self._api_port(name)
        return {
            "scope": self.scope,
            "namespace": "/service/",
            "name": name,
            "restapi": {"listen": f"127.0.0.1:{api_port}", "connect_address": f"127.0.0.1:{api_port}"},
            "etcd3": {"hosts": self.etcd.endpoints()},
            "bootstrap": {
                "dcs": {
                    "ttl": self.ttl,
                    "loop_wait": self.loop_wait,
                    "retry_timeout": self.retry_timeout,
                    "maximum_lag_on_failover": 1048576,
                    "synchronous_mode": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        # The same replication settings Tandem uses.
                        "parameters": {"wal_keep_size": "256MB", "hot_standby_feedback": "on",
                                       "max_wal_senders": 10, "max_replication_slots": 10},
                    },
                },
                "initdb": [{"encoding": "UTF8"}, "data-checksums"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{pg_port}",
                "connect_address": f"127.0.0.1:{pg_port}",
                "data_dir": os.path.join(member_dir, "data"),
                "bin_dir": common.PG_BIN,
                "pgpass": os.path.join(member_dir, "pgpass"),
                "use_pg_rewind": True,
                # Only the member's rejoin path; no effect on the figures measured.
                "remove_data_directory_on_rewind_failure": True,
                "authentication": {
                    "superuser": {"username": "postgres", "password": superuser_pw},
                    "replication": {"username": "replicator", "password": repl_pw},
                },
                "parameters": {"unix_socket_directories": os.path.join(member_dir, "run")},
                "pg_hba": [
                    "local all all trust",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }
