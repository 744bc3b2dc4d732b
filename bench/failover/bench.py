#!/usr/bin/python3
"""Failover and switchover benchmark: Tandem against Patroni 3.0.2, on this machine.

For each configuration: start a two-member cluster (synchronous mode on) on a three-member
etcd, then repeat an unplanned failover (kill -9 of the leader's agent and postmaster) and a
planned switchover, with a client writing every 50 ms. Prints a table, writes the raw
results as JSON and (for full runs) the "Failover and switchover" section of
docs/benchmarks.md. Run it through bench/failover/run.sh.
"""
import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import common
import report
from common import log
from patroni_cluster import PatroniCluster
from tandem_cluster import TandemCluster
from writer import Writer, missing_ids

HEALTHY_TIMEOUT = 240  # seconds for a cluster to become healthy again after an event
WARMUP = 2.0  # seconds of writes before each event
TAIL = 1.5  # seconds of writes after the new leader acknowledged its first write


class Stop(Exception):
    """SIGTERM: stop what we started and leave."""


def on_sigterm(signum, frame):
    raise Stop()


def wait_healthy(cluster):
    return common.wait_until(f"{cluster.label} to be healthy", cluster.healthy, HEALTHY_TIMEOUT, interval=0.25)


def sample_rss(cluster, into):
    for name, pid in cluster.agent_pids().items():
        kb = common.memory_kb(pid) if pid else None
        if kb is not None:
            into.append({"member": name, "pid": pid, "rss_kb": kb["rss"], "anon_kb": kb.get("anon"),
                         "pss_kb": kb.get("pss")})


def start_writer(cluster, first_id, leader):
    ports = list(cluster.members().values())
    w = Writer(ports, cluster.user, first_id)
    w.start()
    time.sleep(WARMUP)
    if w.first_ack_after(time.monotonic() - 1.0, cluster.members()[leader]) is None:
        w.stop()
        raise RuntimeError(f"the writer got no acknowledgement from the leader {leader} before the event")
    return w


def finish_writer(w, cluster, new_leader, event):
    time.sleep(TAIL)
    unfinished = w.stop()
    acks = w.acks_sorted()
    lost = missing_ids(acks, cluster.members()[new_leader], cluster.user)
    event.update({"acked": len(acks), "failed_attempts": w.failures, "unfinished_attempts": unfinished,
                  "skipped_ticks": w.skipped_ticks, "sync_cancel_warnings": w.sync_cancel_warnings,
                  "lost": len(lost), "lost_ids": lost[:20]})
    return acks


def failover_event(cluster, first_id, repeat, events):
    """kill -9 of the leader's agent and postmaster; seconds until a write is acknowledged by
    the new leader; then restart the killed member and wait until it streams again."""
    leader = wait_healthy(cluster)
    new = next(n for n in cluster.members() if n != leader)
    event = {"kind": "failover", "repeat": repeat, "old_leader": leader, "new_leader": new}
    events.append(event)
    w = start_writer(cluster, first_id, leader)
    agent_pid, pm_pid = cluster.kill_processes(leader)
    t0 = time.monotonic()
    os.kill(agent_pid, 9)
    os.kill(pm_pid, 9)
    cluster.reap(leader)
    try:
        first = common.wait_until(f"a write acknowledged by {new}",
                                  lambda: w.first_ack_after(t0, cluster.members()[new]),
                                  cluster.failover_timeout, interval=0.02)
        event["seconds"] = round(first.acked - t0, 3)
        finish_writer(w, cluster, new, event)
    except TimeoutError as e:
        w.stop()
        event.update({"seconds": None, "error": str(e), "logs": cluster.log_tails()})
    log(f"{cluster.label}: failover {leader} -> {new}: "
        f"{event['seconds'] if event['seconds'] is not None else 'NO NEW LEADER'} s, lost {event.get('lost')}")
    t = time.monotonic()
    cluster.restart_member(leader)
    wait_healthy(cluster)
    event["rejoin_seconds"] = round(time.monotonic() - t, 1)
    return w.next_id


def switchover_event(cluster, first_id, repeat, events):
    """A planned switchover under the same writer; the longest gap between acknowledged writes."""
    leader = wait_healthy(cluster)
    new = next(n for n in cluster.members() if n != leader)
    event = {"kind": "switchover", "repeat": repeat, "old_leader": leader, "new_leader": new}
    events.append(event)
    w = start_writer(cluster, first_id, leader)
    t_trigger = time.monotonic()
    try:
        cluster.switchover(leader, new)
        event["command_seconds"] = round(time.monotonic() - t_trigger, 3)
        first = common.wait_until(f"a write acknowledged by {new}",
                                  lambda: w.first_ack_after(t_trigger, cluster.members()[new]), 60, interval=0.02)
        event["to_first_write_seconds"] = round(first.acked - t_trigger, 3)
        acks = finish_writer(w, cluster, new, event)
        times = [a.acked for a in acks if a.acked >= t_trigger - 1.0]
        event["seconds"] = round(max(b - a for a, b in zip(times, times[1:])), 3)
    except (TimeoutError, RuntimeError, subprocess.SubprocessError) as e:
        w.stop()
        event.update({"seconds": None, "error": str(e), "logs": cluster.log_tails()})
    log(f"{cluster.label}: switchover {leader} -> {new}: longest write gap "
        f"{event['seconds'] if event['seconds'] is not None else 'FAILED'} s, lost {event.get('lost')}")
    t = time.monotonic()
    wait_healthy(cluster)
    event["rejoin_seconds"] = round(time.monotonic() - t, 1)
    return w.next_id


