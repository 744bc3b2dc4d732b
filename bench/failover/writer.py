"""The benchmark's client: one INSERT attempt every 50 ms, each on a new connection.

Each attempt runs in its own thread, so an attempt that hangs (a connect that times out, a
commit waiting for a synchronous standby) never delays the next one: the record shows when
the service accepted writes, at 50 ms resolution. Owned and driven by the benchmark's main
thread (start/stop); attempts append to `acks` under a lock.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2


class Ack:
    """One acknowledged INSERT: its id, when it was sent and acknowledged (monotonic), and
    the port of the server that acknowledged it."""

    __slots__ = ("id", "sent", "acked", "port")

    def __init__(self, id_, sent, acked, port):
        self.id, self.sent, self.acked, self.port = id_, sent, acked, port


class Writer:
    def __init__(self, ports, user, first_id, interval=0.05, max_in_flight=60):
        hosts = ",".join("127.0.0.1" for _ in ports)
        self.dsn = (f"host={hosts} port={','.join(str(p) for p in ports)} dbname=postgres user={user} "
                    "connect_timeout=1 target_session_attrs=read-write application_name=failover-bench-writer")
        self.next_id = first_id
        self.interval = interval
        self.max_in_flight = max_in_flight
        self.acks = []
        self.failures = 0
        self.skipped_ticks = 0
        self.sync_cancel_warnings = 0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight)
        self._ticker = threading.Thread(target=self._tick, name="writer-ticker", daemon=True)

    def start(self):
        self._ticker.start()

    def stop(self, drain_timeout=15.0):
        """Stops starting attempts and waits for those in flight. Returns how many were
        still unfinished (neither acknowledged nor failed) after `drain_timeout`."""
        self._stop.set()
        self._ticker.join()
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._in_flight == 0:
                    break
            time.sleep(0.05)
        self._pool.shutdown(wait=False)
        with self._lock:
            return self._in_flight

    def acks_sorted(self):
        with self._lock:
            return sorted(self.acks, key=lambda a: a.acked)

    def first_ack_after(self, t, port=None):
        """The earliest acknowledgement received after `t`, optionally from one server port."""
        with self._lock:
            cands = [a for a in self.acks if a.acked > t and (port is None or a.port == port)]
        return min(cands, key=lambda a: a.acked) if cands else None

    def _tick(self):
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                busy = self._in_flight >= self.max_in_flight
                if not busy:
                    self._in_flight += 1
                    id_ = self.next_id
                    self.next_id += 1
                else:
                    self.skipped_ticks += 1
            if not busy:
                self._pool.submit(self._attempt, id_)
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()

    def _attempt(self, id_):
        sent = time.monotonic()
        conn = None
        try:
            conn = psycopg2.connect(self.dsn)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("INSERT INTO bench_writes (id) VALUES (%s)", (id_,))
            acked = time.monotonic()
            port = int(conn.info.port)
            cancelled = any("synchronous replication" in n for n in conn.notices)
            with self._lock:
                self.acks.append(Ack(id_, sent, acked, port))
                if cancelled:
                    self.sync_cancel_warnings += 1
        except psycopg2.Error:
            with self._lock:
                self.failures += 1
        finally:
            if conn is not None:
                conn.close()
            with self._lock:
                self._in_flight -= 1


def missing_ids(acks, port, user):
    """Acknowledged ids absent from the table on the server at `port`."""
    ids = [a.id for a in acks]
    if not ids:
        return []
    conn = psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname="postgres", connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM bench_writes WHERE id >= %s AND id <= %s", (min(ids), max(ids)))
            present = {r[0] for r in cur.fetchall()}
    finally:
        conn.close()
    return sorted(set(ids) - present)
