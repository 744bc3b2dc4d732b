"""A Tandem deployment made with `tandem up`, driven through the tandem CLI.

Owned by the benchmark's main thread; the processes belong to the deployment (pid files in
DIR/run) and are stopped with `tandem down`, then by pid if anything is left.
"""
import json
import os

import common
from common import log


class TandemCluster:
    system = "tandem"
    user = "admin"

    def __init__(self, label, tandem_bin, base_dir, ttl):
        self.label = label
        self.bin = tandem_bin
        self.dir = os.path.join(base_dir, label.lower().replace(" ", "-").replace("(", "").replace(")", ""))
        self.ttl = ttl
        self.settings = f"ttl {ttl}, loop_wait 1, retry_timeout {2 if ttl >= 4 else 1}, synchronous_mode on"
        self.failover_timeout = 60 + 3 * ttl
        self.base_port = None
        self.pgpass = os.path.join(self.dir, "secrets", "pgpass")

    # -- life cycle ---------------------------------------------------------------------
    def start(self):
        common.make_dir(self.dir, 0o755)
        self.base_port = common.free_port_range(22)
        log(f"{self.label}: tandem up --dir {self.dir} --base-port {self.base_port} --ttl {self.ttl}")
        self._tandem(["up", "--dir", self.dir, "--base-port", str(self.base_port), "--detach", "--sync-mode", "on",
                      "--ttl", str(self.ttl)], timeout=240)

    def stop(self):
        if self.base_port is None:
            return
        pids = [common.read_pid(os.path.join(self.dir, "run", f)) for f in os.listdir(os.path.join(self.dir, "run"))
                if f.endswith(".pid")] if os.path.isdir(os.path.join(self.dir, "run")) else []
        pids += [self.postmaster_pid(n) for n in self.members()]
        p = common.run([self.bin, "down", "--dir", self.dir], timeout=180, check=False)
        if p.returncode != 0:
            log(f"{self.label}: tandem down exited {p.returncode}: {p.stderr.strip()}")
        for pid in pids:  # anything `tandem down` left behind (only processes of this deployment)
            if pid is not None and common.alive(pid):
                log(f"{self.label}: pid {pid} still running after tandem down; stopping it")
                common.stop_pid(pid, grace=10)

    # -- state ---------------------------------------------------------------------------
    def members(self):
        """name -> PostgreSQL port."""
        return {"pg1": self.base_port + 10, "pg2": self.base_port + 11}

    def _status(self):
        p = self._tandem(["ctl", "list", "--dir", self.dir, "--json"], timeout=20)
        return json.loads(p.stdout)

    def leader(self):
        return self._status().get("leader")

    def healthy(self):
        """Leader name when the leader runs as primary, the other member streams and is the
        synchronous standby (in etcd and in pg_stat_replication); else None."""
        s = self._status()
        leader = s.get("leader")
        if not leader:
            return None
        by_name = {m["name"]: m for m in s.get("members", [])}
        lm = by_name.get(leader)
        if lm is None or lm.get("role") != "leader" or lm.get("state") != "running":
            return None
        others = [n for n in self.members() if n != leader]
        for n in others:
            m = by_name.get(n)
            if m is None or m.get("state") != "streaming":
                return None
        sync = (s.get("sync") or {}).get("sync_standby")
        if sync not in others:
            return None
        if not common.replication_ok(self.members()[leader], self.user):
            return None
        return leader

    def agent_pids(self):
        return {n: common.read_pid(os.path.join(self.dir, "run", f"{n}.pid")) for n in self.members()}

    def postmaster_pid(self, name):
        return common.read_pid(os.path.join(self.dir, "members", name, "data", "postmaster.pid"))

    # -- events --------------------------------------------------------------------------
    def kill_processes(self, name):
        """(agent pid, postmaster pid) of a member, to be killed together."""
        return self.agent_pids()[name], self.postmaster_pid(name)

    def reap(self, name):
        """Nothing to reap: the agents are not our children."""

    def restart_member(self, name):
        self._tandem(["up", "--dir", self.dir, "--detach"], timeout=240)

    def switchover(self, leader, candidate):
        self._tandem(["ctl", "switchover", "--dir", self.dir, "--candidate", candidate], timeout=120)

    def log_tails(self, lines=40):
        out = []
        for n in self.members():
            for suffix in ("", "-postgresql"):
                path = os.path.join(self.dir, "logs", f"{n}{suffix}.log")
                out.append(f"--- {path} (last {lines} lines)\n{common.tail(path, lines)}")
        return "\n".join(out)

    def _tandem(self, args, timeout):
        return common.run([self.bin] + args, timeout=timeout)