def run_system(cluster, repeats):
    result = {"label": cluster.label, "system": cluster.system, "settings": cluster.settings, "events": [],
              "rss_samples": [], "load_samples": [], "errors": []}
    os.environ["PGPASSFILE"] = cluster.pgpass
    started = time.monotonic()
    try:
        cluster.start()
        leader = wait_healthy(cluster)
        log(f"{cluster.label}: healthy, leader {leader} (start-up {time.monotonic() - started:.1f} s)")
        common.query(cluster.members()[leader], cluster.user,
                     "CREATE TABLE IF NOT EXISTS bench_writes (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        next_id = 1
        for fn in (failover_event, switchover_event):
            for i in range(repeats):
                wait_healthy(cluster)
                time.sleep(1.0)
                sample_rss(cluster, result["rss_samples"])
                result["load_samples"].append(round(os.getloadavg()[0], 2))
                next_id = fn(cluster, next_id, i + 1, result["events"])
    except (KeyboardInterrupt, Stop):
        result["errors"].append("interrupted")
        raise
    except Exception as e:
        result["errors"].append(f"{type(e).__name__}: {e}")
        result["error_logs"] = cluster.log_tails(60)
        log(f"{cluster.label}: aborted: {e}")
    finally:
        log(f"{cluster.label}: stopping")
        cluster.stop()
        result["wall_seconds"] = round(time.monotonic() - started, 1)
    return result


def machine_info(root, tandem_bin):
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))

    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "unknown"

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        # The commit that was HEAD when the binary was built (its mtime); the build may also
        # include uncommitted changes of the work tree.
        "tandem_commit": out(["git", "-C", root, "rev-list", "-1", "--abbrev-commit",
                              f"--before={int(os.path.getmtime(tandem_bin))}", "HEAD"]),
        "tandem_built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(tandem_bin))),
        "tandem_binary": tandem_bin,
        "patroni": out(["/usr/bin/patroni", "--version"]),
        "etcd": (out([common.ETCD_BIN, "--version"]).splitlines() or ["etcd ?"])[0].replace("etcd Version:", "etcd"),
        "postgresql": out([f"{common.PG_BIN}/postgres", "--version"]),
    }


def main():
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tandem", help="the tandem binary (required unless --report-only)")
    ap.add_argument("--repeats", type=int, default=5, help="events of each kind per configuration (default 5)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 2 repeats, Tandem only, docs untouched")
    ap.add_argument("--only", choices=["tandem", "patroni"], help="run one system only")
    ap.add_argument("--doc", help="markdown file to write the section into (default: docs/benchmarks.md for full runs)")
    ap.add_argument("--json", help="raw results file (default: bench/failover/results.json for full runs)")
    ap.add_argument("--low-latency-ttl", type=int, default=2, help="ttl of Tandem's low-latency run (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data) afterwards")
    ap.add_argument("--report-only", metavar="RESULTS_JSON",
                    help="rewrite the table and the doc section from a results file, without running anything")
    ap.add_argument("--command", default="bench/failover/run.sh", help="the command line to record in the report")
    args = ap.parse_args()
    if args.report_only:
        with open(args.report_only) as f:
            data = json.load(f)
        print(report.text_table(data))
        report.write_doc_section(args.doc or os.path.join(root, "docs", "benchmarks.md"), data)
        return 0
    if os.geteuid() != 0:
        sys.exit("run as root: PostgreSQL and Patroni are started as the postgres user")
    if not args.tandem:
        ap.error("--tandem is required")
    repeats = 2 if args.quick and args.repeats == 5 else args.repeats
    full = not args.quick and args.only is None
    doc = args.doc or (os.path.join(root, "docs", "benchmarks.md") if full else None)
    json_path = args.json or (os.path.join(root, "bench", "failover", "results.json") if full else None)

    signal.signal(signal.SIGTERM, on_sigterm)
    work = tempfile.mkdtemp(prefix="tandem-failover-bench-", dir="/tmp")
    os.chmod(work, 0o755)
    log(f"work directory {work}; {repeats} repeats per event kind")
    systems = []
    if args.only != "patroni":
        systems += [TandemCluster("Tandem defaults", args.tandem, work, ttl=4),
                    TandemCluster("Tandem low-latency", args.tandem, work, ttl=args.low_latency_ttl)]
    if args.only != "tandem" and not args.quick:
        systems += [PatroniCluster("Patroni defaults", work, ttl=30, loop_wait=10, retry_timeout=10),
                    PatroniCluster("Patroni tuned", work, ttl=10, loop_wait=1, retry_timeout=4)]
    info = machine_info(root, args.tandem)
    info["command"] = args.command
    info["repeats"] = repeats
    started = time.monotonic()
    results = []
    failed = False
    try:
        for s in systems:
            results.append(run_system(s, repeats))
            failed = failed or bool(results[-1]["errors"])
    except (KeyboardInterrupt, Stop):
        log("interrupted; everything started was stopped")
        failed = True
    info["wall_minutes"] = round((time.monotonic() - started) / 60, 1)
    data = {"meta": info, "systems": results}
    out_json = json_path or os.path.join(work, "results.json")
    with open(out_json, "w") as f:
        json.dump(data, f, indent=1)
    print()
    print(report.text_table(data))
    log(f"raw results: {out_json}")
    if doc and results:
        report.write_doc_section(doc, data)
        log(f"wrote the 'Failover and switchover' section of {doc}")
    if args.keep or failed:
        log(f"kept {work} (logs and data)")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
